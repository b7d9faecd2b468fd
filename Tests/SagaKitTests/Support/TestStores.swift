import Foundation
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Synchronization

#if Postgres
    import SagaKitPostgres
#endif

/// The stores a suite runs over: the same tests, in memory, on a real SQLite file, and (built with the
/// `Postgres` trait and given `SAGAKIT_POSTGRES_URL`) on PostgreSQL.
enum TestStoreKind: String, CaseIterable, CustomStringConvertible, Sendable {
    case memory
    case sqlite
    #if Postgres
        case postgres
    #endif
    var description: String { rawValue }

    static var allCases: [TestStoreKind] {
        #if Postgres
            let url = ProcessInfo.processInfo.environment["SAGAKIT_POSTGRES_URL"] ?? ""
            return url.isEmpty ? [.memory, .sqlite] : [.memory, .sqlite, .postgres]
        #else
            return [.memory, .sqlite]
        #endif
    }
}

/// Opens the same log again and again, as a restarted process would.
final class TestStores: Sendable {
    let kind: TestStoreKind
    let memory = InMemorySagaStore()
    let directory: TemporaryDirectory
    private let open = Mutex<[any SagaStore]>([])
    #if Postgres
        /// One schema per instance, so that parallel tests never share a log.
        let schema = "sagakit_recovery_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        private let running = Mutex<[Task<Void, any Error>]>([])
    #endif

    init(_ kind: TestStoreKind) throws {
        self.kind = kind
        directory = try TemporaryDirectory(prefix: "SagaKitTests")
    }

    deinit { try? directory.remove() }

    var path: String { directory.path(of: "sagas.sqlite") }

    func open(configuration: SQLiteSagaStore.Configuration = SQLiteSagaStore.Configuration()) async throws
        -> any SagaStore
    {
        switch kind {
        case .memory:
            return memory
        case .sqlite:
            let store = try SQLiteSagaStore(path: path, configuration: configuration)
            open.withLock { $0.append(store) }
            return store
        #if Postgres
            case .postgres:
                // A new store instance is a new engine process: a new instance id, its own heartbeat.
                let store = PostgresSagaStore(configuration: try postgresConfiguration())
                let task = Task { try await store.run() }
                try await store.waitUntilReady()
                open.withLock { $0.append(store) }
                running.withLock { $0.append(task) }
                return store
        #endif
        }
    }

    #if Postgres
        /// The PostgreSQL store's settings: the server of `SAGAKIT_POSTGRES_URL`, this instance's schema.
        private func postgresConfiguration() throws -> PostgresSagaStore.Configuration {
            var settings = try PostgresSagaStore.Configuration(
                url: ProcessInfo.processInfo.environment["SAGAKIT_POSTGRES_URL"] ?? "")
            settings.schema = schema
            settings.maximumConnections = 2
            return settings
        }
    #endif

    /// Closes the open stores, then removes the log: the SQLite file's directory, the PostgreSQL
    /// schema. For suites that make many logs (one per property case).
    func remove() async throws {
        try await close()
        try directory.remove()
        #if Postgres
            if kind == .postgres { try await PostgresSagaStore.dropSchemaForTesting(try postgresConfiguration()) }
        #endif
    }

    /// Closes the open stores so the next `open()` can own the log, as a new process would (a
    /// PostgreSQL store removes its heartbeat, so the next store claims its unfinished sagas).
    func close() async throws {
        let stores = open.withLock { stores in
            defer { stores = [] }
            return stores
        }
        for store in stores {
            if let sqlite = store as? SQLiteSagaStore { try await sqlite.close() }
            #if Postgres
                if let postgres = store as? PostgresSagaStore { try await postgres.close() }
            #endif
        }
        #if Postgres
            for task in running.withLock({ tasks in
                defer { tasks = [] }
                return tasks
            }) { try await task.value }
        #endif
    }
}
