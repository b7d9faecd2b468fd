public import Foundation
import GRDB
import Logging
import SQLiteGroupCommit
public import SagaKit
import Synchronization

// MARK: - Group commit
//
// `append` and `appendAfterLocalWork` put their write and a continuation in `groupCommit`, the
// package's one group-commit queue (`GroupCommitQueue`, in SQLiteGroupCommit, which
// `SQLiteGroupCommitWriter` uses too). The first write to find no drain in flight schedules one on
// GRDB's serial writer queue. A drain takes every queued write, applies each inside its own SAVEPOINT
// of one IMMEDIATE transaction, commits, resumes the callers, and loops until the queue is empty. A
// lone write is therefore committed at once; writes that arrive during a commit share the next one.
//
// Failure isolation: a write that fails (duplicate id or record, a local step's body throwing, a full
// database) is rolled back to its savepoint and fails alone. If the transaction as a whole is lost
// (BEGIN or COMMIT fails, or SQLite rolled it back), each plain append is retried in a transaction of
// its own; a local step whose work already ran fails instead, because its append was built once from
// that work's result.
//
// The queue does the queueing, batching, savepoints and retrying; `LogCommitter` below adds what is
// the log's: how an append is written, the commit counter and mark, the error mapping and the warning.

/// One caller waiting for its write to commit.
struct PendingWrite: Sendable {
    enum Work: Sendable {
        case append(SagaLogAppend)
        case local(LocalStepWork, AppendBuilder)
    }

    let work: Work
    let continuation: CheckedContinuation<Data, any Error>

    /// Resumes the caller, after dropping the engine's non-escaping closure.
    func finish(_ result: Result<Data, any Error>) {
        if case .local(_, let builder) = work { builder.discard() }
        continuation.resume(with: result)
    }
}

/// Carries the engine's `makeAppend` to the writer queue, to be called at most once.
///
/// Only the writer queue touches it between enqueueing and resuming; the writer drops the closure
/// before resuming the caller.
final class AppendBuilder: @unchecked Sendable {
    private var build: ((Data) throws -> SagaLogAppend)?

    init(_ build: @escaping (Data) throws -> SagaLogAppend) { self.build = build }

    /// The closure, at most once.
    func take() -> ((Data) throws -> SagaLogAppend)? {
        defer { build = nil }
        return build
    }

    func discard() { build = nil }
}

/// A local step body's own error, kept apart from the store's so it reaches the caller unchanged.
private struct LocalBodyFailure: Error {
    let error: any Error
}

extension SQLiteSagaStore {
    /// Durably writes one saga's records and its new status, sharing a transaction with the appends
    /// of other sagas that arrive at the same time.
    ///
    /// Returns after the commit that holds the records. The append is atomic: on a thrown error none
    /// of its records, and no change to the saga row, was stored.
    ///
    /// ```swift
    /// try await store.append(SagaLogAppend(sagaID: "order-42", records: [record], status: .running))
    /// ```
    ///
    /// - Important: Once enqueued, an append is not cancellable: a cancelled caller still waits for
    ///   the commit, so it never mistakes a written record for an unwritten one.
    /// - Throws: `SagaStoreError`: `sagaAlreadyExists` when `creation` is set and the id is
    ///   taken, `duplicateRecord` when a sequence is already stored, `diskFull`, `locked`, `readOnly`,
    ///   `corrupt`, `unknownSaga` when the saga does not exist and `creation` is `nil`, or `io`
    ///   (also when the store is closed).
    public func append(_ append: SagaLogAppend) async throws {
        _ = try await enqueue(.append(append))
    }

    /// Runs a local step's work and the append built from its result in one transaction.
    ///
    /// The work runs on the writer connection inside a savepoint of the current group commit; the
    /// append `makeAppend` builds from its output is written in the same savepoint. If the work
    /// throws, its writes are rolled back, nothing is logged and the work's own error is rethrown;
    /// other appends in the batch still commit. You do not call this: the engine does, for steps
    /// declared with `SagaStep.local(_:kind:options:action:compensation:)`.
    ///
    /// ```swift
    /// let output = try await store.appendAfterLocalWork(work) { output in append(for: output) }
    /// ```
    ///
    /// - Returns: The work's encoded output, as logged.
    /// - Throws: The work's error, or `SagaStoreError` (`unsupported` when the work was not
    ///   declared with `SagaStep.local`).
    public func appendAfterLocalWork(
        _ work: LocalStepWork,
        _ makeAppend: @escaping @Sendable (Data) throws -> SagaLogAppend
    ) async throws -> Data {
        guard work.body is LocalStepBody else {
            throw SagaStoreError(
                .unsupported, path: path,
                message:
                    "step '\(work.stepName)' of saga '\(work.sagaID)' carries local work that was not declared with SagaStep.local from SagaKitSQLite"
            )
        }
        return try await enqueue(.local(work, AppendBuilder(makeAppend)))
    }

    private func enqueue(_ work: PendingWrite.Work) async throws -> Data {
        try await withCheckedThrowingContinuation { continuation in
            let pending = PendingWrite(work: work, continuation: continuation)
            // The queue schedules its drain under its lock, so that `close()` finds it queued before its
            // own barrier.
            if !groupCommit.enqueue(pending, for: LogCommitter(store: self)) {
                pending.finish(.failure(closedError()))
            }
        }
    }

    /// Logs, once per store, that the commit mark could not be written; the mark then stays behind the
    /// log, which is safe.
    fileprivate func logMarkFailure(_ problem: String) {
        guard !markFailureLogged.exchange(true, ordering: .relaxed) else { return }
        logger.warning(
            "saga log commit mark not written",
            metadata: ["path": "\(path)", "error": "'\(sidecar.path)': \(problem)"])
    }

    fileprivate func write(_ work: PendingWrite.Work, _ db: Database, _ encoder: JSONEncoder) throws -> Data {
        switch work {
        case .append(let append):
            try write(append, db, encoder)
            return Data()
        case .local(let work, let builder):
            guard let body = work.body as? LocalStepBody, let build = builder.take() else {
                throw SagaStoreError(.io, message: "the local work of step '\(work.stepName)' was already used")
            }
            let output: Data
            do {
                output = try body(db, work)
            } catch {
                throw LocalBodyFailure(error: error)
            }
            guard db.isInsideTransaction else {
                throw SagaStoreError(
                    .io,
                    message:
                        "local step '\(work.stepName)' of saga '\(work.sagaID)' ended the saga log's transaction; its work and the appends batched with it were rolled back"
                )
            }
            let append = try build(output)
            guard !append.records.isEmpty else {
                throw SagaStoreError(
                    .io,
                    message:
                        "the engine logged no outcome for local step '\(work.stepName)' of saga '\(work.sagaID)'; its work was rolled back"
                )
            }
            try write(append, db, encoder)
            return output
        }
    }

    private func write(_ append: SagaLogAppend, _ db: Database, _ encoder: JSONEncoder) throws {
        let updatedAt = (append.records.last?.timestamp ?? Date()).timeIntervalSince1970
        let lastError = try LogColumnCoding.encode(append.lastError, encoder)
        if let creation = append.creation {
            let insert = try db.cachedStatement(
                sql: """
                    INSERT INTO sagakit_sagas (id, name, fingerprint, status, created_at, updated_at, last_error)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """
            )
            insert.setUncheckedArguments([
                append.sagaID, creation.name, creation.fingerprint, append.status.rawValue,
                creation.createdAt.timeIntervalSince1970, updatedAt, lastError,
            ])
            do {
                try insert.execute()
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                throw SagaStoreError(.sagaAlreadyExists, path: path, message: "saga '\(append.sagaID)' already exists")
            }
        } else {
            let update = try db.cachedStatement(
                sql: "UPDATE sagakit_sagas SET status = ?, last_error = ?, updated_at = ? WHERE id = ?")
            update.setUncheckedArguments([append.status.rawValue, lastError, updatedAt, append.sagaID])
            try update.execute()
            guard db.changesCount == 1 else {
                throw SagaStoreError(
                    .unknownSaga, path: path,
                    message: "saga '\(append.sagaID)' does not exist; its first append must create it")
            }
        }
        let insert = try db.cachedStatement(
            sql: """
                INSERT INTO sagakit_records (\(LogRow.recordColumns))
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        )
        for record in append.records {
            guard record.sagaID == append.sagaID else {
                throw SagaStoreError(
                    .io, path: path,
                    message: "record \(record.sequence) belongs to saga '\(record.sagaID)', not '\(append.sagaID)'")
            }
            insert.setUncheckedArguments([
                append.sagaID, record.sequence, record.timestamp.timeIntervalSince1970, record.kind.rawValue,
                record.step, record.attempt, record.payload, try LogColumnCoding.encode(record.error, encoder),
                record.note, try LogColumnCoding.encode(record.metadata, encoder),
            ])
            do {
                try insert.execute()
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                throw SagaStoreError(
                    .duplicateRecord, path: path,
                    message: "saga '\(append.sagaID)' already has record \(record.sequence)")
            }
        }
    }

    fileprivate func storeError(_ error: any Error, doing action: String) -> SagaStoreError {
        SagaStoreError.mapping(
            (error as? LocalBodyFailure)?.error ?? error, path: path, busyTimeout: configuration.busyTimeout,
            doing: action)
    }
}

extension PendingWrite {
    fileprivate var sagaID: String {
        switch work {
        case .append(let append): append.sagaID
        case .local(let work, _): work.sagaID
        }
    }
}

/// The saga log's side of the group commit: writes each append (or local step) in its savepoint, counts
/// every commit that wrote something in `sagakit_meta` and in the commit mark, maps errors to
/// `SagaStoreError`, and retries alone only the plain appends of a lost batch.
///
/// Made per enqueued write; the queue keeps the one that started a drain until the drain ends, so the
/// store does not keep itself alive through its queue.
struct LogCommitter: GroupCommitter {
    let store: SQLiteSagaStore

    func makeContext() -> JSONEncoder { LogColumnCoding.makeEncoder() }

    func apply(_ pending: PendingWrite, _ db: Database, _ encoder: JSONEncoder) throws -> Data {
        try store.write(pending.work, db, encoder)
    }

    /// Counts the commit in the database, in the same transaction: the counter the opening store
    /// compares with the commit mark. A batch whose every write failed commits nothing to count.
    func willCommit(_ db: Database, written: Int) throws {
        guard written > 0 else { return }
        let counter = store.commitCounter.load(ordering: .relaxed) + 1
        let bump = try db.cachedStatement(sql: "UPDATE sagakit_meta SET value = ? WHERE key = ?")
        bump.setUncheckedArguments([counter, SQLiteSagaStore.commitCounterKey])
        try bump.execute()
        if db.changesCount == 0 {
            try db.execute(
                sql: "INSERT INTO sagakit_meta (key, value) VALUES (?, ?)",
                arguments: [SQLiteSagaStore.commitCounterKey, counter])
        }
    }

    func didCommit(written: Int) {
        guard written > 0 else { return }
        // Only the writer queue changes the counter: this is the number `willCommit` wrote.
        let counter = store.commitCounter.load(ordering: .relaxed) + 1
        store.commitCounter.store(counter, ordering: .relaxed)
        // After the commit, which `synchronous = FULL` made durable: the mark is never ahead of the
        // log. (With NORMAL the commit is not durable yet; `close()` moves the mark then.)
        if store.configuration.synchronous == .full, let problem = store.sidecar.writeMark(counter) {
            store.logMarkFailure(problem)
        }
    }

    /// A lost batch is retried one append a transaction, unless it was lost to a lock (`locked`); the
    /// retry is logged as a warning.
    func retriesAlone(afterLosing error: any Error, count: Int) -> Bool {
        let error = lossError(error, count: count)
        guard error.code != .locked else { return false }
        store.logger.warning(
            "group commit failed; retrying its appends one transaction each",
            metadata: ["path": "\(store.path)", "error": "\(error)", "appends": "\(count)"]
        )
        return true
    }

    func retriesAlone(_ pending: PendingWrite, after attempt: Result<Data, any Error>?) -> Bool {
        switch (attempt, pending.work) {
        case (.failure, _):
            // It failed on its own; it fails alone.
            false
        case (.success, .local):
            // The engine built its append from this run of the work; it cannot be rebuilt.
            false
        case (.success, .append), (nil, _):
            true
        }
    }

    func finish(_ pending: PendingWrite, _ outcome: GroupCommitOutcome<Data>) {
        switch outcome {
        case .committed(let output):
            pending.finish(.success(output))
        case .failed(let error):
            pending.finish(
                .failure(
                    (error as? LocalBodyFailure)?.error
                        ?? store.storeError(error, doing: "appending to saga '\(pending.sagaID)'")))
        case .lost(let error, let count):
            pending.finish(.failure(lossError(error, count: count)))
        }
    }

    private func lossError(_ error: any Error, count: Int) -> SagaStoreError {
        store.storeError(error, doing: "committing \(count) append(s)")
    }
}
