/// A saga log that several engines share, each saga run by one engine at a time.
///
/// An embedded store (`SQLiteSagaStore`) belongs to one engine, so recovery at start is all it needs.
/// A shared store (`PostgresSagaStore` in `SagaKitPostgres`) also serves engines in other processes,
/// and any of them may die. It gives each saga an owner and a claim epoch, renews a heartbeat for its
/// engine, and fences every append: an append from an engine that no longer owns the saga fails with
/// ``SagaStoreError/Code/ownershipLost`` and writes nothing.
///
/// When its store is shared, a ``SagaEngine``:
/// - every ``sweepInterval`` calls ``claimOrphanedSagas(limit:)`` and resumes what it claimed from the
///   log, forward or backward, as recovery does at start;
/// - starts no step attempt while ``leaseIsCurrent`` is `false` (its heartbeat could not be renewed,
///   so another engine may take its sagas at any moment), and goes on once it is renewed;
/// - stops a saga's run when an append fails with ``SagaStoreError/Code/ownershipLost``: the saga is
///   another engine's now, and the run's callers get ``SagaError/Code/ownershipLost``.
///
/// ```swift
/// let store = PostgresSagaStore(configuration: try .init(url: url), logger: logger)
/// let engine = SagaEngine(store: store, logger: logger)  // sweeps, because the store is shared
/// ```
public protocol SharedSagaStore: SagaStore {
    /// Takes over unfinished (running or compensating) sagas whose engine's lease has run out, making
    /// this store their owner under a new epoch, and returns their records, grouped by saga and
    /// ordered by sequence, as ``SagaStore/activeSagaRecords()`` does.
    ///
    /// - Parameter limit: At most this many sagas in one call; `nil` for no limit.
    func claimOrphanedSagas(limit: Int?) async throws -> [SagaLogRecords]

    /// Whether this store's engine holds its lease: its heartbeat was renewed less than a lease ago.
    var leaseIsCurrent: Bool { get }

    /// How often the engine claims orphaned sagas, and checks again for a lease that is not current.
    var sweepInterval: Duration { get }
}
