import Foundation
import Synchronization

/// A saga store in memory: fast, and gone with the process. For tests and examples.
///
/// It obeys the same contract as a durable store, so an engine can be stopped and a new one started
/// on the same instance to simulate a crash and recovery.
///
/// ```swift
/// let store = InMemorySagaStore()
/// let engine = SagaEngine(store: store, logger: logger)
/// ```
public final class InMemorySagaStore: SagaStore {
    struct Saga {
        var summary: SagaSummary
        var records: [SagaLogRecord]
    }

    struct State {
        var sagas: [String: Saga] = [:]
        var order: [String] = []
        var appends = 0
    }

    private let state = Mutex(State())

    /// Creates an empty store.
    public init() {}

    /// How many appends this store has committed.
    public var appendCount: Int { state.withLock { $0.appends } }

    /// Applies the append atomically, as a durable store would.
    public func append(_ append: SagaLogAppend) async throws {
        try state.withLock { state in
            let now = append.records.last?.timestamp ?? Date()
            if let creation = append.creation {
                guard state.sagas[append.sagaID] == nil else {
                    throw SagaStoreError(.sagaAlreadyExists, message: "saga '\(append.sagaID)' already exists")
                }
                let summary = SagaSummary(
                    id: append.sagaID, name: creation.name, fingerprint: creation.fingerprint,
                    status: append.status, createdAt: creation.createdAt, updatedAt: now, lastError: append.lastError
                )
                state.sagas[append.sagaID] = Saga(summary: summary, records: [])
                state.order.append(append.sagaID)
            }
            guard var saga = state.sagas[append.sagaID] else {
                throw SagaStoreError(
                    .unknownSaga, message: "saga '\(append.sagaID)' does not exist; its first append must create it")
            }
            let existing = Set(saga.records.map(\.sequence))
            var incoming = Set<Int>()
            for record in append.records
            where existing.contains(record.sequence) || !incoming.insert(record.sequence).inserted {
                if append.creation != nil { state.sagas[append.sagaID] = nil; state.order.removeLast() }
                throw SagaStoreError(
                    .duplicateRecord, message: "saga '\(append.sagaID)' already has record \(record.sequence)")
            }
            saga.records.append(contentsOf: append.records)
            saga.records.sort { $0.sequence < $1.sequence }
            saga.summary.status = append.status
            saga.summary.lastError = append.lastError
            saga.summary.updatedAt = now
            state.sagas[append.sagaID] = saga
            state.appends += 1
        }
    }

    /// The saga's row, or `nil`.
    public func summary(of sagaID: String) async throws -> SagaSummary? {
        state.withLock { $0.sagas[sagaID]?.summary }
    }

    /// The saga's records, by sequence.
    public func records(of sagaID: String) async throws -> [SagaLogRecord] {
        state.withLock { $0.sagas[sagaID]?.records ?? [] }
    }

    /// Sagas matching the query, oldest first.
    public func sagas(matching query: SagaQuery) async throws -> [SagaSummary] {
        state.withLock { state in
            let sagas = state.sagas
            return Array(
                state.order.compactMap { sagas[$0]?.summary }.filter(query.matches).dropFirst(query.offset).prefix(
                    query.limit))
        }
    }

    /// Running and compensating sagas with their records.
    public func activeSagaRecords() async throws -> [SagaLogRecords] {
        state.withLock { state in
            state.order.compactMap { state.sagas[$0] }.filter { $0.summary.status.isActive }
                .map { SagaLogRecords(summary: $0.summary, records: $0.records) }
        }
    }
}
