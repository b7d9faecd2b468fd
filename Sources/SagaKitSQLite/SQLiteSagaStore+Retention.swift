public import Foundation
import GRDB
public import SagaKit

// MARK: - Retention

extension SQLiteSagaStore {
    /// The statuses a saga never leaves, and so may be pruned: completed, compensated and resolved.
    ///
    /// A saga that needs attention is not finished: an operator may still retry it.
    public static let prunableStatuses: Set<SagaStatus> = [.completed, .compensated, .resolved]

    /// Deletes finished sagas (completed, compensated or resolved) last updated before `date`, with
    /// every record of their history, and returns how many sagas it deleted.
    ///
    /// Running, compensating and needs-attention sagas are never touched, whatever their age. The
    /// deletion runs in transactions of at most `batchSize` sagas each, on the same writer as the group
    /// commit, so appends of running sagas keep committing between batches rather than waiting for the
    /// whole prune. Deleted sagas are gone: ``summary(of:)`` returns `nil` for them, and a new saga may
    /// reuse their id. SQLite reuses the freed pages for new records; the file itself does not shrink.
    ///
    /// ```swift
    /// // Keep a week of finished sagas, e.g. from a daily job:
    /// let pruned = try await store.prune(finishedBefore: Date().addingTimeInterval(-7 * 86_400))
    /// ```
    ///
    /// - Important: Pruning forgets a saga's id. A caller that retries `start` with the id of a pruned
    ///   saga starts a new saga instead of attaching to the finished one, so keep finished sagas for
    ///   longer than any client retries a request.
    /// - Parameters:
    ///   - date: Sagas whose last record is older than this are deleted.
    ///   - batchSize: Sagas deleted per transaction (at least 1). Default 1,000.
    /// - Returns: The number of sagas deleted.
    /// - Throws: `SagaStoreError` (`io` when the store is closed, `locked`, `diskFull`…); sagas deleted
    ///   by batches that committed before the error stay deleted.
    @discardableResult
    public func prune(finishedBefore date: Date, batchSize: Int = 1000) async throws -> Int {
        try checkOpen()
        let statuses = Self.prunableStatuses.map { "'\($0.rawValue)'" }.sorted().joined(separator: ", ")
        let cutoff = date.timeIntervalSince1970
        let limit = max(1, batchSize)
        var total = 0
        while true {
            let deleted: Int
            do {
                deleted = try await pool.write { db in
                    try db.execute(
                        sql: """
                            CREATE TEMP TABLE IF NOT EXISTS sagakit_prune (id TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
                            DELETE FROM temp.sagakit_prune;
                            """)
                    try db.execute(
                        sql: """
                            INSERT INTO temp.sagakit_prune (id)
                            SELECT id FROM sagakit_sagas WHERE status IN (\(statuses)) AND updated_at < ? LIMIT ?
                            """,
                        arguments: [cutoff, limit])
                    let count = db.changesCount
                    guard count > 0 else { return 0 }
                    try db.execute(
                        sql: "DELETE FROM sagakit_records WHERE saga_id IN (SELECT id FROM temp.sagakit_prune)")
                    try db.execute(sql: "DELETE FROM sagakit_sagas WHERE id IN (SELECT id FROM temp.sagakit_prune)")
                    try db.execute(sql: "DELETE FROM temp.sagakit_prune")
                    return count
                }
            } catch {
                throw SagaStoreError.mapping(
                    error, path: path, busyTimeout: configuration.busyTimeout, doing: "pruning finished sagas")
            }
            total += deleted
            if deleted < limit { return total }
        }
    }
}
