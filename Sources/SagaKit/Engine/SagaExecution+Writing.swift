import Foundation
import Logging
import Synchronization
import Tracing

/// The log writer: records are checked by the state machine and applied under the lock, then
/// written durably (or held back to commit with the next intent), with retries of failed writes.
extension SagaExecution {
    // MARK: Writing

    struct Draft {
        var kind: SagaLogRecord.Kind
        var step: String? = nil
        var attempt: Int? = nil
        var payload: Data? = nil
        var error: RecordedError? = nil
        var note: String? = nil
    }

    /// Checks and applies drafts under the lock and takes the records due to be written.
    /// Returns `nil` when `condition` says no (nothing applied), or an append with no records
    /// when deferring.
    func prepare(_ drafts: [Draft], deferring: Bool, condition: (State) -> Bool) throws -> SagaLogAppend?? {
        let now = engine.configuration.clock.now()
        return try state.withLock { state -> SagaLogAppend?? in
            guard condition(state) else { return .none }
            var records: [SagaLogRecord] = []
            for draft in drafts {
                let record = SagaLogRecord(
                    sagaID: id, sequence: state.machine.nextSequence, timestamp: now, kind: draft.kind,
                    step: draft.step, attempt: draft.attempt, payload: draft.payload, error: draft.error,
                    note: draft.note
                )
                try state.machine.apply(record)
                records.append(record)
            }
            if deferring {
                state.pending += records
                return .some(.none)
            }
            let all = state.pending + records
            state.pending = []
            return .some(
                SagaLogAppend(
                    sagaID: id, records: all, status: state.machine.status, lastError: state.machine.cause,
                    creation: state.creation))
        }
    }

    /// Writes records (with any deferred ones) durably, or defers them to the next write.
    /// Returns `false`, writing nothing, when `condition` does not hold.
    @discardableResult
    func write(_ drafts: [Draft], deferring: Bool = false, if condition: (State) -> Bool = { _ in true }) async throws
        -> Bool
    {
        // One saga's appends reach the store one at a time, in the order of their sequences: parallel
        // siblings write their intents concurrently, and a store that checks that each append follows
        // the saga's last record (PostgreSQL's fence) refuses one that overtook its predecessor.
        await appendGate.acquireIgnoringCancellation()
        defer { appendGate.release() }
        let prepared: SagaLogAppend??
        do {
            prepared = try prepare(drafts, deferring: deferring, condition: condition)
        } catch let error as SagaError {
            logger.error("saga engine produced an illegal transition", metadata: ["error": "\(error)"])
            throw RunStop(kind: .failed(error))
        }
        switch prepared {
        case .none: return false
        case .some(.none): return true
        case .some(.some(let append)):
            try await persist(append)
            return true
        }
    }

    /// Writes the deferred records, if any.
    func flush() async throws {
        try await write([])
    }

    func persist(_ append: SagaLogAppend) async throws {
        if append.records.isEmpty, append.creation == nil { return }
        let kinds = append.records.map(\.kind.rawValue)
        var attempt = 1
        while true {
            do {
                try engine.configuration.faultPoint?(FaultPoint(sagaID: id, moment: .beforeAppend, records: kinds))
                try await engine.store.append(append)
                markDurable()
                try engine.configuration.faultPoint?(FaultPoint(sagaID: id, moment: .afterAppend, records: kinds))
                return
            } catch is SimulatedCrash {
                throw RunStop(kind: .crashed)
            } catch let error as SagaStoreError where error.code == .sagaAlreadyExists && append.creation != nil {
                // Leave the registry first, so the caller can attach to (or resume) the existing saga.
                engine.runEnded(self)
                resolveAcceptance(.failure(error))
                throw RunStop(kind: .alreadyExists)
            } catch let error as SagaStoreError where error.code == .ownershipLost {
                throw ownershipLost(error)
            } catch {
                engine.metrics.logWriteFailure()
                let duplicate = (error as? SagaStoreError)?.code == .duplicateRecord
                logger.warning("saga log write failed", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                if !duplicate, engine.configuration.logWriteRetry.allowsAttempt(after: attempt) {
                    if await engine.sleep(for: engine.backoff(engine.configuration.logWriteRetry, after: attempt)) {
                        attempt += 1
                        continue
                    }
                    throw RunStop(kind: Task.isCancelled ? .cancelled : .shutdown)
                }
                if Task.isCancelled { throw RunStop(kind: .cancelled) }
                let failure = SagaError(
                    .logWriteFailed, sagaID: id,
                    message: duplicate
                        ? "another engine is writing saga '\(id)' (\(error)); this engine stops running it"
                        : "the saga log could not be written after \(attempt) attempts (\(error)); the saga stays as last logged and resumes on recovery or resume(sagaID:)"
                )
                throw RunStop(kind: .failed(failure), isConflict: duplicate)
            }
        }
    }

    /// The stop of a run whose append a shared log's fence refused: the saga is another engine's now.
    func ownershipLost(_ error: SagaStoreError) -> RunStop {
        engine.metrics.logWriteFailure()
        engine.metrics.sagaLost(plan.name)
        logger.warning(
            "saga belongs to another engine sharing the log; this engine stops running it",
            metadata: ["error": "\(error)"])
        return RunStop(
            kind: .failed(
                SagaError(
                    .ownershipLost, sagaID: id,
                    message:
                        "saga '\(id)' belongs to another engine sharing the log (it was taken over after this engine's lease ran out, or another engine runs it); this engine stops running it (\(error.message))"
                )), isConflict: true)
    }

    func markDurable() {
        let first = state.withLock { state -> Bool in
            defer { state.creation = nil }
            return state.creation != nil
        }
        if first {
            engine.metrics.sagaStarted(plan.name)
            resolveAcceptance(.success(()))
        }
    }
}
