public import GRDB
import Synchronization

/// Group commit for a service's own SQLite database: concurrent writes share one transaction, and
/// so one disk sync, while each still succeeds or fails on its own.
///
/// A participant that applies each idempotency key in its own database transaction pays one
/// durable commit (one `fsync` with `synchronous = FULL`) per call, which caps it at the disk's
/// commit rate however many sagas call it at once. The writer lifts the cap the way SagaKitSQLite's
/// `SQLiteSagaStore` does for the saga log, with the same queue: ``write(_:)`` queues its closure;
/// the first write to find the writer idle starts a drain on the pool's serial writer queue, which
/// runs every queued closure inside its own `SAVEPOINT` of one `BEGIN IMMEDIATE` transaction,
/// commits, resumes every caller, and repeats while writes keep arriving. A lone write commits at
/// once, with no added wait; writes that arrive during a commit share the next one.
///
/// The writer lives in the `SQLiteGroupCommit` library, which depends on GRDB alone: a participant
/// service imports it for its own database without depending on SagaKit or the saga log.
///
/// ```swift
/// let pool = try DatabasePool(path: "products.sqlite", configuration: configuration)
/// let writer = SQLiteGroupCommitWriter(pool)
/// let deducted = try await writer.write { db in
///     try db.execute(sql: "UPDATE products SET stock = stock - 1 WHERE name = ?", arguments: ["tea"])
///     try db.execute(sql: "INSERT INTO stock_movements (idempotency_key) VALUES (?)", arguments: [key])
///     return db.changesCount
/// }
/// ```
///
/// - Important: A closure runs inside a savepoint, not a transaction of its own: it must not begin,
///   commit or roll back a transaction. It must only touch the database, because it may run more
///   than once: when the shared transaction as a whole fails (at `BEGIN` or `COMMIT`, or SQLite rolled
///   it back after an I/O error), every write of the batch is run again in a transaction of its own.
///   Durability is the pool's: with `PRAGMA synchronous = FULL`, a write returns only once it is on
///   disk.
public final class SQLiteGroupCommitWriter: Sendable {
    /// One caller's write.
    fileprivate struct Job: Sendable {
        /// Runs the caller's closure and keeps its result for `finish`.
        let run: @Sendable (Database) throws -> Void
        /// Resumes the caller: with the kept result, or with the error.
        let finish: @Sendable ((any Error)?) -> Void
    }

    private let queue: GroupCommitQueue<Committer>

    /// Creates a writer over a pool; use it for the writes that many callers make at once.
    ///
    /// Other writes through the pool (`pool.write`) stay correct: they run on the same serial writer
    /// queue, between group commits.
    ///
    /// ```swift
    /// let writer = SQLiteGroupCommitWriter(pool)
    /// ```
    public init(_ pool: DatabasePool) {
        self.queue = GroupCommitQueue(pool, savepoint: "sagakit_group_write")
    }

    /// How many transactions the writer has committed; fewer than writes when it batched.
    ///
    /// ```swift
    /// print(writer.committedTransactionCount)
    /// ```
    public var committedTransactionCount: Int { queue.committedTransactionCount }

    /// Runs `body` in a savepoint of the next group commit and returns its result once that commit is
    /// durable.
    ///
    /// If `body` throws, its changes are rolled back (the other writes of the batch still commit)
    /// and its error is rethrown. Once queued, a write is not cancellable: a cancelled caller still
    /// waits for the commit, so it never mistakes a committed write for one that did not happen.
    ///
    /// ```swift
    /// let id = try await writer.write { db in
    ///     try db.execute(sql: "INSERT INTO orders (idempotency_key) VALUES (?)", arguments: [key])
    ///     return db.lastInsertedRowID
    /// }
    /// ```
    ///
    /// - Throws: The error `body` threw, or the database error that failed the commit.
    public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let result = Mutex<T?>(nil)
            let job = Job(
                run: { db in
                    let value = try body(db)
                    result.withLock { $0 = value }
                },
                finish: { error in
                    if let error {
                        continuation.resume(throwing: error)
                    } else if let value = result.withLock({ $0 }) {
                        continuation.resume(returning: value)
                    } else {
                        continuation.resume(throwing: DatabaseError(message: "a group-commit write produced no result"))
                    }
                })
            // The writer never closes its queue, so every write is accepted.
            _ = queue.enqueue(job, for: Committer())
        }
    }
}

/// Runs the writer's jobs: every job of a lost batch runs again alone, and a job's outcome is its own
/// error, the loss, or the result its closure kept.
private struct Committer: GroupCommitter {
    func apply(_ job: SQLiteGroupCommitWriter.Job, _ db: Database, _ context: Void) throws {
        try job.run(db)
    }

    func finish(_ job: SQLiteGroupCommitWriter.Job, _ outcome: GroupCommitOutcome<Void>) {
        switch outcome {
        case .committed: job.finish(nil)
        case .failed(let error), .lost(let error, _): job.finish(error)
        }
    }
}
