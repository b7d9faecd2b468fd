import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Synchronization

/// The stores a suite runs over: the same tests, in memory and on a real SQLite file.
enum TestStoreKind: String, CaseIterable, CustomStringConvertible, Sendable {
    case memory
    case sqlite
    var description: String { rawValue }
}

/// Opens the same log again and again, as a restarted process would.
final class TestStores: Sendable {
    let kind: TestStoreKind
    let memory = InMemorySagaStore()
    let directory: TemporaryDirectory
    private let open = Mutex<[SQLiteSagaStore]>([])

    init(_ kind: TestStoreKind) throws {
        self.kind = kind
        directory = try TemporaryDirectory(prefix: "SagaKitTests")
    }

    deinit { try? directory.remove() }

    var path: String { directory.path(of: "sagas.sqlite") }

    func open(configuration: SQLiteSagaStore.Configuration = SQLiteSagaStore.Configuration()) throws -> any SagaStore {
        switch kind {
        case .memory:
            return memory
        case .sqlite:
            let store = try SQLiteSagaStore(path: path, configuration: configuration)
            open.withLock { $0.append(store) }
            return store
        }
    }

    /// Closes the open SQLite stores so the next `open()` can own the file, as a new process would.
    func close() async throws {
        let stores = open.withLock { stores in
            defer { stores = [] }
            return stores
        }
        for store in stores { try await store.close() }
    }
}
