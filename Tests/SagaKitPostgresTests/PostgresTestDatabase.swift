#if Postgres
import Foundation
import SagaKit
import SagaKitPostgres
import Synchronization
import Testing

/// The server the tests use, from `SAGAKIT_POSTGRES_URL`; each test gets a schema of its own.
enum PostgresTestDatabase {
    static let url = ProcessInfo.processInfo.environment["SAGAKIT_POSTGRES_URL"]

    static var isConfigured: Bool { !(url ?? "").isEmpty }

    static let skipReason: Comment =
        "SAGAKIT_POSTGRES_URL is not set: start a server with scripts/postgres.sh and set it to the URL printed"

    /// The server's configuration with a new schema, `sagakit_test_<random>`.
    static func freshConfiguration() throws -> PostgresSagaStore.Configuration {
        var configuration = try PostgresSagaStore.Configuration(url: url ?? "")
        configuration.schema = "sagakit_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        configuration.maximumConnections = 4
        return configuration
    }
}

/// Runs a store per configuration over the body's lifetime, each driven by its own `run()` task, then
/// closes them and (unless `keepingSchemas`) drops their schemas.
///
/// ```swift
/// try await withRunningStores([configuration, configuration]) { stores in ... }
/// ```
func withRunningStores<T: Sendable>(
    _ configurations: [PostgresSagaStore.Configuration],
    keepingSchemas: Bool = false,
    _ body: @Sendable ([PostgresSagaStore]) async throws -> T
) async throws -> T {
    let stores = configurations.map { PostgresSagaStore(configuration: $0) }
    let outcome: Result<T, any Error> = await withThrowingTaskGroup(of: Void.self) { group in
        for store in stores {
            group.addTask { try await store.run() }
        }
        let result: Result<T, any Error>
        do {
            for store in stores { try await store.waitUntilReady() }
            result = .success(try await body(stores))
        } catch {
            result = .failure(error)
        }
        for store in stores { try? await store.close() }
        while let finished = await group.nextResult() {
            if case .failure(let error) = finished, case .success = result { return .failure(error) }
        }
        return result
    }
    for schema in Set(configurations.compactMap(\.schema)) where !keepingSchemas {
        var configuration = configurations[0]
        configuration.schema = schema
        try? await PostgresSagaStore.dropSchemaForTesting(configuration)
    }
    return try outcome.get()
}

/// Runs one store with a fresh schema over the body's lifetime.
func withRunningStore<T: Sendable>(_ body: @Sendable (PostgresSagaStore) async throws -> T) async throws -> T {
    let configuration = try PostgresTestDatabase.freshConfiguration()
    return try await withRunningStores([configuration]) { try await body($0[0]) }
}

/// Hands out running stores, one per call, to a contract that makes its own.
final class StorePool: Sendable {
    private let stores: Mutex<[PostgresSagaStore]>

    init(_ stores: [PostgresSagaStore]) { self.stores = Mutex(stores) }

    func next() throws -> PostgresSagaStore {
        try stores.withLock { remaining in
            guard !remaining.isEmpty else { throw SagaStoreError(.io, message: "the pool has no store left") }
            return remaining.removeFirst()
        }
    }
}

/// Appends, held in the queue until all have arrived, so that they share one group commit; returns each
/// append's outcome in order.
func appendInOneBatch(_ store: PostgresSagaStore, _ appends: [SagaLogAppend]) async -> [Result<Void, SagaStoreError>] {
    store.holdAppendsForTesting(true)
    return await withTaskGroup(of: (Int, Result<Void, SagaStoreError>).self) { group in
        let before = store.queuedAppendCount
        for (index, append) in appends.enumerated() {
            group.addTask {
                do {
                    try await store.append(append)
                    return (index, .success(()))
                } catch let error as SagaStoreError {
                    return (index, .failure(error))
                } catch {
                    return (index, .failure(SagaStoreError(.io, message: "\(error)")))
                }
            }
        }
        while store.queuedAppendCount < before + appends.count {
            await Task.yield()
        }
        store.holdAppendsForTesting(false)
        var results = [Result<Void, SagaStoreError>?](repeating: nil, count: appends.count)
        for await (index, result) in group { results[index] = result }
        return results.map { $0! }
    }
}

/// Records of the shape the contract writes: `saga.started`, then `step.started` of step "a".
enum Records {
    static let epoch = Date(timeIntervalSince1970: 1_800_000_000)

    static func record(_ saga: String, _ sequence: Int, _ kind: SagaLogRecord.Kind = .stepStarted) -> SagaLogRecord {
        SagaLogRecord(
            sagaID: saga, sequence: sequence, timestamp: epoch.addingTimeInterval(Double(sequence)), kind: kind,
            step: kind == .sagaStarted ? nil : "a", attempt: kind == .sagaStarted ? nil : 1,
            payload: Data("{\"n\":\(sequence)}".utf8))
    }

    static func create(_ saga: String, status: SagaStatus = .running) -> SagaLogAppend {
        SagaLogAppend(
            sagaID: saga, records: [record(saga, 1, .sagaStarted), record(saga, 2)], status: status,
            creation: SagaCreation(name: "test", fingerprint: "f", createdAt: epoch))
    }

    static func next(_ saga: String, _ sequence: Int, status: SagaStatus = .running) -> SagaLogAppend {
        SagaLogAppend(sagaID: saga, records: [record(saga, sequence, .stepSucceeded)], status: status)
    }
}
#endif
