public import GRDB
import Synchronization

/// Group commit for a service's own SQLite database: concurrent writes share one transaction, and
/// so one disk sync, while each still succeeds or fails on its own.
///
/// A participant that applies each idempotency key in its own database transaction pays one
/// durable commit (one `fsync` with `synchronous = FULL`) per call, which caps it at the disk's
/// commit rate however many sagas call it at once. The writer lifts the cap the way
/// ``SQLiteSagaStore`` does for the saga log: ``write(_:)`` queues its closure; the first write to
/// find the writer idle starts a drain on the pool's serial writer queue, which runs every queued
/// closure inside its own `SAVEPOINT` of one `BEGIN IMMEDIATE` transaction, commits, resumes every
/// caller, and repeats while writes keep arriving. A lone write commits at once, with no added wait;
/// writes that arrive during a commit share the next one.
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
    private struct Job: Sendable {
        /// Runs the caller's closure and keeps its result for `finish`.
        let run: @Sendable (Database) throws -> Void
        /// Resumes the caller: with the kept result, or with the error.
        let finish: @Sendable ((any Error)?) -> Void
    }

    private struct State {
        var queue: [Job] = []
        var isDraining = false
    }

    private let pool: DatabasePool
    private let state = Mutex(State())
    private let commits = Atomic<Int>(0)

    /// Creates a writer over a pool; use it for the writes that many callers make at once.
    ///
    /// Other writes through the pool (`pool.write`) stay correct: they run on the same serial writer
    /// queue, between group commits.
    ///
    /// ```swift
    /// let writer = SQLiteGroupCommitWriter(pool)
    /// ```
    public init(_ pool: DatabasePool) {
        self.pool = pool
    }

    /// How many transactions the writer has committed; fewer than writes when it batched.
    ///
    /// ```swift
    /// print(writer.committedTransactionCount)
    /// ```
    public var committedTransactionCount: Int { commits.load(ordering: .relaxed) }

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
            state.withLock { state in
                state.queue.append(job)
                if !state.isDraining {
                    state.isDraining = true
                    pool.asyncWriteWithoutTransaction { db in self.drain(db) }
                }
            }
        }
    }

    /// Commits batches until the queue is empty. Runs on the pool's writer queue.
    private func drain(_ db: Database) {
        while true {
            let batch = state.withLock { state in
                var batch: [Job] = []
                swap(&batch, &state.queue)
                if batch.isEmpty { state.isDraining = false }
                return batch
            }
            if batch.isEmpty { return }
            commit(batch, db)
        }
    }

    private func commit(_ batch: [Job], _ db: Database) {
        var errors = [(any Error)?](repeating: nil, count: batch.count)
        do {
            try db.beginTransaction(.immediate)
            for index in batch.indices {
                try db.execute(sql: "SAVEPOINT sagakit_group_write")
                do {
                    try batch[index].run(db)
                    try db.execute(sql: "RELEASE SAVEPOINT sagakit_group_write")
                } catch {
                    errors[index] = error
                    // SQLite rolled the whole transaction back (a full disk, an I/O error).
                    guard db.isInsideTransaction else { throw error }
                    try db.execute(sql: "ROLLBACK TO SAVEPOINT sagakit_group_write")
                    try db.execute(sql: "RELEASE SAVEPOINT sagakit_group_write")
                }
            }
            try db.commit()
        } catch {
            if db.isInsideTransaction { try? db.rollback() }
            if batch.count > 1 {
                for job in batch { commit([job], db) }
            } else {
                batch[0].finish(errors[0] ?? error)
            }
            return
        }
        commits.add(1, ordering: .relaxed)
        for (job, error) in zip(batch, errors) { job.finish(error) }
    }
}
