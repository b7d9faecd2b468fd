import Foundation
import Logging
import Synchronization
import Tracing

/// Why a saga's execution stopped before it settled.
struct RunStop: Error {
    enum Kind { case crashed, cancelled, shutdown, alreadyExists, failed(SagaError) }
    var kind: Kind
    /// The log refused a record because another writer took its sequence.
    var isConflict = false
}

/// What waiters of a run get when the run turns out to duplicate a saga already in the log: they
/// look the saga up again.
struct RunSuperseded: Error {}

/// A timeout of one attempt: its outcome is unknown, so it is retried with the same key.
struct StepTimeoutError: Error, CustomStringConvertible {
    var timeout: Duration
    var description: String { "the attempt did not finish within \(timeout)" }
}

/// One saga's execution in this engine: its state machine, the records waiting to be written with
/// the next intent, and the callers waiting for its outcome.
final class SagaExecution: Sendable {
    static let deadlineKey = "sagakit.deadline"

    let id: String
    let engine: SagaEngine
    let definition: ErasedDefinition
    let logger: Logger
    let deadline: Date?

    struct State {
        var machine: SagaStateMachine
        /// Outcome records deferred so they commit together with the next intent.
        var pending: [SagaLogRecord] = []
        /// Set until the saga's first append is durable.
        var creation: SagaCreation?
        var accepted: Result<Void, any Error>?
        var acceptWaiters: [CheckedContinuation<Void, any Error>] = []
        var result: Result<SagaSettlement, any Error>?
        var waiters: [CheckedContinuation<SagaSettlement, any Error>] = []
        var input: (any Sendable)?
        /// A sibling failed for good: no new forward attempts in this group.
        var stopForward = false
        /// An operator asked to cancel: no new forward attempts; the run logs the cancellation at its
        /// next boundary, then resumes the waiting operators.
        var cancelRequest: (reason: String, waiters: [CheckedContinuation<Void, any Error>])?
        /// A step cannot run for want of a decodable payload: the run raises attention once the
        /// step's group has finished.
        var attention: (step: String, cause: RecordedError)?
        var recovered = false
    }

    let state: Mutex<State>

    var plan: SagaPlan { definition.plan }

    /// A new saga: its `saga.started` record is applied and waits to commit with the first intent.
    init(
        engine: SagaEngine, definition: ErasedDefinition, newSagaID id: String, input: any Sendable, inputData: Data,
        metadata: [String: String], at now: Date
    ) {
        self.id = id
        self.engine = engine
        self.definition = definition
        self.logger = Self.logger(engine.logger, id: id, name: definition.plan.name)
        self.deadline = metadata[Self.deadlineKey].flatMap(Double.init).map(Date.init(timeIntervalSince1970:))
        var machine = SagaStateMachine(plan: definition.plan, sagaID: id)
        let record = SagaLogRecord(
            sagaID: id, sequence: 1, timestamp: now, kind: .sagaStarted, payload: inputData, metadata: metadata)
        // A fresh machine always accepts saga.started.
        try? machine.apply(record)
        var state = State(machine: machine)
        state.pending = [record]
        state.creation = SagaCreation(
            name: definition.plan.name, fingerprint: definition.plan.fingerprint, createdAt: now)
        state.input = input
        self.state = Mutex(state)
    }

    /// A saga resumed from its logged state.
    init(engine: SagaEngine, definition: ErasedDefinition, machine: SagaStateMachine) {
        self.id = machine.sagaID
        self.engine = engine
        self.definition = definition
        self.logger = Self.logger(engine.logger, id: machine.sagaID, name: definition.plan.name)
        self.deadline = machine.metadata[Self.deadlineKey].flatMap(Double.init).map(Date.init(timeIntervalSince1970:))
        var state = State(machine: machine)
        state.accepted = .success(())
        state.recovered = true
        self.state = Mutex(state)
    }

    private static func logger(_ base: Logger, id: String, name: String) -> Logger {
        var logger = base
        logger[metadataKey: "saga.id"] = "\(id)"
        logger[metadataKey: "saga.name"] = "\(name)"
        return logger
    }

    // MARK: Waiting

    func waitUntilAccepted() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let ready = state.withLock { state -> Result<Void, any Error>? in
                if let accepted = state.accepted { return accepted }
                state.acceptWaiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    func settlement() async throws -> SagaSettlement {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<SagaSettlement, any Error>) in
            let ready = state.withLock { state -> Result<SagaSettlement, any Error>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    private func resolveAcceptance(_ result: Result<Void, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            guard state.accepted == nil else { return [] }
            state.accepted = result
            defer { state.acceptWaiters = [] }
            return state.acceptWaiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    private func resolve(_ result: Result<SagaSettlement, any Error>) {
        let (waiters, cancellers, status) = state.withLock {
            state -> (
                [CheckedContinuation<SagaSettlement, any Error>], [CheckedContinuation<Void, any Error>], SagaStatus
            ) in
            guard state.result == nil else { return ([], [], state.machine.status) }
            state.result = result
            defer {
                state.waiters = []
                state.cancelRequest = nil
            }
            return (state.waiters, state.cancelRequest?.waiters ?? [], state.machine.status)
        }
        for waiter in waiters { waiter.resume(with: result) }
        let refusal: any Error
        switch result {
        case .failure(let error): refusal = error
        case .success:
            refusal = SagaError(
                .cannotCancel, sagaID: id, message: "saga '\(id)' ended \(status) before it could be cancelled")
        }
        for canceller in cancellers { canceller.resume(throwing: refusal) }
    }

    /// Ends every wait with an error; the saga stays as last logged.
    func interrupt(_ error: any Error) {
        resolveAcceptance(.failure(error))
        resolve(.failure(error))
    }

    /// Asks the run to cancel the saga; returns once `operator.cancelled` is durable.
    ///
    /// `registered` runs once the request is in place (the caller queues a run that is not executing).
    func requestCancel(reason: String, registered: () -> Void = {}) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let refusal = state.withLock { state -> SagaError? in
                if state.result != nil || state.machine.phase != .forward || state.machine.pivotStarted {
                    return SagaError(
                        .cannotCancel, sagaID: id,
                        message:
                            "saga '\(id)' is \(state.machine.status) and past the start of its pivot; it can no longer be cancelled"
                    )
                }
                if state.cancelRequest == nil {
                    state.cancelRequest = (reason, [continuation])
                } else {
                    state.cancelRequest?.waiters.append(continuation)
                }
                return nil
            }
            if let refusal {
                continuation.resume(throwing: refusal)
            } else {
                registered()
            }
        }
    }

    /// Logs a requested cancellation, or a pending needs-attention, at a boundary of the run.
    private func handleRequests() async throws {
        let (cancel, attention) = state.withLock { state in
            (state.cancelRequest, state.attention)
        }
        if let cancel {
            let wrote: Bool
            do {
                wrote = try await write([Draft(kind: .operatorCancelled, note: cancel.reason)]) { state in
                    state.machine.phase == .forward && !state.machine.pivotStarted
                }
            } catch {
                let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
                    defer { state.cancelRequest = nil }
                    return state.cancelRequest?.waiters ?? []
                }
                let failure: any Error =
                    (error as? RunStop).flatMap {
                        if case .failed(let error) = $0.kind { return error }
                        return nil
                    }
                    ?? SagaError(
                        .interrupted, sagaID: id, message: "the engine stopped before the cancellation was logged")
                for waiter in waiters { waiter.resume(throwing: failure) }
                throw error
            }
            let (waiters, phase) = state.withLock {
                state -> ([CheckedContinuation<Void, any Error>], SagaStateMachine.Phase) in
                defer { state.cancelRequest = nil }
                return (state.cancelRequest?.waiters ?? [], state.machine.phase)
            }
            if wrote {
                logger.info("operator cancelled saga", metadata: ["reason": "\(cancel.reason)"])
                for waiter in waiters { waiter.resume() }
            } else if phase == .compensating {
                // A step failed for good first: the saga is compensating anyway.
                for waiter in waiters { waiter.resume() }
            } else {
                let refusal = SagaError(
                    .cannotCancel, sagaID: id, message: "saga '\(id)' moved past its pivot before it could be cancelled"
                )
                for waiter in waiters { waiter.resume(throwing: refusal) }
            }
        }
        if let attention {
            state.withLock { $0.attention = nil }
            try await write([Draft(kind: .sagaNeedsAttention, step: attention.step, error: attention.cause)])
        }
    }

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
    private func prepare(_ drafts: [Draft], deferring: Bool, condition: (State) -> Bool) throws -> SagaLogAppend?? {
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

    private func persist(_ append: SagaLogAppend) async throws {
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

    private func markDurable() {
        let first = state.withLock { state -> Bool in
            defer { state.creation = nil }
            return state.creation != nil
        }
        if first {
            engine.metrics.sagaStarted(plan.name)
            resolveAcceptance(.success(()))
        }
    }

    // MARK: Executing

    func drive() async {
        let tracer = engine.tracer
        let parent = TraceCarrier.extract(state.withLock { $0.machine.metadata }, using: tracer)
        let span = tracer.startSpan("saga \(plan.name)", context: parent)
        span.attributes["saga.id"] = id
        span.attributes["saga.name"] = plan.name
        if state.withLock({ $0.recovered }) { span.attributes["saga.recovered"] = true }
        defer { span.end() }
        engine.metrics.activeChanged(by: 1)
        defer { engine.metrics.activeChanged(by: -1) }
        do {
            try await prepareInput()
            try await loop(span: span)
        } catch let stop as RunStop {
            switch stop.kind {
            case .crashed:
                interrupt(
                    SagaError(
                        .interrupted, sagaID: id,
                        message: "the saga stopped at a simulated crash; a new engine resumes it from the log"))
            case .cancelled:
                interrupt(
                    SagaError(
                        .interrupted, sagaID: id,
                        message:
                            "the saga engine was cancelled before saga '\(id)' finished; it resumes from the log on the next start"
                    ))
            case .shutdown:
                interrupt(
                    SagaError(
                        .interrupted, sagaID: id,
                        message:
                            "the saga engine shut down before saga '\(id)' finished; it resumes from the log on the next start"
                    ))
            case .alreadyExists:
                // Callers who attached to this run look the existing saga up again.
                interrupt(RunSuperseded())
            case .failed(let error):
                span.recordError(error)
                interrupt(error)
            }
        } catch {
            interrupt(SagaError(.interrupted, sagaID: id, message: "\(error)"))
        }
        engine.runEnded(self)
    }

    private func prepareInput() async throws {
        let data: Data? = state.withLock { $0.input == nil ? ($0.machine.input ?? Data()) : nil }
        guard let data else { return }
        do {
            let input = try definition.decodeInput(data)
            state.withLock { $0.input = input }
        } catch {
            let cause = RecordedError(error)
            try await write([Draft(kind: .sagaNeedsAttention, error: cause)])
        }
    }

    private func checkStop() async throws {
        if Task.isCancelled { throw RunStop(kind: .cancelled) }
        if engine.isShuttingDown {
            try await flush()
            throw RunStop(kind: .shutdown)
        }
    }

    private func loop(span: any Span) async throws {
        while true {
            try await checkStop()
            try await handleRequests()
            let action = state.withLock { $0.machine.nextAction() }
            switch action {
            case .advance(let group, let steps):
                try await runGroup(group: group, steps: steps, span: span, compensating: false)
            case .compensate(let group, let steps):
                try await runGroup(group: group, steps: steps, span: span, compensating: true)
            case .abandonUnknownOutcome(let step):
                let attempt = state.withLock { $0.machine.step(step).attempts }
                logger.info("compensating a step whose outcome is unknown", metadata: ["saga.step": "\(step)"])
                try await write([
                    Draft(
                        kind: .stepFailed, step: step, attempt: attempt,
                        error: RecordedError(
                            type: "SagaKit.UnknownOutcome",
                            message:
                                "step '\(step)' was logged as started with no outcome, and its policy is to compensate",
                            isRetryable: false))
                ])
            case .raiseAttention(let step):
                let cause = state.withLock { $0.machine.step(step).lastError }
                try await write([Draft(kind: .sagaNeedsAttention, step: step, error: cause)])
            case .complete:
                let (input, outputs) = state.withLock { ($0.input, $0.machine.outputs) }
                do {
                    let output = try definition.makeOutput(id, input ?? Data(), outputs)
                    try await write([Draft(kind: .sagaCompleted, payload: output)])
                } catch let stop as RunStop {
                    throw stop
                } catch {
                    try await write([Draft(kind: .sagaNeedsAttention, error: RecordedError(error))])
                }
            case .finishCompensation:
                let cause = state.withLock { $0.machine.cause }
                try await write([Draft(kind: .sagaCompensated, error: cause)])
            case .none:
                settle(span: span)
                return
            }
        }
    }

    private func settle(span: any Span) {
        let settlement = state.withLock { state in
            SagaSettlement(
                status: state.machine.status, output: state.machine.output, cause: state.machine.cause,
                causeStep: state.machine.causeStep, note: state.machine.resolutionNote
            )
        }
        engine.metrics.sagaFinished(plan.name, outcome: settlement.status.rawValue)
        span.attributes["saga.outcome"] = settlement.status.rawValue
        switch settlement.status {
        case .completed:
            logger.debug("saga completed")
        case .compensated:
            logger.info(
                "saga compensated", metadata: ["cause": "\(settlement.cause.map(String.init(describing:)) ?? "")"])
        case .needsAttention:
            logger.error(
                "saga needs attention",
                metadata: [
                    "saga.step": "\(settlement.causeStep ?? "")",
                    "cause": "\(settlement.cause.map(String.init(describing:)) ?? "")",
                ])
        default:
            logger.info("saga settled", metadata: ["status": "\(settlement.status)"])
        }
        engine.runEnded(self)
        resolve(.success(settlement))
    }

    private func runGroup(group: Int, steps: [String], span: any Span, compensating: Bool) async throws {
        let parallel = plan.groups[group].isParallel && steps.count > 1
        if !parallel, let step = steps.first, steps.count == 1 {
            try await runStep(step, deferOutcome: true, span: span, compensating: compensating)
            return
        }
        state.withLock { $0.stopForward = false }
        // Outcomes held back for the next intent must be durable before any sibling is called;
        // siblings' intents commit independently.
        try await flush()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for step in steps {
                group.addTask {
                    try await self.runStep(step, deferOutcome: false, span: span, compensating: compensating)
                }
            }
            try await group.waitForAll()
        }
    }

    private func runStep(_ name: String, deferOutcome: Bool, span: any Span, compensating: Bool) async throws {
        if compensating {
            try await compensate(name, deferOutcome: deferOutcome, span: span)
        } else {
            try await forward(name, deferOutcome: deferOutcome, span: span)
        }
    }

    // MARK: Forward

    private func forward(_ name: String, deferOutcome: Bool, span: any Span) async throws {
        guard let step = plan.stepsByName[name] else { return }
        let policy = SagaStateMachine.retryPolicy(of: step)
        let clock = engine.configuration.clock
        var attempt = state.withLock { $0.machine.step(name).attempts + 1 }
        while true {
            try await checkStop()
            // A pending cancellation stops new attempts; the run logs it at its next boundary.
            if state.withLock({ $0.cancelRequest != nil }) { return }
            let now = clock.now()
            let bound = state.withLock { $0.machine.limit(forNextAttemptOf: name, deadline: deadline, now: now) }
            let limit: Duration?
            let deadlineBinds: Bool
            switch bound {
            case .deadlinePassed(let error):
                state.withLock { $0.stopForward = true }
                try await write([Draft(kind: .stepFailed, step: name, attempt: attempt - 1, error: error)])
                return
            case .attempt(let bound, let byDeadline):
                limit = bound
                deadlineBinds = byDeadline
            }
            let skipIntent = engine.configuration.plantedBug == .skipWriteAheadIntent
            if skipIntent { try await flush() }
            let wrote = try await write(
                [Draft(kind: .stepStarted, step: name, attempt: attempt)], deferring: skipIntent
            ) {
                state in state.machine.phase == .forward && !state.stopForward && state.cancelRequest == nil
            }
            guard wrote else { return }

            var stepLogger = logger
            stepLogger[metadataKey: "saga.step"] = "\(name)"
            stepLogger[metadataKey: "saga.step.attempt"] = "\(attempt)"
            stepLogger.debug("step started")
            let stepSpan = engine.tracer.startSpan("step \(name)", context: span.context)
            stepSpan.attributes["saga.step"] = name
            stepSpan.attributes["saga.step.attempt"] = attempt
            let began = ContinuousClock.now
            let result = await call(
                name: name, attempt: attempt, logger: stepLogger, timeout: limit, local: step.local, loggedOutput: nil,
                isCompensation: false, trace: stepSpan.context
            ) { context in
                try await step.action(context)
            }
            let nanoseconds = Self.nanoseconds(since: began)
            if Task.isCancelled {
                stepSpan.end()
                throw RunStop(kind: .cancelled)
            }
            switch result {
            case .success(let output):
                stepSpan.end()
                engine.metrics.step(plan.name, name, outcome: "succeeded", nanoseconds: nanoseconds)
                stepLogger.debug("step succeeded")
                if step.local == nil {
                    try await write(
                        [Draft(kind: .stepSucceeded, step: name, attempt: attempt, payload: output)],
                        deferring: deferOutcome)
                }
                return
            case .failure(let error):
                if let stop = error as? RunStop {
                    stepSpan.end()
                    throw stop
                }
                stepSpan.recordError(error)
                stepSpan.end()
                engine.metrics.step(plan.name, name, outcome: "failed", nanoseconds: nanoseconds)
                let failure = Self.classify(error, byDeadline: deadlineBinds, compensating: false)
                let verdict = state.withLock { state in
                    state.machine.verdict(
                        afterForwardAttempt: attempt, of: name, failed: failure, policy: policy,
                        siblingFailed: state.stopForward)
                }
                switch verdict {
                case .retry(let recorded, let used):
                    engine.metrics.retry(plan.name, name)
                    let delay = engine.backoff(policy, after: used)
                    stepLogger.info(
                        "step attempt failed; retrying", metadata: ["error": "\(recorded)", "backoff": "\(delay)"])
                    try await write([Draft(kind: .stepAttemptFailed, step: name, attempt: attempt, error: recorded)])
                    guard await engine.sleep(for: delay) else {
                        try await checkStop()
                        return
                    }
                    attempt += 1
                    continue
                case .needsAttention(let recorded, let cause):
                    if case .cannotRun = failure {
                        stepLogger.warning("step cannot run: \(recorded.message)")
                    } else {
                        stepLogger.warning(
                            "pivot outcome unknown after its retries", metadata: ["error": "\(recorded)"])
                    }
                    // Siblings in flight finish first; the run raises attention after the group.
                    state.withLock { state in
                        state.stopForward = true
                        if state.attention == nil { state.attention = (name, cause) }
                    }
                    try await write([Draft(kind: .stepAttemptFailed, step: name, attempt: attempt, error: recorded)])
                    return
                case .fail(let recorded):
                    stepLogger.info("step failed for good", metadata: ["error": "\(recorded)"])
                    state.withLock { $0.stopForward = true }
                    try await write([Draft(kind: .stepFailed, step: name, attempt: attempt, error: recorded)])
                    return
                }
            }
        }
    }

    /// What the engine observed of a failed attempt, in the state machine's terms.
    private static func classify(_ error: any Error, byDeadline: Bool, compensating: Bool)
        -> SagaStateMachine.AttemptFailure
    {
        if let timeout = error as? StepTimeoutError {
            return .timedOut(timeout.timeout, byDeadline: byDeadline)
        }
        if !compensating, let sagaError = error as? SagaError,
            sagaError.code == .undecodablePayload || sagaError.code == .outputUnavailable
        {
            return .cannotRun(RecordedError(error))
        }
        return .threw(RecordedError(error))
    }

    // MARK: Compensation

    private func compensate(_ name: String, deferOutcome: Bool, span: any Span) async throws {
        guard let step = plan.stepsByName[name], let undo = step.compensate else { return }
        let policy = engine.configuration.compensationRetry
        var attempt = state.withLock { $0.machine.step(name).compensationAttempts + 1 }
        while true {
            try await checkStop()
            try await write([Draft(kind: .compensationStarted, step: name, attempt: attempt)])
            let output = state.withLock { state in
                let step = state.machine.step(name)
                return step.status == .succeeded ? step.output : nil
            }
            var stepLogger = logger
            stepLogger[metadataKey: "saga.step"] = "\(name)"
            stepLogger[metadataKey: "saga.step.attempt"] = "\(attempt)"
            stepLogger.info("compensating step")
            let stepSpan = engine.tracer.startSpan("compensate \(name)", context: span.context)
            stepSpan.attributes["saga.step"] = name
            stepSpan.attributes["saga.step.attempt"] = attempt
            let began = ContinuousClock.now
            let result = await call(
                name: name, attempt: attempt, logger: stepLogger, timeout: step.options.timeout,
                local: step.localCompensation, loggedOutput: output, isCompensation: true, trace: stepSpan.context
            ) { context in
                try await undo(output, context)
                return Data()
            }
            let nanoseconds = Self.nanoseconds(since: began)
            if Task.isCancelled {
                stepSpan.end()
                throw RunStop(kind: .cancelled)
            }
            switch result {
            case .success:
                stepSpan.end()
                engine.metrics.compensation(plan.name, name, outcome: "succeeded", nanoseconds: nanoseconds)
                if step.localCompensation == nil {
                    try await write(
                        [Draft(kind: .compensationSucceeded, step: name, attempt: attempt)], deferring: deferOutcome)
                }
                return
            case .failure(let error):
                if let stop = error as? RunStop {
                    stepSpan.end()
                    throw stop
                }
                stepSpan.recordError(error)
                stepSpan.end()
                engine.metrics.compensation(plan.name, name, outcome: "failed", nanoseconds: nanoseconds)
                let failure = Self.classify(error, byDeadline: false, compensating: true)
                let verdict = state.withLock {
                    $0.machine.verdict(afterCompensationAttempt: attempt, of: name, failed: failure, policy: policy)
                }
                switch verdict {
                case .retry(let recorded, let used):
                    engine.metrics.compensationRetry(plan.name, name)
                    let delay = engine.backoff(policy, after: used)
                    stepLogger.info(
                        "compensation attempt failed; retrying",
                        metadata: ["error": "\(recorded)", "backoff": "\(delay)"])
                    try await write([
                        Draft(kind: .compensationAttemptFailed, step: name, attempt: attempt, error: recorded)
                    ])
                    guard await engine.sleep(for: delay) else {
                        try await checkStop()
                        return
                    }
                    attempt += 1
                    continue
                case .fail(let recorded), .needsAttention(let recorded, _):
                    try await write([Draft(kind: .compensationFailed, step: name, attempt: attempt, error: recorded)])
                    return
                }
            }
        }
    }

    // MARK: Calling participants

    /// Calls an action or compensation with its context, timeout and fault points. A `RunStop` in
    /// the failure means stop the run; any other error is the participant's.
    private func call(
        name: String,
        attempt: Int,
        logger: Logger,
        timeout: Duration?,
        local: (any Sendable)?,
        loggedOutput: Data?,
        isCompensation: Bool,
        trace: ServiceContext,
        _ body: @escaping @Sendable (ErasedStepContext) async throws -> Data
    ) async -> Result<Data, any Error> {
        let (input, outputs) = state.withLock { ($0.input ?? Data(), $0.machine.outputs) }
        let key = "\(id)/\(name)"
        let context = ErasedStepContext(
            sagaID: id, stepName: name, input: input, idempotencyKey: key, attempt: attempt, logger: logger,
            outputs: outputs)
        do {
            let point = FaultPoint(sagaID: id, moment: .beforeCall, step: name, isCompensation: isCompensation)
            try engine.configuration.faultPoint?(point)
            let output: Data
            if let local {
                output = try await runLocal(
                    local, isCompensation: isCompensation, name: name, attempt: attempt, key: key, input: input,
                    loggedOutput: loggedOutput)
            } else {
                // The step's span is the current context while the participant runs, so its own
                // spans (an HTTP or gRPC client's) become children of the step.
                output = try await ServiceContext.withValue(trace) {
                    try await withTimeout(timeout) {
                        guard let interceptor = self.engine.configuration.interceptor else {
                            return try await body(context)
                        }
                        let call = ParticipantCall(
                            sagaID: self.id, step: name, isCompensation: isCompensation, attempt: attempt,
                            idempotencyKey: key)
                        return try await interceptor(call) { try await body(context) }
                    }
                }
            }
            var after = point
            after.moment = .afterCall
            try engine.configuration.faultPoint?(after)
            return .success(output)
        } catch is SimulatedCrash {
            return .failure(RunStop(kind: .crashed))
        } catch {
            if !Task.isCancelled {
                try? engine.configuration.faultPoint?(
                    FaultPoint(sagaID: id, moment: .callFailed, step: name, isCompensation: isCompensation))
            }
            return .failure(error)
        }
    }

    /// Runs a local step's work and its outcome record in one store transaction.
    private func runLocal(
        _ body: any Sendable, isCompensation compensating: Bool, name: String, attempt: Int, key: String,
        input: any Sendable, loggedOutput: Data?
    ) async throws -> Data {
        let outputs = state.withLock { $0.machine.outputs }
        let work = LocalStepWork(
            body: body, sagaID: id, stepName: name, idempotencyKey: key, loggedOutput: loggedOutput, input: input,
            attempt: attempt, outputs: outputs)
        let applied = Mutex(false)
        let kinds = [
            compensating ? SagaLogRecord.Kind.compensationSucceeded.rawValue : SagaLogRecord.Kind.stepSucceeded.rawValue
        ]
        do {
            try engine.configuration.faultPoint?(FaultPoint(sagaID: id, moment: .beforeAppend, records: kinds))
            let output = try await engine.store.appendAfterLocalWork(work) { output in
                let kind: SagaLogRecord.Kind = compensating ? .compensationSucceeded : .stepSucceeded
                let draft = Draft(kind: kind, step: name, attempt: attempt, payload: compensating ? nil : output)
                guard
                    case .some(.some(let append)) = try self.prepare(
                        [draft], deferring: false, condition: { _ in true })
                else {
                    throw SagaError(
                        .corruptLog, sagaID: self.id, step: name,
                        message: "no outcome record could be prepared for local step '\(name)'")
                }
                applied.withLock { $0 = true }
                return append
            }
            markDurable()
            try engine.configuration.faultPoint?(FaultPoint(sagaID: id, moment: .afterAppend, records: kinds))
            return output
        } catch {
            if applied.withLock({ $0 }) {
                // The outcome was applied in memory but its transaction did not commit: stop, and let
                // recovery read the truth from the log.
                throw RunStop(
                    kind: .failed(
                        SagaError(
                            .logWriteFailed, sagaID: id, step: name,
                            message: "the local step's transaction did not commit: \(error)")))
            }
            throw error
        }
    }

    private func withTimeout(_ timeout: Duration?, _ body: @escaping @Sendable () async throws -> Data) async throws
        -> Data
    {
        guard let timeout else { return try await body() }
        let clock = engine.configuration.clock
        return try await withThrowingTaskGroup(of: Data?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await clock.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let output = first else {
                throw StepTimeoutError(timeout: timeout)
            }
            return output
        }
    }

    private static func nanoseconds(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = ContinuousClock.now - start
        let (seconds, attoseconds) = elapsed.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
