#if Postgres
public import Foundation
import Logging
import PostgresNIO
public import SagaKit
import Synchronization

// MARK: - Group commit
//
// `append` checks its append, puts it with a continuation in `writes` and waits. `run()` drives the
// writers (`writeLoop`, at most `maximumCommitsInFlight` at once): each takes every queued append it
// may (at most one per saga, and none of a saga whose last write is in another writer's batch, so that
// one saga's appends commit in order and each sees the row its predecessor left; later ones wait for a
// later batch) and writes the batch in one transaction with ONE statement (`batchSQL`): a CTE that `unnest`s the
// appends and records from array parameters, inserts the new saga rows (`ON CONFLICT DO NOTHING`),
// updates the existing ones under the fence (owner, epoch and last sequence compared in the `WHERE`),
// and inserts the records of exactly the appends whose saga row was written. The statement then
// returns, for each append, whether it was written and the saga row as it was before, from which a
// refused append learns its error. So an append refused by the fence, a duplicate sequence or a taken
// id fails alone, and the others in its batch commit.
//
// A batch whose statement fails as a whole (a record the checks did not foresee, a deadlock) was
// rolled back; its appends are retried one transaction each, so only the faulty one fails. A batch
// whose COMMIT was lost with its connection has an unknown outcome: its appends fail with `io`, and
// the engine resumes their sagas from the log.
//
// A local step (`SagaStep.postgresLocal`) goes through the same queue, so that it keeps its place in
// its saga's order, but commits in a transaction of its own: the step's work, then the same statement
// for its one append, fenced the same way; a refused append rolls the work back with it.

/// One caller waiting for its write to commit: an append, or a local step's work and the append built
/// from its output.
struct PendingAppend: Sendable {
    enum Work: Sendable {
        case append(SagaLogAppend)
        case local(LocalStepWork, LocalAppendBuilder)
    }

    let sagaID: String
    let work: Work
    /// Resumed with the local work's output (empty for a plain append).
    let continuation: CheckedContinuation<Data, any Error>

    /// The plain append, if this is one.
    var append: SagaLogAppend? {
        if case .append(let append) = work { return append }
        return nil
    }
}

/// Builds a local step's append from its output, once.
final class LocalAppendBuilder: Sendable {
    private let build: Mutex<(@Sendable (Data) throws -> SagaLogAppend)?>

    init(_ build: @escaping @Sendable (Data) throws -> SagaLogAppend) {
        self.build = Mutex(build)
    }

    func take() -> (@Sendable (Data) throws -> SagaLogAppend)? {
        build.withLock { build in
            defer { build = nil }
            return build
        }
    }
}

/// A local step's own error, as opposed to the store's: rethrown to the engine unchanged.
private struct LocalWorkFailure: Error {
    let error: any Error
}

/// The appends waiting for the writer, and the signal that wakes it.
final class WriteQueue: Sendable {
    private struct State {
        var pending: [PendingAppend] = []
        var closed = false
        /// Set by tests to hold appends in the queue, so that a known set shares one batch.
        var paused = false
        /// The sagas with a write taken and not yet answered: their next append waits, so that one
        /// saga's writes commit in queue order even with several commits in flight.
        var inFlight = Set<String>()
        /// How many writers are taking batches.
        var writers = 0
    }

    private let state = Mutex(State())
    let signals: AsyncStream<Void>
    private let signal: AsyncStream<Void>.Continuation

    init() {
        (signals, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues an append; `false` once the queue is closed.
    func enqueue(_ pending: PendingAppend) -> Bool {
        let queued = state.withLock { state in
            guard !state.closed else { return false }
            state.pending.append(pending)
            return true
        }
        if queued { signal.yield() }
        return queued
    }

    /// Counts a new writer in, unless `limit` writers are already taking batches.
    func addWriter(limit: Int) -> Bool {
        state.withLock { state in
            guard state.writers < limit, !state.pending.isEmpty else { return false }
            state.writers += 1
            return true
        }
    }

    /// Takes up to `limit` queued appends, the first of each saga without a write in flight, in queue
    /// order, and marks their sagas in flight until ``finished(_:)``. When there is nothing to take, the
    /// writer that asked is counted out, in the same step: an append queued after it left wakes another
    /// writer, and one held back by a saga in flight is taken by the writer of that saga's write, which
    /// comes back here once it is answered.
    func takeBatch(limit: Int) -> [PendingAppend] {
        state.withLock { state in
            var batch: [PendingAppend] = []
            if !state.paused || state.closed {
                var remaining: [PendingAppend] = []
                for pending in state.pending {
                    if batch.count < limit, state.inFlight.insert(pending.sagaID).inserted {
                        batch.append(pending)
                    } else {
                        remaining.append(pending)
                    }
                }
                state.pending = remaining
            }
            if batch.isEmpty { state.writers -= 1 }
            return batch
        }
    }

    /// Ends the in-flight mark of the sagas of a batch whose callers were answered.
    func finished(_ batch: [PendingAppend]) {
        state.withLock { state in
            for pending in batch { state.inFlight.remove(pending.sagaID) }
        }
    }

    /// Refuses later appends and ends the writer's signal; what is queued is still taken.
    func close() {
        state.withLock { $0.closed = true }
        signal.finish()
    }

    var count: Int { state.withLock { $0.pending.count } }

    func setPaused(_ paused: Bool) {
        state.withLock { $0.paused = paused }
        if !paused { signal.yield() }
    }
}

/// What the batched statement said about one append.
struct AppendVerdict {
    /// The epoch the store now holds, when the append was written.
    var writtenEpoch: Int64?
    /// The saga row before the statement, when there was one.
    var owner: UUID?
    var epoch: Int64?
    var lastSequence: Int64?
    var status: String?
}

/// A failure of the whole batch, and whether its transaction is known to be rolled back.
struct BatchFailure: Error {
    let error: any Error
    let rolledBack: Bool
}

extension PostgresSagaStore {
    /// Durably writes one saga's records and its new status, sharing a transaction with the appends of
    /// other sagas that arrive at the same time.
    ///
    /// Returns after the commit that holds the records. The append is atomic: on a thrown error none of
    /// its records, and no change to the saga row, was stored. Appending to an existing saga is fenced:
    /// see ``PostgresSagaStore``.
    ///
    /// ```swift
    /// try await store.append(SagaLogAppend(sagaID: "order-42", records: [record], status: .running))
    /// ```
    ///
    /// - Important: Once queued, an append is not cancellable: a cancelled caller still waits for the
    ///   commit, so it never mistakes a written record for an unwritten one.
    /// - Throws: `SagaStoreError`: `sagaAlreadyExists` when `creation` is set and the id is taken,
    ///   `unknownSaga` when the saga does not exist and `creation` is `nil`, `duplicateRecord` when a
    ///   sequence is already stored or does not follow the saga's last one, and when the fence refuses
    ///   the append (another engine claimed the saga, or runs it), `locked`, `diskFull`, `readOnly`, or
    ///   `io` (also when the store is closed, or a commit's outcome is unknown).
    public func append(_ append: SagaLogAppend) async throws {
        try await lifecycle.waitUntilReady(endpoint: endpoint)
        try check(append)
        _ = try await enqueue(sagaID: append.sagaID, .append(append))
    }

    /// Runs a local step's work and the append built from its result in one transaction.
    ///
    /// The work runs on a pooled connection inside a transaction the store opened; the append
    /// `makeAppend` builds from its output is then written in the same transaction, with the statement
    /// and the fence every append uses, and the transaction commits. If the work throws, nothing is
    /// written and its error is rethrown; if the fence refuses the append, the work is rolled back too.
    /// The work keeps its saga's place in the queue: the saga's earlier appends commit before it. You do
    /// not call this: the engine does, for steps declared with
    /// `SagaStep.postgresLocal(_:kind:options:action:compensation:)`.
    ///
    /// ```swift
    /// let output = try await store.appendAfterLocalWork(work) { output in append(for: output) }
    /// ```
    ///
    /// - Returns: The work's encoded output, as logged.
    /// - Throws: The work's error, or `SagaStoreError`: `unsupported` when the work was not declared
    ///   with `SagaStep.postgresLocal`, and the codes ``append(_:)`` throws.
    public func appendAfterLocalWork(
        _ work: LocalStepWork,
        _ makeAppend: @escaping @Sendable (Data) throws -> SagaLogAppend
    ) async throws -> Data {
        guard work.body is PostgresLocalStepBody else {
            throw SagaStoreError(
                .unsupported, path: endpoint,
                message:
                    "step '\(work.stepName)' of saga '\(work.sagaID)' carries local work that was not declared with SagaStep.postgresLocal from SagaKitPostgres"
            )
        }
        try await lifecycle.waitUntilReady(endpoint: endpoint)
        return try await enqueue(sagaID: work.sagaID, .local(work, LocalAppendBuilder(makeAppend)))
    }

    private func enqueue(sagaID: String, _ work: PendingAppend.Work) async throws -> Data {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Data, any Error>) in
            if !writes.enqueue(PendingAppend(sagaID: sagaID, work: work, continuation: continuation)) {
                continuation.resume(throwing: closedError())
            }
        }
    }

    /// Refuses, before queueing, an append whose records belong to another saga or repeat a sequence.
    func check(_ append: SagaLogAppend) throws(SagaStoreError) {
        var sequences = Set<Int>()
        for record in append.records {
            guard record.sagaID == append.sagaID else {
                throw SagaStoreError(
                    .io, path: endpoint,
                    message: "record \(record.sequence) belongs to saga '\(record.sagaID)', not '\(append.sagaID)'")
            }
            guard sequences.insert(record.sequence).inserted else {
                throw SagaStoreError(
                    .duplicateRecord, path: endpoint,
                    message: "saga '\(append.sagaID)' already has record \(record.sequence)")
            }
        }
    }

    /// The writers: while appends are queued, up to ``Configuration/maximumCommitsInFlight`` of them
    /// each take a batch and commit it, so that one batch is built and sent while another waits for its
    /// commit to reach the disk. When the queue closes, what is left is committed (which fails, if the
    /// pool has stopped) so that no caller waits forever.
    func writeLoop() async {
        let writers = max(1, configuration.maximumCommitsInFlight)
        await withDiscardingTaskGroup { group in
            for await _ in writes.signals {
                while writes.addWriter(limit: writers) {
                    group.addTask { await self.drain() }
                }
            }
            writes.close()
            while writes.addWriter(limit: writers) {
                group.addTask { await self.drain() }
            }
        }
    }

    /// One writer: takes and commits batches until there is nothing it may take.
    private func drain() async {
        while true {
            let taken = writes.takeBatch(limit: max(1, configuration.maximumBatchSize))
            if taken.isEmpty { return }
            // The plain appends share one transaction; each local step has its own, at the same time
            // (they are of other sagas than the batch's, since a batch takes one write per saga).
            let batch = taken.filter { $0.append != nil }
            let locals = taken.filter { $0.append == nil }
            if locals.isEmpty {
                await commit(batch)
            } else {
                await withTaskGroup(of: Void.self) { group in
                    if !batch.isEmpty { group.addTask { await self.commit(batch) } }
                    for pending in locals { group.addTask { await self.commitLocal(pending) } }
                }
            }
            writes.finished(taken)
        }
    }

    /// Writes a batch of plain appends; on a rolled-back batch of several, retries each alone.
    private func commit(_ batch: [PendingAppend]) async {
        let appends = batch.compactMap(\.append)
        let held = epochs.withLock { epochs in appends.map { epochs[$0.sagaID] } }
        do {
            let verdicts = try await write(appends, held: held)
            for (index, pending) in batch.enumerated() {
                finish(pending, held: held[index], verdicts[index])
            }
        } catch let failure as BatchFailure where failure.rolledBack && batch.count > 1 {
            logger.warning(
                "group commit failed; retrying its appends one transaction each",
                metadata: [
                    "database": "\(endpoint)", "appends": "\(batch.count)",
                    "error": "\(Self.mapping(failure.error, endpoint: endpoint, doing: "committing"))",
                ])
            for pending in batch { await commit([pending]) }
        } catch let failure as BatchFailure {
            let action =
                failure.rolledBack
                ? "appending to saga '\(batch[0].sagaID)'"
                : "committing \(batch.count) append(s) (their outcome is unknown: the connection was lost during COMMIT)"
            let error =
                lifecycle.isFinished ? closedError() : Self.mapping(failure.error, endpoint: endpoint, doing: action)
            for pending in batch { pending.continuation.resume(throwing: error) }
        } catch {
            let mapped = Self.mapping(error, endpoint: endpoint, doing: "committing \(batch.count) append(s)")
            for pending in batch { pending.continuation.resume(throwing: mapped) }
        }
    }

    /// Resumes one caller with the verdict on its append, remembering the epoch it now holds.
    private func finish(_ pending: PendingAppend, held: Int64?, _ verdict: AppendVerdict) {
        guard let append = pending.append else { return }
        if let epoch = verdict.writtenEpoch {
            remember(epoch, of: append)
            pending.continuation.resume(returning: Data())
            return
        }
        pending.continuation.resume(throwing: refused(append, held: held, verdict))
    }

    /// The refusal of an append; when it says the saga is another engine's now, the store forgets the
    /// epoch it held, so that it no longer claims to own the saga.
    private func refused(_ append: SagaLogAppend, held: Int64?, _ verdict: AppendVerdict) -> SagaStoreError {
        let error = refusal(append, held: held, verdict)
        if error.code == .ownershipLost, held != nil {
            epochs.withLock { epochs in
                if epochs[append.sagaID] == held { epochs[append.sagaID] = nil }
            }
        }
        return error
    }

    /// Records the epoch a written append left; a finished saga never changes again, so the store
    /// stops tracking it.
    private func remember(_ epoch: Int64, of append: SagaLogAppend) {
        epochs.withLock { $0[append.sagaID] = append.status.isFinal ? nil : epoch }
    }

    /// Runs a local step's work and its append in one transaction, and resumes its caller.
    private func commitLocal(_ pending: PendingAppend) async {
        guard case .local(let work, let builder) = pending.work, let body = work.body as? PostgresLocalStepBody,
            let build = builder.take()
        else {
            pending.continuation.resume(
                throwing: SagaStoreError(
                    .io, path: endpoint, message: "the local work queued for saga '\(pending.sagaID)' was already used")
            )
            return
        }
        let held = epochs.withLock { $0[work.sagaID] }
        do {
            let (output, append, epoch) = try await client.withConnection { connection in
                _ = try await connection.queryIfOpen("BEGIN", logger: self.logger)
                do {
                    let output: Data
                    do {
                        output = try await body(connection, work)
                    } catch {
                        throw LocalWorkFailure(error: error)
                    }
                    let append = try build(output)
                    guard !append.records.isEmpty else {
                        throw SagaStoreError(
                            .io, path: self.endpoint,
                            message:
                                "the engine logged no outcome for local step '\(work.stepName)' of saga '\(work.sagaID)'; its work was rolled back"
                        )
                    }
                    try self.check(append)
                    let verdict = try await self.runBatchStatement([append], held: [held], on: connection)[0]
                    guard let epoch = verdict.writtenEpoch else {
                        throw self.refused(append, held: held, verdict)
                    }
                    do {
                        _ = try await connection.queryIfOpen("COMMIT", logger: self.logger)
                    } catch {
                        throw BatchFailure(error: error, rolledBack: false)
                    }
                    self.transactions.add(1, ordering: .relaxed)
                    return (output, append, epoch)
                } catch let failure as BatchFailure {
                    throw failure
                } catch {
                    _ = try? await connection.queryIfOpen("ROLLBACK", logger: self.logger)
                    throw error
                }
            }
            remember(epoch, of: append)
            pending.continuation.resume(returning: output)
        } catch let failure as LocalWorkFailure {
            pending.continuation.resume(throwing: failure.error)
        } catch let error as SagaStoreError {
            pending.continuation.resume(throwing: error)
        } catch let failure as BatchFailure {
            let error =
                lifecycle.isFinished
                ? closedError()
                : Self.mapping(
                    failure.error, endpoint: endpoint,
                    doing:
                        "committing local step '\(work.stepName)' of saga '\(work.sagaID)' (its outcome is unknown: the connection was lost during COMMIT)"
                )
            pending.continuation.resume(throwing: error)
        } catch {
            let mapped =
                lifecycle.isFinished
                ? closedError()
                : Self.mapping(
                    error, endpoint: endpoint, doing: "running local step '\(work.stepName)' of saga '\(work.sagaID)'")
            pending.continuation.resume(throwing: mapped)
        }
    }

    /// Why the statement did not write an append, from the saga row as it was before the statement.
    func refusal(_ append: SagaLogAppend, held: Int64?, _ verdict: AppendVerdict) -> SagaStoreError {
        let id = append.sagaID
        if append.creation != nil {
            return SagaStoreError(.sagaAlreadyExists, path: endpoint, message: "saga '\(id)' already exists")
        }
        guard let epoch = verdict.epoch, let lastSequence = verdict.lastSequence else {
            return SagaStoreError(
                .unknownSaga, path: endpoint, message: "saga '\(id)' does not exist; its first append must create it")
        }
        let owner = verdict.owner.map { "\($0)" } ?? "no engine"
        let first = append.records.map(\.sequence).min().map(Int64.init)
        if let held {
            guard verdict.owner == instanceID, epoch == held else {
                return SagaStoreError(
                    .ownershipLost, path: endpoint,
                    message:
                        "saga '\(id)' is no longer this engine's: it held epoch \(held), but the saga is now epoch \(epoch) of engine \(owner) (its lease expired and another engine claimed it); nothing was written"
                )
            }
        } else if let status = verdict.status, SagaStatus(rawValue: status).isActive {
            return SagaStoreError(
                .ownershipLost, path: endpoint,
                message:
                    "saga '\(id)' is \(status) under engine \(owner) (epoch \(epoch)), not this engine (\(instanceID)); claim it with claimOrphanedSagas once that engine's lease ends; nothing was written"
            )
        }
        if let first, lastSequence >= first {
            return SagaStoreError(.duplicateRecord, path: endpoint, message: "saga '\(id)' already has record \(first)")
        }
        if let first, lastSequence != first - 1 {
            return SagaStoreError(
                .duplicateRecord, path: endpoint,
                message:
                    "saga '\(id)' ends at record \(lastSequence); record \(first) does not follow it (another engine is writing it?); nothing was written"
            )
        }
        // The row matched before the statement but not when it was written: another engine changed it
        // in between.
        return SagaStoreError(
            .ownershipLost, path: endpoint,
            message: "saga '\(id)' was changed by another engine while this append was written; nothing was written")
    }

    /// Writes the batch in one transaction with one statement; returns a verdict per append.
    private func write(_ batch: [SagaLogAppend], held: [Int64?]) async throws -> [AppendVerdict] {
        let query = try batchQuery(batch, held: held)
        do {
            return try await client.withConnection { connection in
                do {
                    _ = try await connection.queryIfOpen("BEGIN", logger: logger)
                } catch {
                    throw BatchFailure(error: error, rolledBack: true)
                }
                let verdicts: [AppendVerdict]
                do {
                    verdicts = try await runBatchStatement(query, count: batch.count, on: connection)
                } catch {
                    _ = try? await connection.queryIfOpen("ROLLBACK", logger: logger)
                    throw BatchFailure(error: error, rolledBack: true)
                }
                do {
                    _ = try await connection.queryIfOpen("COMMIT", logger: logger)
                } catch {
                    throw BatchFailure(error: error, rolledBack: false)
                }
                transactions.add(1, ordering: .relaxed)
                return verdicts
            }
        } catch let failure as BatchFailure {
            throw failure
        } catch {
            // No connection could be leased: nothing was sent.
            throw BatchFailure(error: error, rolledBack: true)
        }
    }

    /// Runs the batch statement for `batch` on `connection`, inside the caller's transaction.
    private func runBatchStatement(_ batch: [SagaLogAppend], held: [Int64?], on connection: PostgresConnection)
        async throws -> [AppendVerdict]
    {
        try await runBatchStatement(try batchQuery(batch, held: held), count: batch.count, on: connection)
    }

    /// Runs a prepared batch statement of `count` appends; returns a verdict per append.
    private func runBatchStatement(_ query: PostgresQuery, count: Int, on connection: PostgresConnection)
        async throws -> [AppendVerdict]
    {
        var verdicts = [AppendVerdict](repeating: AppendVerdict(), count: count)
        let rows = try await connection.queryIfOpen(query, logger: logger)
        for row in rows {
            let cells = row.makeRandomAccess()
            let index = try cells[0].decode(Int.self)
            verdicts[index] = AppendVerdict(
                writtenEpoch: try cells[1].decode(Int64?.self),
                owner: try cells[2].decode(UUID?.self),
                epoch: try cells[3].decode(Int64?.self),
                lastSequence: try cells[4].decode(Int64?.self),
                status: try cells[5].decode(String?.self))
        }
        return verdicts
    }

    /// The batch as array parameters of ``batchSQL``.
    private func batchQuery(_ batch: [SagaLogAppend], held: [Int64?]) throws -> PostgresQuery {
        let encoder = LogColumnCoding.makeEncoder()
        var bindings = PostgresBindings(capacity: 23)
        var indexes: [Int64] = []
        var sagaIDs: [String] = []
        var creates: [Bool] = []
        var names: [String?] = []
        var fingerprints: [String?] = []
        var createdAts: [Date?] = []
        var statuses: [String] = []
        var lastErrors: [String?] = []
        var updatedAts: [Date] = []
        var firstSequences: [Int64?] = []
        var lastSequences: [Int64?] = []
        var recordIndexes: [Int64] = []
        var sequences: [Int64] = []
        var timestamps: [Date] = []
        var kinds: [String] = []
        var steps: [String?] = []
        var attempts: [Int64?] = []
        var payloads: [ByteBuffer?] = []
        var errors: [String?] = []
        var notes: [String?] = []
        var metadata: [String?] = []
        for (index, append) in batch.enumerated() {
            indexes.append(Int64(index))
            sagaIDs.append(append.sagaID)
            creates.append(append.creation != nil)
            names.append(append.creation?.name)
            fingerprints.append(append.creation?.fingerprint)
            createdAts.append(append.creation?.createdAt)
            statuses.append(append.status.rawValue)
            lastErrors.append(try LogColumnCoding.encode(append.lastError, encoder))
            updatedAts.append(append.records.last?.timestamp ?? Date())
            let numbers = append.records.map(\.sequence)
            firstSequences.append(numbers.min().map(Int64.init))
            lastSequences.append(numbers.max().map(Int64.init))
            for record in append.records {
                recordIndexes.append(Int64(index))
                sequences.append(Int64(record.sequence))
                timestamps.append(record.timestamp)
                kinds.append(record.kind.rawValue)
                steps.append(record.step)
                attempts.append(record.attempt.map(Int64.init))
                payloads.append(record.payload.map { ByteBuffer(bytes: $0) })
                errors.append(try LogColumnCoding.encode(record.error, encoder))
                notes.append(record.note)
                metadata.append(try LogColumnCoding.encode(record.metadata, encoder))
            }
        }
        bindings.append(indexes)
        bindings.append(sagaIDs)
        bindings.append(creates)
        bindings.append(NullableArray(names))
        bindings.append(NullableArray(fingerprints))
        bindings.append(NullableArray(createdAts))
        bindings.append(statuses)
        bindings.append(NullableArray(lastErrors))
        bindings.append(updatedAts)
        bindings.append(NullableArray(firstSequences))
        bindings.append(NullableArray(lastSequences))
        bindings.append(NullableArray(held))
        bindings.append(recordIndexes)
        bindings.append(sequences)
        bindings.append(timestamps)
        bindings.append(kinds)
        bindings.append(NullableArray(steps))
        bindings.append(NullableArray(attempts))
        bindings.append(NullableArray(payloads))
        bindings.append(NullableArray(errors))
        bindings.append(NullableArray(notes))
        bindings.append(NullableArray(metadata))
        bindings.append(instanceID)
        return PostgresQuery(unsafeSQL: Self.batchSQL, binds: bindings)
    }

    /// The one statement a group commit runs. `$1`–`$12` are the appends, `$13`–`$22` their records
    /// (by append index), `$23` this store's instance id.
    ///
    /// An existing saga's row is written only when the fence holds: it is this store's at the epoch the
    /// store holds (`held_epoch`), or, when the store holds none, the saga is not running or
    /// compensating (the store then adopts it at `epoch + 1`); and its last sequence is the one before
    /// the append's first. Records are inserted only for the appends whose saga row was written.
    static let batchSQL = """
        WITH a AS (
            SELECT * FROM unnest(
                $1::bigint[], $2::text[], $3::boolean[], $4::text[], $5::text[], $6::timestamptz[],
                $7::text[], $8::text[], $9::timestamptz[], $10::bigint[], $11::bigint[], $12::bigint[]
            ) AS a(idx, saga_id, creates, name, fingerprint, created_at, status, last_error, updated_at,
                   first_seq, last_seq, held_epoch)
        ),
        r AS (
            SELECT * FROM unnest(
                $13::bigint[], $14::bigint[], $15::timestamptz[], $16::text[], $17::text[], $18::bigint[],
                $19::bytea[], $20::text[], $21::text[], $22::text[]
            ) AS r(idx, seq, at, kind, step, attempt, payload, error, note, metadata)
        ),
        created AS (
            INSERT INTO sagakit_sagas AS s
                (id, name, fingerprint, status, created_at, updated_at, last_error, owner, epoch, last_sequence)
            SELECT a.saga_id, a.name, a.fingerprint, a.status, a.created_at, a.updated_at, a.last_error::jsonb,
                   $23::uuid, 1, coalesce(a.last_seq, 0)
            FROM a WHERE a.creates ORDER BY a.idx
            ON CONFLICT (id) DO NOTHING
            RETURNING s.id, s.epoch
        ),
        updated AS (
            UPDATE sagakit_sagas AS s
            SET status = a.status, last_error = a.last_error::jsonb, updated_at = a.updated_at,
                last_sequence = coalesce(a.last_seq, s.last_sequence), owner = $23::uuid,
                epoch = CASE WHEN a.held_epoch IS NULL THEN s.epoch + 1 ELSE s.epoch END
            FROM a
            WHERE NOT a.creates AND s.id = a.saga_id
              AND (a.first_seq IS NULL OR s.last_sequence = a.first_seq - 1)
              AND CASE WHEN a.held_epoch IS NULL THEN s.status NOT IN ('running', 'compensating')
                       ELSE s.owner = $23::uuid AND s.epoch = a.held_epoch END
            RETURNING s.id, s.epoch
        ),
        written AS (
            SELECT id, epoch FROM created UNION ALL SELECT id, epoch FROM updated
        ),
        inserted AS (
            INSERT INTO sagakit_records (saga_id, seq, at, kind, step, attempt, payload, error, note, metadata)
            SELECT a.saga_id, r.seq, r.at, r.kind, r.step, r.attempt, r.payload, r.error::jsonb, r.note,
                   r.metadata::jsonb
            FROM r JOIN a ON a.idx = r.idx JOIN written w ON w.id = a.saga_id
            ORDER BY r.idx, r.seq
        )
        SELECT a.idx, w.epoch, s.owner, s.epoch, s.last_sequence, s.status
        FROM a LEFT JOIN written w ON w.id = a.saga_id LEFT JOIN sagakit_sagas s ON s.id = a.saga_id
        ORDER BY a.idx
        """
}
#endif
