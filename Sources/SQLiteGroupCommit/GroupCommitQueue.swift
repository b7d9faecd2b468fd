package import GRDB
import Synchronization

/// What a ``GroupCommitQueue`` asks of its owner: how to apply one queued write, what to add to each
/// transaction, which writes run again after a lost transaction, and how to hand a write its outcome.
///
/// The queue calls every requirement on the pool's serial writer queue, inside or right after the
/// transaction it concerns. ``SQLiteGroupCommitWriter`` and SagaKitSQLite's saga store are the two
/// committers: the writer runs its callers' closures, the store writes log appends.
///
/// ```swift
/// struct Committer: GroupCommitter {
///     func apply(_ write: Write, _ db: Database, _ context: Void) throws -> Int { try write.run(db) }
///     func finish(_ write: Write, _ outcome: GroupCommitOutcome<Int>) { write.resume(outcome) }
/// }
/// ```
package protocol GroupCommitter: Sendable {
    /// One queued write, with whatever resumes its caller.
    associatedtype Write: Sendable
    /// What applying a write gives, handed to ``finish(_:_:)`` once its transaction committed.
    associatedtype Output
    /// What the writes of one drain share, such as an encoder made once; `Void` when nothing.
    associatedtype Context = Void

    /// Makes what the transactions of one drain share; called once per drain, before its first
    /// transaction.
    func makeContext() -> Context

    /// Applies one write inside its own savepoint of the shared transaction.
    ///
    /// A throw rolls the write back to its savepoint; the other writes of the batch still commit.
    /// The write may run again, in a transaction of its own, if the shared transaction is lost and
    /// ``retriesAlone(_:after:)`` allows it.
    func apply(_ write: Write, _ db: Database, _ context: Context) throws -> Output

    /// Runs last inside the transaction, before `COMMIT`; `written` counts the writes that applied.
    ///
    /// A throw loses the transaction, as a failed `COMMIT` does. The default does nothing.
    func willCommit(_ db: Database, written: Int) throws

    /// Runs once the transaction committed, before any caller is resumed. The default does nothing.
    func didCommit(written: Int)

    /// Whether the writes of a batch of `count` writes (at least two) whose shared transaction was
    /// lost with `error` may run again, each in a transaction of its own. The default says yes.
    func retriesAlone(afterLosing error: any Error, count: Int) -> Bool

    /// Whether one write of such a batch runs again alone, given what its run in the lost transaction
    /// gave (`nil`: it did not run). The default says yes.
    func retriesAlone(_ write: Write, after attempt: Result<Output, any Error>?) -> Bool

    /// Hands a write its final outcome, which resumes its caller. Called exactly once per write.
    func finish(_ write: Write, _ outcome: GroupCommitOutcome<Output>)
}

extension GroupCommitter where Context == Void {
    /// Nothing to share.
    package func makeContext() {}
}

extension GroupCommitter {
    /// Adds nothing to the transaction.
    package func willCommit(_ db: Database, written: Int) throws {}

    /// Does nothing.
    package func didCommit(written: Int) {}

    /// Retries the writes of every lost batch alone.
    package func retriesAlone(afterLosing error: any Error, count: Int) -> Bool { true }

    /// Retries every write of a lost batch alone.
    package func retriesAlone(_ write: Write, after attempt: Result<Output, any Error>?) -> Bool { true }
}

/// How one write of a group commit ended.
///
/// ```swift
/// switch outcome {
/// case .committed(let output): continuation.resume(returning: output)
/// case .failed(let error), .lost(let error, _): continuation.resume(throwing: error)
/// }
/// ```
package enum GroupCommitOutcome<Output> {
    /// The write applied and the transaction holding it committed.
    case committed(Output)
    /// The write threw `error` (or its savepoint could not be released) and was rolled back to its
    /// savepoint; nothing of it was stored. It does not run again.
    case failed(any Error)
    /// The transaction that held the write, one of `count` writes, was lost with `error`, and the write
    /// does not run again: nothing of it was stored.
    case lost(any Error, count: Int)
}

/// The one group-commit queue of the package: concurrent writes share one `BEGIN IMMEDIATE`
/// transaction, each in a `SAVEPOINT` of its own, on a pool's serial writer queue.
///
/// ``enqueue(_:for:)`` queues a write; the first write to find no drain in flight schedules one on
/// the pool's writer queue. A drain takes every queued write, applies each inside its own savepoint
/// of one transaction, commits, hands every write its outcome, and repeats until the queue is empty.
/// A lone write is therefore committed at once, with no added wait; writes that arrive during a
/// commit share the next one.
///
/// A write that throws is rolled back to its savepoint and fails alone. If the transaction as a whole
/// is lost (`BEGIN` or `COMMIT` fails, ``GroupCommitter/willCommit(_:written:)`` throws, or SQLite
/// rolled it back after an I/O error), the writes of a batch of more than one that the committer
/// allows run again, each in a transaction of its own; every other write is handed the loss (or its
/// own error, if it threw).
///
/// The queue keeps no reference to its committer between drains, so an owner that holds the queue
/// and passes itself (or a value that holds it) as the committer makes no reference cycle.
///
/// ```swift
/// let queue = GroupCommitQueue<Committer>(pool, savepoint: "service_write")
/// guard queue.enqueue(write, for: Committer()) else { throw ClosedError() }
/// ```
package final class GroupCommitQueue<Committer: GroupCommitter>: Sendable {
    private struct State: Sendable {
        var queue: [Committer.Write] = []
        var isDraining = false
        var isClosed = false
    }

    private let pool: DatabasePool
    private let state = Mutex(State())
    private let commits = Atomic<Int>(0)
    private let savepointSQL: String
    private let releaseSQL: String
    private let rollbackSQL: String

    /// Creates a queue that commits through `pool`'s writer, naming each write's savepoint `savepoint`.
    ///
    /// ```swift
    /// let queue = GroupCommitQueue<Committer>(pool, savepoint: "service_write")
    /// ```
    package init(_ pool: DatabasePool, savepoint: String) {
        self.pool = pool
        self.savepointSQL = "SAVEPOINT \(savepoint)"
        self.releaseSQL = "RELEASE SAVEPOINT \(savepoint)"
        self.rollbackSQL = "ROLLBACK TO SAVEPOINT \(savepoint)"
    }

    /// How many transactions the queue has committed; fewer than writes when it batched.
    package var committedTransactionCount: Int { commits.load(ordering: .relaxed) }

    /// How many writes wait for the next group commit (not counting those in flight).
    package var queuedWriteCount: Int { state.withLock { $0.queue.count } }

    /// Whether ``close()`` was called.
    package var isClosed: Bool { state.withLock { $0.isClosed } }

    /// Refuses every later write; returns whether the queue was open. Writes already queued still
    /// commit: a barrier the caller then queues on the pool's writer runs after them.
    package func close() -> Bool {
        state.withLock { state in
            defer { state.isClosed = true }
            return !state.isClosed
        }
    }

    /// Queues `write` for the next group commit; returns `false`, queueing nothing, once the queue is
    /// closed.
    ///
    /// When no drain is in flight, schedules one that runs through `committer`. Pass the same
    /// committer with every write: the writes a drain finds are all handed to the committer that
    /// started it.
    package func enqueue(_ write: Committer.Write, for committer: Committer) -> Bool {
        state.withLock { state in
            guard !state.isClosed else { return false }
            state.queue.append(write)
            if !state.isDraining {
                state.isDraining = true
                // Scheduled under the lock, so that a barrier queued after `close()` finds it queued.
                pool.asyncWriteWithoutTransaction { db in self.drain(db, committer) }
            }
            return true
        }
    }

    /// Commits batches until the queue is empty. Runs on the pool's writer queue.
    private func drain(_ db: Database, _ committer: Committer) {
        let context = committer.makeContext()
        while true {
            let batch = state.withLock { state in
                var batch: [Committer.Write] = []
                swap(&batch, &state.queue)
                if batch.isEmpty { state.isDraining = false }
                return batch
            }
            if batch.isEmpty { return }
            commit(batch, db, committer, context)
        }
    }

    /// Writes a batch in one transaction and hands every write its outcome, running the writes the
    /// committer allows again alone if the transaction is lost.
    private func commit(
        _ batch: [Committer.Write],
        _ db: Database,
        _ committer: Committer,
        _ context: Committer.Context
    ) {
        var attempts: [Result<Committer.Output, any Error>] = []
        attempts.reserveCapacity(batch.count)
        guard let error = transact(batch, db, committer, context, &attempts) else {
            commits.add(1, ordering: .relaxed)
            for (write, attempt) in zip(batch, attempts) {
                switch attempt {
                case .success(let output): committer.finish(write, .committed(output))
                case .failure(let error): committer.finish(write, .failed(error))
                }
            }
            return
        }
        let retries = batch.count > 1 && committer.retriesAlone(afterLosing: error, count: batch.count)
        for (index, write) in batch.enumerated() {
            let attempt = index < attempts.count ? attempts[index] : nil
            if retries, committer.retriesAlone(write, after: attempt) {
                commit([write], db, committer, context)
            } else if case .failure(let own) = attempt {
                committer.finish(write, .failed(own))
            } else {
                committer.finish(write, .lost(error, count: batch.count))
            }
        }
    }

    /// Runs one transaction over the batch, each write in its own savepoint, appending to `attempts`
    /// what each write that ran gave. Returns `nil` when it committed, or the error that lost it.
    private func transact(
        _ batch: [Committer.Write],
        _ db: Database,
        _ committer: Committer,
        _ context: Committer.Context,
        _ attempts: inout [Result<Committer.Output, any Error>]
    ) -> (any Error)? {
        do {
            try db.beginTransaction(.immediate)
        } catch {
            return error
        }
        for write in batch {
            do {
                try db.cachedStatement(sql: savepointSQL).execute()
                let output = try committer.apply(write, db, context)
                try db.cachedStatement(sql: releaseSQL).execute()
                attempts.append(.success(output))
            } catch {
                attempts.append(.failure(error))
                // SQLite rolled the whole transaction back (a full disk, an I/O error).
                guard db.isInsideTransaction else { return error }
                do {
                    try db.cachedStatement(sql: rollbackSQL).execute()
                    try db.cachedStatement(sql: releaseSQL).execute()
                } catch {
                    try? db.rollback()
                    return error
                }
            }
        }
        let written = attempts.count(where: { if case .success = $0 { true } else { false } })
        do {
            try committer.willCommit(db, written: written)
            try db.commit()
        } catch {
            if db.isInsideTransaction { try? db.rollback() }
            return error
        }
        committer.didCommit(written: written)
        return nil
    }
}
