import Foundation
import Logging
import Synchronization

extension SagaEngine {
    // MARK: Inspection

    /// Sagas matching a query (by status and name), oldest first.
    ///
    /// ```swift
    /// for saga in try await engine.sagas(matching: SagaQuery(status: [.needsAttention])) {
    ///     print(saga.id, saga.lastError?.message ?? "")
    /// }
    /// ```
    public func sagas(matching query: SagaQuery) async throws -> [SagaSummary] {
        try await store.sagas(matching: query)
    }

    /// One saga's summary, or `nil` for an unknown id.
    public func summary(of sagaID: String) async throws -> SagaSummary? {
        try await store.summary(of: sagaID)
    }

    /// One saga's full history, ordered by sequence.
    ///
    /// - Throws: ``SagaError`` with code ``SagaError/Code/unknownSaga`` for an unknown id.
    public func history(of sagaID: String) async throws -> [SagaLogRecord] {
        guard try await store.summary(of: sagaID) != nil else {
            throw SagaError(.unknownSaga, sagaID: sagaID, message: "no saga with id '\(sagaID)' is in the log")
        }
        return try await store.records(of: sagaID)
    }

    // MARK: Operator actions

    /// Retries a saga that needs attention: the failed compensation (or the failed step after the
    /// pivot) runs again with a fresh retry budget and the same idempotency key.
    ///
    /// The retry is recorded in the log with the note. Await the new outcome with ``handle(for:output:)``.
    ///
    /// - Throws: ``SagaError`` with ``SagaError/Code/invalidOperatorAction`` when the saga does not need
    ///   attention, ``SagaError/Code/unknownSaga``, or a definition code when it cannot be run here.
    public func retry(sagaID: String, note: String? = nil) async throws {
        try ensureRunning(sagaID, action: "retried")
        let run = try await loadRun(sagaID, expecting: .needsAttention, action: "retried")
        do {
            try await run.write([SagaExecution.Draft(kind: .operatorRetried, note: note)])
        } catch {
            throw abandon(run, Self.operatorError(error, sagaID: sagaID, action: "retried"))
        }
        run.logger.info("operator retried saga", metadata: ["note": "\(note ?? "")"])
        enqueue(.execute(run))
    }

    /// Marks a saga that needs attention as resolved, with a note saying what a person did.
    ///
    /// The saga becomes ``SagaStatus/resolved`` and is never run again. Resolving needs no registered
    /// definition. The check and the record are one step with respect to runs and other operators:
    /// the record is appended only right after the saga's `saga.needs_attention` record, so a retry
    /// or another engine that wrote in between makes this call fail instead of ending a saga that is
    /// running again.
    ///
    /// - Throws: ``SagaError`` with ``SagaError/Code/invalidOperatorAction`` when the saga does not need
    ///   attention (or stopped needing it meanwhile), ``SagaError/Code/unknownSaga``, or a
    ///   ``SagaStoreError`` when the log cannot be written.
    public func resolve(sagaID: String, note: String) async throws {
        guard activeRun(sagaID) == nil else {
            throw SagaError(
                .invalidOperatorAction, sagaID: sagaID,
                message: "saga '\(sagaID)' is running; only a saga that needs attention can be resolved")
        }
        guard let summary = try await store.summary(of: sagaID) else {
            throw SagaError(.unknownSaga, sagaID: sagaID, message: "no saga with id '\(sagaID)' is in the log")
        }
        // The records, not the summary read before them, say where the saga stands; the state
        // machine decides from them, and its record's sequence makes the append a compare-and-set.
        let records = try await store.records(of: sagaID)
        let planted = configuration.plantedBug == .resolveWithoutCompareAndSet && summary.status == .needsAttention
        guard
            let resolution = SagaStateMachine.resolution(
                of: sagaID, records: records, note: note, at: configuration.clock.now(), checked: !planted)
        else {
            let now =
                summary.status == .needsAttention
                ? "no longer waiting for attention (a retry or another engine wrote it meanwhile)" : "\(summary.status)"
            throw SagaError(
                .invalidOperatorAction, sagaID: sagaID,
                message: "saga '\(sagaID)' is \(now); only a saga that needs attention can be resolved")
        }
        guard planted || activeRun(sagaID) == nil else {
            throw SagaError(
                .invalidOperatorAction, sagaID: sagaID,
                message: "saga '\(sagaID)' started running meanwhile; only a saga that needs attention can be resolved")
        }
        do {
            try await store.append(
                SagaLogAppend(
                    sagaID: sagaID, records: [resolution.record], status: .resolved,
                    lastError: resolution.lastError ?? summary.lastError))
        } catch let error as SagaStoreError where error.code == .duplicateRecord {
            throw SagaError(
                .invalidOperatorAction, sagaID: sagaID,
                message:
                    "saga '\(sagaID)' changed while it was being resolved (a retry or another engine wrote it); look at it again"
            )
        }
        logger.info("operator resolved saga", metadata: ["saga.id": "\(sagaID)", "note": "\(note)"])
    }

    /// Cancels a saga that has not reached its pivot: it stops going forward and compensates every
    /// step that started, then ends ``SagaStatus/compensated`` with the reason as its cause.
    ///
    /// Returns once the cancellation is durable: in the saga's log when this engine runs the saga, or,
    /// on a ``SharedSagaStore`` when another live engine runs it, as a request for that engine. Only the
    /// owner appends to a saga, so this engine then writes nothing to the saga's log: it records a
    /// ``SagaOperatorRequest`` of kind ``SagaOperatorRequest/Kind/cancel``, which the owning engine
    /// carries out at its next sweep (within ``SharedSagaStore/sweepInterval``) exactly as if the call
    /// had been made there, and answers: ``SagaOperatorRequest/State/applied`` once `operator.cancelled`
    /// is in the log, ``SagaOperatorRequest/State/refused`` with the reason when the saga has passed its
    /// pivot, finished meanwhile, or cannot be run by its owner. If the owner dies first, the engine that
    /// claims the saga answers the request. Watch the saga's ``summary(of:)`` (it becomes
    /// ``SagaStatus/compensating``) and ``history(of:)``, or the request in ``operatorRequests(of:)``;
    /// or call ``cancel(sagaID:reason:waitingForOwner:)`` to wait for the answer.
    ///
    /// ```swift
    /// try await engine.cancel(sagaID: "order-43", reason: "customer cancelled")
    /// ```
    ///
    /// - Throws: ``SagaError`` with ``SagaError/Code/cannotCancel`` when the pivot has started or
    ///   the saga is not running forward, or ``SagaError/Code/unknownSaga``;
    ///   ``SagaError/Code/ownershipLost`` when another engine runs the saga and the store has no request
    ///   channel.
    public func cancel(sagaID: String, reason: String) async throws {
        _ = try await cancel(sagaID: sagaID, reason: reason, waitingForOwner: .zero)
    }

    /// Cancels the saga here: joins the pending cancellation of the run, or loads the saga into a run
    /// that logs it. `registered` runs once the cancellation is in place; the call returns once it is
    /// durable.
    func cancelHere(_ sagaID: String, reason: String, registered: () -> Void = {}) async throws {
        if let active = activeRun(sagaID) {
            try await active.requestCancel(reason: reason, registered: registered)
            return
        }
        try ensureRunning(sagaID, action: "cancelled")
        let run = try await loadRun(sagaID, expecting: .running, action: "cancelled")
        let queued = Mutex(false)
        do {
            try await run.requestCancel(reason: reason) {
                queued.withLock { $0 = true }
                enqueue(.execute(run))
                registered()
            }
        } catch {
            // Refused before the run was queued: nothing runs it, so drop it and wake its waiters. Once
            // queued, the run itself ends the wait of everyone attached to it.
            if !queued.withLock({ $0 }) { throw abandon(run, error) }
            throw error
        }
    }

    /// Resumes a saga that the log shows as running or compensating but that no engine is running,
    /// for example after its log writes failed and the disk has been freed.
    public func resume(sagaID: String) async throws {
        guard activeRun(sagaID) == nil else { return }
        try ensureRunning(sagaID, action: "resumed")
        guard let summary = try await store.summary(of: sagaID) else {
            throw SagaError(.unknownSaga, sagaID: sagaID, message: "no saga with id '\(sagaID)' is in the log")
        }
        guard summary.status.isActive else {
            throw SagaError(
                .invalidOperatorAction, sagaID: sagaID,
                message: "saga '\(sagaID)' is \(summary.status); only a running or compensating saga resumes")
        }
        let records = try await store.records(of: sagaID)
        try prepareResumption(SagaLogRecords(summary: summary, records: records))
        if activeRun(sagaID) == nil, let stranded = runtime.withLock({ $0.stranded[sagaID] }) {
            throw SagaError(stranded.code, sagaID: sagaID, message: stranded.message)
        }
    }

    /// Refuses actions that would queue a run when the engine has stopped (its queue is never drained).
    func ensureRunning(_ sagaID: String, action: String) throws {
        let stopped = runtime.withLock { $0.hasRun && !$0.isRunning || $0.isShuttingDown }
        if stopped {
            throw SagaError(
                .shuttingDown, sagaID: sagaID,
                message: "the saga engine has stopped or is shutting down; saga '\(sagaID)' cannot be \(action) by it")
        }
    }

    /// Loads a saga that is not running here into a new run reserved in the registry.
    private func loadRun(_ sagaID: String, expecting status: SagaStatus, action: String) async throws -> SagaExecution {
        guard activeRun(sagaID) == nil else {
            throw SagaError(
                .invalidOperatorAction, sagaID: sagaID,
                message: "saga '\(sagaID)' is running in this engine and cannot be \(action) now")
        }
        guard let summary = try await store.summary(of: sagaID) else {
            throw SagaError(.unknownSaga, sagaID: sagaID, message: "no saga with id '\(sagaID)' is in the log")
        }
        guard summary.status == status else {
            let code: SagaError.Code = action == "cancelled" ? .cannotCancel : .invalidOperatorAction
            throw SagaError(
                code, sagaID: sagaID,
                message: "saga '\(sagaID)' is \(summary.status); only a \(status) saga can be \(action)")
        }
        guard let definition = registeredDefinition(name: summary.name, fingerprint: summary.fingerprint) else {
            let (code, message) = definitionMismatchReason(name: summary.name, fingerprint: summary.fingerprint)
            throw SagaError(code, sagaID: sagaID, message: message)
        }
        let records = try await store.records(of: sagaID)
        let machine = try SagaStateMachine(plan: definition.plan, sagaID: sagaID, records: records)
        // The records are read after the summary: a run or operator may have written in between, and
        // the status they fold to is the one that counts. The action's own record then goes at the
        // sequence after them, which the store refuses if anyone wrote since.
        guard machine.status == status else {
            let code: SagaError.Code = action == "cancelled" ? .cannotCancel : .invalidOperatorAction
            throw SagaError(
                code, sagaID: sagaID,
                message: "saga '\(sagaID)' is now \(machine.status); only a \(status) saga can be \(action)")
        }
        let run = SagaExecution(engine: self, definition: definition, machine: machine)
        let reserved = runtime.withLock { runtime -> Bool in
            guard runtime.active[sagaID] == nil else { return false }
            runtime.active[sagaID] = run
            runtime.stranded[sagaID] = nil
            return true
        }
        guard reserved else {
            throw SagaError(
                .invalidOperatorAction, sagaID: sagaID,
                message: "saga '\(sagaID)' started running meanwhile and cannot be \(action) now")
        }
        return run
    }

    /// Drops a run reserved for an operator action that will not be executed, and ends the wait of
    /// every caller attached to it meanwhile with `error`. Returns `error`, to throw.
    func abandon(_ run: SagaExecution, _ error: any Error) -> any Error {
        runEnded(run)
        run.interrupt(error)
        return error
    }

    private static func operatorError(_ error: any Error, sagaID: String, action: String) -> any Error {
        guard let stop = error as? RunStop else { return error }
        switch stop.kind {
        case .failed where stop.isConflict:
            return SagaError(
                .invalidOperatorAction, sagaID: sagaID,
                message:
                    "saga '\(sagaID)' changed while it was being \(action) (another operator action or engine wrote it); look at it again"
            )
        case .failed(let error): return error
        default:
            return SagaError(
                .interrupted, sagaID: sagaID, message: "the engine stopped before the operator action was logged")
        }
    }
}
