public import Foundation
import GRDB
import Logging
public import SagaKit
import Synchronization

// MARK: - Group commit
//
// `append` and `appendAfterLocalWork` put their write and a continuation in `writer.queue`. The first
// write to find no drain in flight schedules one on GRDB's serial writer queue. A drain takes every
// queued write, applies each inside its own SAVEPOINT of one IMMEDIATE transaction, commits, resumes
// the callers, and loops until the queue is empty. A lone write is therefore committed at once; writes
// that arrive during a commit share the next one.
//
// Failure isolation: a write that fails (duplicate id or record, a local step's body throwing, a full
// database) is rolled back to its savepoint and fails alone. If the transaction as a whole is lost
// (BEGIN or COMMIT fails, or SQLite rolled it back), each plain append is retried in a transaction of
// its own; a local step whose work already ran fails instead, because its append was built once from
// that work's result.

/// The group-commit queue, guarded by `SQLiteSagaStore.writer`.
struct WriterState {
    var queue: [PendingWrite] = []
    var isDraining = false
    var isClosed = false
    var markFailureLogged = false
}

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

/// How one write of a batch went before the commit.
private enum WriteOutcome {
    case notRun
    case written(Data)
    case failed(any Error)

    var isWritten: Bool {
        if case .written = self { true } else { false }
    }
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
            let accepted = writer.withLock { state in
                guard !state.isClosed else { return false }
                state.queue.append(pending)
                if !state.isDraining {
                    state.isDraining = true
                    // Scheduled under the lock so that `close()` finds it queued before its own barrier.
                    pool.asyncWriteWithoutTransaction { db in self.drain(db) }
                }
                return true
            }
            if !accepted {
                pending.finish(.failure(closedError()))
            }
        }
    }

    /// Commits batches until the queue is empty. Runs on the writer queue.
    private func drain(_ db: Database) {
        let encoder = LogRow.makeEncoder()
        while true {
            let batch = writer.withLock { state in
                var batch: [PendingWrite] = []
                swap(&batch, &state.queue)
                if batch.isEmpty { state.isDraining = false }
                return batch
            }
            if batch.isEmpty { return }
            commit(batch, db, encoder)
        }
    }

    /// Writes a batch in one transaction and resumes every caller, retrying appends alone if the
    /// transaction is lost.
    private func commit(_ batch: [PendingWrite], _ db: Database, _ encoder: JSONEncoder) {
        var outcomes = [WriteOutcome](repeating: .notRun, count: batch.count)
        guard let failure = transact(batch, db, encoder, &outcomes) else {
            committedBatches.add(1, ordering: .relaxed)
            for (pending, outcome) in zip(batch, outcomes) {
                switch outcome {
                case .written(let output): pending.finish(.success(output))
                case .failed(let error): pending.finish(.failure(error))
                case .notRun:
                    pending.finish(.failure(SagaStoreError(.io, path: path, message: "an append was skipped")))
                }
            }
            return
        }
        let error = storeError(failure, doing: "committing \(batch.count) append(s)")
        let retry = batch.count > 1 && error.code != .locked
        if retry {
            logger.warning(
                "group commit failed; retrying its appends one transaction each",
                metadata: ["path": "\(path)", "error": "\(error)", "appends": "\(batch.count)"]
            )
        }
        for (pending, outcome) in zip(batch, outcomes) {
            switch (outcome, pending.work) {
            case (.failed(let own), _):
                pending.finish(.failure(own))
            case (.written, .local):
                // The engine built its append from this run of the work; it cannot be rebuilt.
                pending.finish(.failure(error))
            case (.written, .append), (.notRun, _):
                if retry {
                    commit([pending], db, encoder)
                } else {
                    pending.finish(.failure(error))
                }
            }
        }
    }

    /// Runs one transaction over the batch, each write in its own savepoint. Returns `nil` when it
    /// committed, or the error that rolled the whole transaction back.
    private func transact(
        _ batch: [PendingWrite],
        _ db: Database,
        _ encoder: JSONEncoder,
        _ outcomes: inout [WriteOutcome]
    ) -> (any Error)? {
        do {
            try db.beginTransaction(.immediate)
        } catch {
            return error
        }
        for index in batch.indices {
            do {
                try db.cachedStatement(sql: "SAVEPOINT sagakit_append").execute()
                outcomes[index] = .written(try write(batch[index].work, db, encoder))
                try db.cachedStatement(sql: "RELEASE SAVEPOINT sagakit_append").execute()
            } catch {
                outcomes[index] = .failed(
                    (error as? LocalBodyFailure)?.error
                        ?? storeError(error, doing: "appending to saga '\(batch[index].sagaID)'")
                )
                guard db.isInsideTransaction else {
                    // SQLite rolled the transaction back (a full disk, an I/O error).
                    return error
                }
                do {
                    try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT sagakit_append").execute()
                    try db.cachedStatement(sql: "RELEASE SAVEPOINT sagakit_append").execute()
                } catch {
                    try? db.rollback()
                    return error
                }
            }
        }
        // Count the commit in the database, in the same transaction: the counter the opening store
        // compares with the commit mark. A batch whose every write failed commits nothing to count.
        let counter = commitCounter.load(ordering: .relaxed) + 1
        if outcomes.contains(where: \.isWritten) {
            do {
                let bump = try db.cachedStatement(sql: "UPDATE sagakit_meta SET value = ? WHERE key = ?")
                bump.setUncheckedArguments([counter, Self.commitCounterKey])
                try bump.execute()
                if db.changesCount == 0 {
                    try db.execute(
                        sql: "INSERT INTO sagakit_meta (key, value) VALUES (?, ?)",
                        arguments: [Self.commitCounterKey, counter])
                }
            } catch {
                if db.isInsideTransaction { try? db.rollback() }
                return error
            }
        }
        do {
            try db.commit()
        } catch {
            try? db.rollback()
            return error
        }
        if outcomes.contains(where: \.isWritten) {
            commitCounter.store(counter, ordering: .relaxed)
            // After the commit, which `synchronous = FULL` made durable: the mark is never ahead of
            // the log. (With NORMAL the commit is not durable yet; `close()` moves the mark then.)
            if configuration.synchronous == .full, let problem = sidecar.writeMark(counter) {
                logMarkFailure(problem)
            }
        }
        return nil
    }

    /// Logs, once per store, that the commit mark could not be written; the mark then stays behind the
    /// log, which is safe.
    private func logMarkFailure(_ problem: String) {
        let first = writer.withLock { state in
            defer { state.markFailureLogged = true }
            return !state.markFailureLogged
        }
        guard first else { return }
        logger.warning(
            "saga log commit mark not written",
            metadata: ["path": "\(path)", "error": "'\(sidecar.path)': \(problem)"])
    }

    private func write(_ work: PendingWrite.Work, _ db: Database, _ encoder: JSONEncoder) throws -> Data {
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
        let lastError = try LogRow.encode(append.lastError, encoder)
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
                INSERT INTO sagakit_events (\(LogRow.eventColumns))
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
                record.step, record.attempt, record.payload, try LogRow.encode(record.error, encoder),
                record.note, try LogRow.encode(record.metadata, encoder),
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

    private func storeError(_ error: any Error, doing action: String) -> SagaStoreError {
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
