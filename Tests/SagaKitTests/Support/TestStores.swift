import Foundation
import SagaKit
import Synchronization

/// The stores a suite runs over.
enum TestStoreKind: String, CaseIterable, CustomStringConvertible, Sendable {
    case memory
    var description: String { rawValue }
}

/// Opens the same log again and again, as a restarted process would.
final class TestStores: Sendable {
    let kind: TestStoreKind
    let memory = InMemorySagaStore()
    let directory: URL

    init(_ kind: TestStoreKind) throws {
        self.kind = kind
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sagakit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    var path: String { directory.appendingPathComponent("sagas.sqlite").path }

    func open() throws -> any SagaStore {
        switch kind {
        case .memory: memory
        }
    }

    /// Lets go of the open store so the next `open()` can own the file.
    func close() {}
}
