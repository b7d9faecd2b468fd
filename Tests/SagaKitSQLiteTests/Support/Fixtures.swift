import Foundation
import Logging
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Synchronization
import Testing

/// Runs `body` with a store on a fresh log in a temporary directory, and closes it.
func withStore<T>(
    configuration: SQLiteSagaStore.Configuration = .init(),
    _ body: (SQLiteSagaStore, String) async throws -> T
) async throws -> T {
    try await withTemporaryDirectory { directory in
        let path = directory.path(of: "sagas.sqlite")
        let store = try SQLiteSagaStore(path: path, configuration: configuration)
        do {
            let result = try await body(store, path)
            try await store.close()
            return result
        } catch {
            try? await store.close()
            throw error
        }
    }
}

/// Whole seconds plus a binary fraction, so that times round-trip exactly through `REAL` columns.
let epoch = Date(timeIntervalSince1970: 1_750_000_000.25)

func at(_ seconds: Double) -> Date { epoch.addingTimeInterval(seconds) }

func record(
    _ sagaID: String,
    _ sequence: Int,
    _ kind: SagaLogRecord.Kind,
    at time: Date = epoch,
    step: String? = nil,
    attempt: Int? = nil,
    payload: Data? = nil,
    error: RecordedError? = nil
) -> SagaLogRecord {
    SagaLogRecord(
        sagaID: sagaID, sequence: sequence, timestamp: time, kind: kind, step: step, attempt: attempt, payload: payload,
        error: error)
}

/// The first append of a saga: its creation and `saga.started`.
func creation(
    _ sagaID: String, name: String = "place-order", at time: Date = epoch, status: SagaStatus = .running,
    input: Data? = nil
) -> SagaLogAppend {
    SagaLogAppend(
        sagaID: sagaID,
        records: [record(sagaID, 1, .sagaStarted, at: time, payload: input)],
        status: status,
        creation: SagaCreation(name: name, fingerprint: "fp-\(name)", createdAt: time)
    )
}

func fileBytes(_ path: String) throws -> Data {
    try Data(contentsOf: URL(fileURLWithPath: path))
}

/// The store error `body` throws, recorded as a test failure if it throws something else or nothing.
func storeError(_ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async
    -> SagaStoreError?
{
    do {
        try await body()
        Issue.record("expected a SagaStoreError, got success", sourceLocation: sourceLocation)
    } catch let error as SagaStoreError {
        return error
    } catch {
        Issue.record("expected a SagaStoreError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// A result captured from an async call.
func result<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
    do {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}

struct PlannedFailure: Error, CustomStringConvertible {
    var description: String { "planned failure" }
}

/// A log handler that keeps what it is given, for tests that check what a store logs.
struct RecordingLogHandler: LogHandler {
    /// The entries logged so far, shared by every copy of the handler.
    final class Entries: Sendable {
        private let entries = Mutex<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>([])

        var all: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { entries.withLock { $0 } }

        func append(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) {
            entries.withLock { $0.append((level, message, metadata)) }
        }
    }

    let entries: Entries
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        entries.append(event.level, event.message.description, metadata.merging(event.metadata ?? [:]) { $1 })
    }

    /// A logger that records into `entries`.
    static func logger(_ entries: Entries) -> Logger {
        Logger(label: "test") { _ in RecordingLogHandler(entries: entries) }
    }
}
