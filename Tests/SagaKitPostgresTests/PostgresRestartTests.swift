#if Postgres
import Foundation
import InMemoryLogging
import Logging
import SagaKit
import SagaKitPostgres
import SagaKitTesting
import Subprocess
import Synchronization
import Testing

/// The command that restarts the test server, from `SAGAKIT_POSTGRES_RESTART` (for example
/// `scripts/postgres.sh restart`, with `PGPORT` and `PGDATA_DIR` naming the server of
/// `SAGAKIT_POSTGRES_URL`); run by `sh -c` in the package's root directory.
enum PostgresRestart {
    static let command = ProcessInfo.processInfo.environment["SAGAKIT_POSTGRES_RESTART"] ?? ""

    static var isConfigured: Bool { PostgresTestDatabase.isConfigured && !command.isEmpty }

    static let skipReason: Comment = """
        SAGAKIT_POSTGRES_RESTART is not set (or SAGAKIT_POSTGRES_URL is not): set it to a command that \
        restarts the server of SAGAKIT_POSTGRES_URL, e.g. SAGAKIT_POSTGRES_RESTART="scripts/postgres.sh restart" \
        with that server's PGPORT and PGDATA_DIR. The test restarts the server, so run it alone, on a server \
        of its own (--filter PostgresRestartTests)
        """

    /// The package's root directory: the command's working directory.
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Runs the command to its end; fails the test with its output if it does not exit 0.
    static func run() async throws {
        // `sh -c 'cd "$1" && eval "$2"' sh <root> <command>`: the command runs in the package's root.
        let result = try await Subprocess.run(
            .name("sh"), arguments: ["-c", "cd \"$1\" && eval \"$2\"", "sh", packageRoot.path, command],
            environment: .inherit, input: .none, output: .string(limit: 1 << 16), error: .string(limit: 1 << 16))
        guard case .exited(0) = result.terminationStatus else {
            Issue.record(
                "'\(command)' ended with \(result.terminationStatus): \(result.standardOutput) \(result.standardError)"
            )
            return
        }
    }
}

/// PostgreSQL restarted (`pg_ctl restart -m fast`) under a steady load of two engines: the pools
/// reconnect, and every saga finishes (completed or compensated) without an operator's help, with each
/// step's effect applied at most once per key and each compensation only for a step that started.
///
/// One engine retries failed log writes as configured by default; the other does not retry at all, so
/// that each of its appends the restart fails stops its saga, which only the engine's sweep resumes.
///
/// - Important: The test restarts the server every other database test uses: run it alone
///   (`--filter PostgresRestartTests`), on a server of its own, as `.ci/run` does.
@Suite(.enabled(if: PostgresRestart.isConfigured, PostgresRestart.skipReason), .serialized)
struct PostgresRestartTests {
    /// Idempotent participants: every call is recorded by step and key; a key's effect is applied once,
    /// and an undo (even of a key never applied) makes later applies of it no-ops.
    final class Ledger: Sendable {
        enum Effect: Equatable, Sendable { case applied, undone }
        private let state = Mutex((calls: [(step: String, key: String)](), effects: [String: Effect]()))

        func apply(_ step: String, key: String) {
            state.withLock { state in
                state.calls.append((step, key))
                if state.effects[key] == nil { state.effects[key] = .applied }
            }
        }

        func undo(_ step: String, key: String) {
            state.withLock { state in
                state.calls.append(("undo-" + step, key))
                state.effects[key] = .undone
            }
        }

        var calls: [(step: String, key: String)] { state.withLock { $0.calls } }
        func effect(_ key: String) -> Effect? { state.withLock { $0.effects[key] } }
    }

    /// reserve and charge (compensatable), then ship (the pivot), which refuses every fifth order.
    static func saga(_ ledger: Ledger) -> SagaDefinition<Int, String> {
        func step(_ name: String) -> SagaStep<Int, String> {
            .compensatable(name) { context in
                ledger.apply(name, key: context.idempotencyKey)
                return name
            } compensation: { _, context in
                ledger.undo(name, key: context.idempotencyKey)
            }
        }
        let ship = SagaStep<Int, String>.pivot("ship") { context in
            // A business refusal: the saga compensates at once.
            if context.input % 5 == 0 { throw NonRetryableError("out of stock", type: "OutOfStock") }
            ledger.apply("ship", key: context.idempotencyKey)
            return "shipped"
        }
        return SagaDefinition("pg-restart-order", returning: ship) {
            step("reserve")
            step("charge")
            ship
        }
    }

    /// The load: sagas are started while fewer than `minimum` were, or the restart has not finished,
    /// or fewer than `afterRestart` were started after it; the restart begins once `restartAt` were.
    final class Load: Sendable {
        let minimum = 200
        let restartAt = 50
        let afterRestart = 40
        let maximum = 5_000
        private let state = Mutex((started: 0, restarted: false, sinceRestart: 0))
        let restartDue = OneShot<Void>()

        /// The next saga's number, or `nil` when the load is over.
        func next() -> Int? {
            let (number, due) = state.withLock { state -> (Int?, Bool) in
                let done = state.started >= minimum && state.restarted && state.sinceRestart >= afterRestart
                guard !done, state.started < maximum else { return (nil, false) }
                defer { state.started += 1 }
                if state.restarted { state.sinceRestart += 1 }
                return (state.started, state.started + 1 == restartAt)
            }
            if due { restartDue.succeed() }
            return number
        }

        /// Set once the restart command has ended: the server accepts connections again.
        let restarted = OneShot<Void>()

        func restartFinished() {
            state.withLock { $0.restarted = true }
            restarted.succeed()
        }
        var started: Int { state.withLock { $0.started } }

        /// Starts that threw (and were retried), in words.
        private let startFailures = Mutex([String]())
        func startFailed(_ description: String) { startFailures.withLock { $0.append(description) } }
        var failedStarts: [String] { startFailures.withLock { $0 } }

        /// Where the test is, for the report of a hang.
        private let phase = Mutex("starting")
        func enter(_ name: String) { phase.withLock { $0 = name } }
        var currentPhase: String { phase.withLock { $0 } }
    }

    /// What the test saw before the engines stopped and the schema was dropped.
    struct Observed: Sendable {
        var total: Int
        /// Whether `pg_postmaster_start_time()` changed: the server did restart.
        var restarted: Bool
        var finished: [SagaSummary]
        var histories: [String: [SagaLogRecord]]
        var stranded: [StrandedSaga]
    }

    /// Log entries with `message`, over the handlers given.
    static func count(_ message: String, in handlers: [InMemoryLogHandler]) -> Int {
        handlers.map { $0.entries.filter { $0.message.description == message }.count }.reduce(0, +)
    }

    @Test(.timeLimit(.minutes(3)))
    func everySagaFinishesWhenPostgresRestartsUnderLoad() async throws {
        var configuration = try PostgresTestDatabase.freshConfiguration()
        // A sweep (and heartbeat) every 200 ms; the lease stays 30 s, so that no engine takes the
        // other's sagas: the restart takes a second or two.
        configuration.heartbeatInterval = .milliseconds(200)
        let storeLogs = [InMemoryLogHandler(), InMemoryLogHandler()]
        let engineLogs = [InMemoryLogHandler(), InMemoryLogHandler()]
        // The first engine's store commits one append per transaction, so that the append the restart
        // cuts off fails (a batch of several is retried one by one inside the store, unseen).
        var single = configuration
        single.maximumBatchSize = 1
        let stores = zip([single, configuration], storeLogs).map { settings, log in
            PostgresSagaStore(configuration: settings, logger: Logger(label: "store", factory: { _ in log }))
        }
        let ledger = Ledger()
        let load = Load()
        let started = ContinuousClock.now
        var patient = SagaEngine.Configuration()
        patient.jitterSeed = 3
        var impatient = patient
        impatient.logWriteRetry = .noRetries
        let engines = [
            SagaEngine(
                store: stores[0], configuration: impatient,
                logger: Logger(label: "impatient", factory: { _ in engineLogs[0] })),
            SagaEngine(
                store: stores[1], configuration: patient,
                logger: Logger(label: "patient", factory: { _ in engineLogs[1] })),
        ]
        let saga = Self.saga(ledger)

        // A hang (a statement never answered, a saga never resumed) must fail the test, not stall the run.
        let finishing = try await withinDeadline(.seconds(150)) {
            try await withStoresAndEngines(stores, engines) { stores, engines in
                for engine in engines { try engine.register(saga) }
                let before = try await stores[0].executeForTesting("SELECT pg_postmaster_start_time()::text")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try await load.restartDue.value()
                        try await PostgresRestart.run()
                        load.restartFinished()
                    }
                    // Eight callers, each starting one saga after another (and not awaiting its outcome, as a
                    // service answering "accepted" would); a start that fails is retried with the same id.
                    for _ in 0..<8 {
                        group.addTask {
                            while let number = load.next() {
                                let id = "r-\(number)"
                                var attempt = 0
                                while true {
                                    attempt += 1
                                    do {
                                        _ = try await engines[number % 2].start(saga, id: id, input: number)
                                        break
                                    } catch {
                                        // A start the restart made fail is retried once the server is back
                                        // (a few times: the pool may still be reconnecting); any other throws.
                                        load.startFailed("\(id) attempt \(attempt): \(error)")
                                        guard load.restartDue.isSet, attempt < 5 else { throw error }
                                        try await load.restarted.value()
                                    }
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let total = load.started
                load.enter("waiting for \(total) sagas to finish")
                // The sweeps resume what the restart stopped on their own: wait, on the wall clock, for the log
                // to show every saga finished (polling is the only way to watch another engine's work).
                var finished: [SagaSummary] = []
                for _ in 0..<1_200 {
                    finished = try await stores[1].sagas(
                        matching: SagaQuery(status: [.completed, .compensated], limit: total + 1))
                    // The engines drop a saga kept for their sweep at the sweep after it finished.
                    if finished.count == total, engines.allSatisfy(\.strandedSagas.isEmpty) { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                load.enter("reading the histories (\(finished.count) of \(total) finished)")
                var histories: [String: [SagaLogRecord]] = [:]
                for number in 0..<total { histories["r-\(number)"] = try await stores[0].records(of: "r-\(number)") }
                load.enter("stopping the engines and closing the stores")
                return Observed(
                    total: total,
                    restarted: try await stores[0].executeForTesting(
                        "SELECT pg_postmaster_start_time()::text") != before,
                    finished: finished, histories: histories, stranded: engines.flatMap(\.strandedSagas))
            }
        }
        guard let observed = finishing else {
            let logs = (storeLogs + engineLogs).flatMap(\.entries).suffix(30).map {
                "\($0.level) \($0.message) \($0.metadata)"
            }
            Issue.record(
                """
                the engines did not finish within 150 s of starting: a statement or a saga hangs after the restart; \
                at '\(load.currentPhase)', stranded: \(engines.flatMap(\.strandedSagas).map(\.id)), \(load.started) sagas started, restart finished: \(load.restarted.isSet), \
                appends queued: \(stores.map(\.queuedAppendCount)), \
                transactions: \(stores.map(\.committedTransactionCount)), failed starts: \(load.failedStarts.suffix(5)); \
                last log entries:
                \(logs.joined(separator: "\n"))
                """)
            return
        }
        let total = observed.total

        let elapsed = ContinuousClock.now - started
        print(
            """
            postgres restart: \(total) sagas in \(elapsed); \(load.failedStarts.count) start(s) failed and were retried; \
            failed log writes: \(Self.count("saga log write failed", in: engineLogs)); \
            sagas stopped by failed log writes and kept for the sweep: \
            \(Self.count("saga stopped because the log could not be written; the next sweep resumes it from the log", in: engineLogs)); \
            group commits retried one by one: \(Self.count("group commit failed; retrying its appends one transaction each", in: storeLogs)); \
            failed heartbeats: \(Self.count("saga store heartbeat failed", in: storeLogs))
            """)
        #expect(observed.restarted, "the server was not restarted")
        #expect(total >= 200)
        #expect(observed.stranded.isEmpty, "stranded after the restart: \(observed.stranded)")

        // Every saga finished as its input says, with a whole history.
        let statuses = Dictionary(uniqueKeysWithValues: observed.finished.map { ($0.id, $0.status) })
        let missing = (0..<total).filter { statuses["r-\($0)"] == nil }.map { "r-\($0)" }
        #expect(missing.isEmpty, "not finished: \(missing.prefix(20)) (\(missing.count) in all)")
        for number in 0..<total {
            let id = "r-\(number)"
            guard let status = statuses[id] else { continue }
            #expect(status == (number % 5 == 0 ? .compensated : .completed), "\(id) ended \(status)")
        }
        for (id, records) in observed.histories.sorted(by: { $0.key < $1.key }) {
            #expect(records.map(\.sequence) == Array(1...max(1, records.count)), "\(id): a record is missing")
            #expect(records.filter { $0.kind == .sagaStarted }.count == 1, "\(id): started twice")
            let outcomes = records.filter { $0.kind == .stepSucceeded || $0.kind == .compensationSucceeded }
                .map { "\($0.kind.rawValue) \($0.step ?? "")" }
            #expect(Set(outcomes).count == outcomes.count, "\(id): an outcome was logged twice: \(outcomes)")
        }

        // Each step was called with one stable key; each effect is as the saga's end says; a
        // compensation ran only for a step that had started.
        let calls = ledger.calls
        var firstCall: [String: Int] = [:]
        for (index, call) in calls.enumerated() where !call.step.hasPrefix("undo-") {
            firstCall[call.key] = firstCall[call.key] ?? index
        }
        for (index, call) in calls.enumerated() where call.step.hasPrefix("undo-") {
            #expect((firstCall[call.key] ?? .max) < index, "\(call.key) was compensated before its step started")
        }
        for number in 0..<total {
            let id = "r-\(number)"
            for step in ["reserve", "charge", "ship"] {
                let keys = Set(calls.filter { $0.step == step && $0.key.hasPrefix(id + "/") }.map(\.key))
                #expect(keys.isSubset(of: ["\(id)/\(step)"]), "\(id): \(step) was called with \(keys)")
            }
            if number % 5 == 0 {
                #expect(ledger.effect("\(id)/reserve") == .undone && ledger.effect("\(id)/charge") == .undone, "\(id)")
                #expect(ledger.effect("\(id)/ship") == nil, "\(id): the refused pivot took effect")
            } else {
                for step in ["reserve", "charge", "ship"] {
                    #expect(ledger.effect("\(id)/\(step)") == .applied, "\(id): \(step) is not applied")
                }
            }
        }
    }
}

/// A store that holds no epoch for a saga it owns (its commit went through, but the connection was lost
/// before the acknowledgement) takes the row's epoch when it reads the saga, and then appends to it.
@Suite(
    .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipReason),
    .timeLimit(.minutes(1))
)
struct PostgresUnknownCommitTests {
    @Test func readingItsOwnSagaAfterAnUnacknowledgedCommitLetsTheStoreAppendAgain() async throws {
        try await withRunningStore { store in
            // The saga row and records as the store's own lost commit left them: owner = this store.
            _ = try await store.executeForTesting(
                """
                WITH s AS (
                    INSERT INTO sagakit_sagas (id, name, fingerprint, status, created_at, updated_at, owner, epoch,
                                               last_sequence)
                    VALUES ('lost', 'test', 'f', 'running', now(), now(), '\(store.instanceID)', 1, 2)
                    RETURNING id
                )
                INSERT INTO sagakit_records (saga_id, seq, at, kind, step, attempt)
                SELECT id, n, now(), CASE n WHEN 1 THEN 'saga.started' ELSE 'step.started' END,
                       CASE n WHEN 1 THEN NULL ELSE 'a' END, CASE n WHEN 1 THEN NULL ELSE 1 END
                FROM s, generate_series(1, 2) AS n
                RETURNING saga_id
                """)
            // Knowing no epoch, the store takes its own running saga for another engine's.
            let refused = await #expect(throws: SagaStoreError.self) { try await store.append(Records.next("lost", 3)) }
            #expect(refused?.code == .ownershipLost)
            // Resuming from the log reads the saga first: then the append passes the fence, at epoch 1.
            #expect(try await store.summary(of: "lost")?.status == .running)
            try await store.append(Records.next("lost", 3))
            #expect(try await store.records(of: "lost").map(\.sequence) == [1, 2, 3])
            #expect(
                try await store.executeForTesting(
                    "SELECT owner::text || ' ' || epoch FROM sagakit_sagas WHERE id = 'lost'")
                    == ["\(store.instanceID.uuidString.lowercased()) 1"])
        }
    }
}

/// Runs `body` in a task of its own and waits at most `limit` for it; `nil` when it did not finish by
/// then (the task is then cancelled and left behind: a hang that ignores cancellation is reported
/// instead of stalling the test run, as `SagaPropertyTest` does with a plan).
func withinDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws
    -> T?
{
    let answer = OneShot<T?>()
    let work = Task {
        do {
            answer.set(.success(try await body()))
        } catch {
            answer.set(.failure(error))
        }
    }
    let deadline = Task {
        try? await Task.sleep(for: limit)
        answer.set(.success(nil))
    }
    defer { deadline.cancel() }
    guard let result = try await answer.value() else {
        work.cancel()
        return nil
    }
    return result
}

/// Runs the stores (each driven by its own `run()`), then the engines over them, over the body's
/// lifetime; then stops the engines, closes the stores and drops their schema.
func withStoresAndEngines<T: Sendable>(
    _ stores: [PostgresSagaStore], _ engines: [SagaEngine],
    _ body: @Sendable ([PostgresSagaStore], [SagaEngine]) async throws -> T
) async throws -> T {
    let outcome: Result<T, any Error> = await withThrowingTaskGroup(of: Void.self) { group in
        for store in stores {
            group.addTask { try await store.run() }
        }
        let result: Result<T, any Error>
        do {
            for store in stores { try await store.waitUntilReady() }
            result = .success(
                try await withRunningSagaEngine(engines[0]) { _ in
                    try await withRunningSagaEngine(engines[1]) { _ in try await body(stores, engines) }
                })
        } catch {
            result = .failure(error)
        }
        for store in stores { try? await store.close() }
        while let finished = await group.nextResult() {
            if case .failure(let error) = finished, case .success = result { return .failure(error) }
        }
        return result
    }
    if let store = stores.first {
        try? await PostgresSagaStore.dropSchemaForTesting(store.configuration)
    }
    return try outcome.get()
}
#endif
