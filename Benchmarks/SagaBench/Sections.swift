import Foundation
import GRDB
import SagaKit
import SagaKitSQLite
import ShopServices
import Synchronization

// MARK: Recovery

struct RecoveryResult: Codable, Sendable {
    var sagas: Int
    /// Reading every unfinished saga's records (`activeSagaRecords()`) on a freshly opened store.
    var loadSeconds: Double
    /// From `engine.run()` until the log shows no running saga: read, fold, queue, call each pivot
    /// again and commit its outcome.
    var resumeToFinishedSeconds: Double
    var resumedPerSecond: Double { resumeToFinishedSeconds > 0 ? Double(sagas) / resumeToFinishedSeconds : 0 }
    var rawCommitsPerSecond: Double
}

/// Leaves `count` engine-only sagas in flight as a kill would (a simulated crash just before each
/// pivot call: the log holds the pivot's intent and no outcome), then times a new engine's recovery.
func measureRecovery(count: Int, root: String, probe: RawCommitProbe) async throws -> RecoveryResult {
    let directory = try scratch(root, "recovery")
    let path = (directory as NSString).appendingPathComponent("sagas.sqlite")
    let crashed = Atomic<Int>(0)
    do {
        let store = try SQLiteSagaStore(path: path)
        var configuration = engineConfiguration()
        configuration.faultPoint = { point in
            if point.moment == .beforeCall, point.step == PlaceOrderSaga.createOrderStep, !point.isCompensation {
                crashed.add(1, ordering: .relaxed)
                throw SimulatedCrash()
            }
        }
        let engine = SagaEngine(store: store, configuration: configuration, logger: silentLogger)
        let saga = EngineOnlySaga(failTenPercent: false)
        try engine.register(saga.definition)
        try await withEngineRunning(engine) {
            _ = await timedLoad(concurrency: 512, duration: .zero, minimum: count) { index in
                do {
                    _ = try await engine.start(saga.definition, id: "r\(index)", input: benchOrder(index))
                    return .running
                } catch {
                    return nil
                }
            }
            while crashed.load(ordering: .relaxed) < count { try await Task.sleep(for: .milliseconds(5)) }
        }
        try await store.close()
    }
    let raw = try probe.measure(for: .milliseconds(500))
    let store = try SQLiteSagaStore(path: path)
    let clock = ContinuousClock()
    let loadStart = clock.now
    let loaded = try await store.activeSagaRecords()
    let loadSeconds = (clock.now - loadStart).seconds
    guard loaded.count == count else {
        throw BenchError("expected \(count) unfinished sagas in the log, found \(loaded.count)")
    }
    let engine = SagaEngine(store: store, configuration: engineConfiguration(), logger: silentLogger)
    try engine.register(EngineOnlySaga(failTenPercent: false).definition)
    let start = clock.now
    let seconds = try await withEngineRunning(engine) {
        while try await !store.sagas(matching: SagaQuery(status: [.running, .compensating], limit: 1)).isEmpty {
            try await Task.sleep(for: .milliseconds(2))
        }
        return (clock.now - start).seconds
    }
    let left = try await store.sagas(matching: SagaQuery(status: [.completed], limit: .max)).count
    try await store.close()
    guard left == count else { throw BenchError("expected \(count) completed sagas after recovery, found \(left)") }
    return RecoveryResult(
        sagas: count, loadSeconds: loadSeconds, resumeToFinishedSeconds: seconds, rawCommitsPerSecond: raw)
}

// MARK: Memory

struct MemoryResult: Codable, Sendable {
    var sagas: Int
    var rssBeforeBytes: Int
    var rssInFlightBytes: Int
    var bytesPerSaga: Double { Double(rssInFlightBytes - rssBeforeBytes) / Double(max(1, sagas)) }
}

/// Resident set size from `/proc/self/statm`.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Starts `count` sagas whose pivot blocks, and measures the resident memory they add while in flight.
func measureMemory(count: Int, root: String) async throws -> MemoryResult {
    let directory = try scratch(root, "memory")
    let store = try SQLiteSagaStore(path: (directory as NSString).appendingPathComponent("sagas.sqlite"))
    let gate = PivotGate()
    let saga = EngineOnlySaga(failTenPercent: false, gate: gate)
    // Every held saga occupies one of the engine's run slots until the gate opens.
    var configuration = engineConfiguration()
    configuration.maxConcurrentSagas = count + 1024
    let engine = SagaEngine(store: store, configuration: configuration, logger: silentLogger)
    try engine.register(saga.definition)
    let result = try await withEngineRunning(engine) {
        // Warm up allocator, page cache and statement caches with as many finished sagas.
        _ = await timedLoad(concurrency: 256, duration: .zero, minimum: count, firstIndex: 10_000_000) { index in
            await status { try await engine.execute(saga.definition, id: "w\(index)", input: benchOrder(index)) }
        }
        gate.close()
        let before = residentBytes()
        _ = await timedLoad(concurrency: 256, duration: .zero, minimum: count) { index in
            do {
                _ = try await engine.start(saga.definition, id: "m\(index)", input: benchOrder(index))
                return .running
            } catch {
                return nil
            }
        }
        while gate.entered < count { try await Task.sleep(for: .milliseconds(5)) }
        let during = residentBytes()
        gate.open()
        while try await !store.sagas(matching: SagaQuery(status: [.running], limit: 1)).isEmpty {
            try await Task.sleep(for: .milliseconds(5))
        }
        return MemoryResult(sagas: count, rssBeforeBytes: before, rssInFlightBytes: during)
    }
    try await store.close()
    return result
}

// MARK: Log growth

/// Fills a new saga log with `events` events of finished place-order sagas (six per saga, as the
/// engine writes them), generated with SQL in bulk rather than through the engine.
func generateFinishedLog(path: String, events: Int) async throws -> Int {
    let fingerprint = EngineOnlySaga(failTenPercent: false).definition.fingerprint
    let store = try SQLiteSagaStore(path: path)
    try await store.close()
    guard events > 0 else { return 0 }
    let sagas = events / 6
    var configuration = Configuration()
    configuration.journalMode = .wal
    let queue = try DatabaseQueue(path: path, configuration: configuration)
    let old = Date().addingTimeInterval(-30 * 86_400).timeIntervalSince1970
    try await queue.writeWithoutTransaction { db in
        try db.execute(sql: "PRAGMA synchronous = OFF")
        try db.inTransaction {
            try db.execute(
                sql: """
                    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
                    INSERT INTO sagakit_sagas (id, name, fingerprint, status, created_at, updated_at, last_error)
                    SELECT printf('h%09d', i), ?, ?, 'completed', ? + i * 0.0001, ? + i * 0.0001, NULL FROM n
                    """,
                arguments: [sagas, PlaceOrderSaga.name, fingerprint, old, old])
            try db.execute(
                sql: """
                    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?),
                    k(seq, kind, step, attempt, payload) AS (VALUES
                        (1, 'saga.started', NULL, NULL, '{"product":"tea","quantity":2,"user":7}'),
                        (2, 'step.started', 'deduct-stock', 1, NULL),
                        (3, 'step.succeeded', 'deduct-stock', 1, '{"key":"h/deduct-stock","product":"tea","quantity":2}'),
                        (4, 'step.started', 'create-order', 1, NULL),
                        (5, 'step.succeeded', 'create-order', 1, '{"deductionKey":"h/deduct-stock","orderID":7,"orderKey":"h/create-order","product":"tea","quantity":2,"user":7}'),
                        (6, 'saga.completed', NULL, NULL, '{"deductionKey":"h/deduct-stock","orderID":7,"orderKey":"h/create-order","product":"tea","quantity":2,"user":7}'))
                    INSERT INTO sagakit_records (saga_id, seq, at, kind, step, attempt, payload, error, note, metadata)
                    SELECT printf('h%09d', i), seq, ? + i * 0.0001, kind, step, attempt, CAST(payload AS BLOB), NULL, NULL,
                           CASE WHEN seq = 1 THEN '{}' ELSE NULL END
                    FROM n, k ORDER BY 1, 2
                    """,
                arguments: [sagas, old])
            return .commit
        }
        try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
    }
    try queue.close()
    return sagas * 6
}

struct PruneResult: Codable, Sendable {
    var eventsBefore: Int
    var sagasPruned: Int
    var seconds: Double
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
