import Foundation
import Logging
import Synchronization
import Tracing

/// The attempt loops of a step's action and of its compensation: each writes the intent, calls the
/// participant, and executes the state machine's verdict on the answer.
extension SagaExecution {
    // MARK: Forward

    func forward(_ name: String, deferOutcome: Bool, span: any Span) async throws {
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
                    let again = try await retry(
                        name, attempt: attempt, after: recorded, used: used, policy: policy, compensating: false,
                        logger: stepLogger)
                    guard again else { return }
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

    /// Carries out a retry verdict, for an action or a compensation alike: counts it, logs the
    /// failed attempt with its error, and waits out the backoff. Returns `false` when graceful
    /// shutdown cut the wait short (the run stops; recovery retries later).
    func retry(
        _ name: String, attempt: Int, after recorded: RecordedError, used: Int, policy: RetryPolicy,
        compensating: Bool, logger stepLogger: Logger
    ) async throws -> Bool {
        if compensating {
            engine.metrics.compensationRetry(plan.name, name)
        } else {
            engine.metrics.retry(plan.name, name)
        }
        let delay = engine.backoff(policy, after: used)
        stepLogger.info(
            compensating ? "compensation attempt failed; retrying" : "step attempt failed; retrying",
            metadata: ["error": "\(recorded)", "backoff": "\(delay)"])
        let kind: SagaLogRecord.Kind = compensating ? .compensationAttemptFailed : .stepAttemptFailed
        try await write([Draft(kind: kind, step: name, attempt: attempt, error: recorded)])
        guard await engine.sleep(for: delay) else {
            try await checkStop()
            return false
        }
        return true
    }

    /// What the engine observed of a failed attempt, in the state machine's terms.
    static func classify(_ error: any Error, byDeadline: Bool, compensating: Bool)
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

    func compensate(_ name: String, deferOutcome: Bool, span: any Span) async throws {
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
                    let again = try await retry(
                        name, attempt: attempt, after: recorded, used: used, policy: policy, compensating: true,
                        logger: stepLogger)
                    guard again else { return }
                    attempt += 1
                    continue
                case .fail(let recorded), .needsAttention(let recorded, _):
                    try await write([Draft(kind: .compensationFailed, step: name, attempt: attempt, error: recorded)])
                    return
                }
            }
        }
    }
}
