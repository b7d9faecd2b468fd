import Foundation
import Logging
import Synchronization
import Tracing

/// The step-attempt loop, one for a step's action and for its compensation: write the intent,
/// call the participant, and execute the state machine's verdict on the answer.
extension SagaExecution {
    /// Which side of a step an attempt loop runs.
    enum Side {
        case action, compensation

        var isCompensation: Bool { self == .compensation }
    }

    /// In a shared log, waits while this engine's lease is not current: another engine may take the
    /// saga over at any moment, so no new attempt starts until the heartbeat is renewed.
    func waitForLease() async throws {
        guard let shared = engine.sharedStore, !shared.leaseIsCurrent else { return }
        logger.warning("this engine's lease on the shared saga log is not current; no step starts until it is renewed")
        while !shared.leaseIsCurrent {
            guard await engine.sleep(for: min(shared.sweepInterval, .milliseconds(100))) else {
                try await checkStop()
                throw RunStop(kind: .shutdown)
            }
        }
        logger.info("lease renewed; the saga goes on")
    }

    /// Runs attempts of one side of step `name` until it succeeds, fails for good, needs attention,
    /// or the execution stops.
    func runAttempts(_ name: String, side: Side, deferOutcome: Bool, span: any Span) async throws {
        guard let step = plan.stepsByName[name] else { return }
        if side == .compensation, step.compensate == nil { return }
        let policy =
            side == .action ? SagaStateMachine.retryPolicy(of: step) : engine.configuration.compensationRetry
        var attempt = state.withLock { state in
            let logged = state.machine.step(name)
            return (side == .action ? logged.attempts : logged.compensationAttempts) + 1
        }
        while true {
            try await checkStop()
            try await waitForLease()
            guard let limit = try await begin(step, side: side, attempt: attempt) else { return }
            var stepLogger = logger
            stepLogger[metadataKey: "saga.step"] = "\(name)"
            stepLogger[metadataKey: "saga.step.attempt"] = "\(attempt)"
            let failure: SagaStateMachine.AttemptFailure
            switch try await perform(step, side: side, attempt: attempt, limit: limit, logger: stepLogger, span: span)
            {
            case .succeeded(let output):
                let isLocal = (side == .action ? step.local : step.localCompensation) != nil
                // A local step's outcome committed with its work.
                guard !isLocal else { return }
                let kind: SagaLogRecord.Kind = side == .action ? .stepSucceeded : .compensationSucceeded
                try await write(
                    [Draft(kind: kind, step: name, attempt: attempt, payload: side == .action ? output : nil)],
                    deferring: deferOutcome)
                return
            case .failed(let observed):
                failure = observed
            }
            let verdict = state.withLock { state in
                switch side {
                case .action:
                    state.machine.verdict(afterForwardAttempt: attempt, of: name, failed: failure, policy: policy)
                case .compensation:
                    // A compensation is never left for attention on its own: it fails for good, and
                    // the saga then needs attention.
                    state.machine.verdict(
                        afterCompensationAttempt: attempt, of: name, failed: failure, policy: policy)
                }
            }
            switch verdict {
            case .retry(let recorded, let used):
                guard try await retry(name, side: side, attempt: attempt, after: recorded, used: used, policy: policy)
                else { return }
                attempt += 1
            case .needsAttention(let recorded, let cause) where side == .action:
                if case .cannotRun = failure {
                    stepLogger.warning("step cannot run: \(recorded.message)")
                } else {
                    stepLogger.warning("pivot outcome unknown after its retries", metadata: ["error": "\(recorded)"])
                }
                // Siblings in flight finish first; the execution raises attention after the group.
                state.withLock { $0.machine.deferAttention(step: name, cause: cause) }
                try await write([Draft(kind: .stepAttemptFailed, step: name, attempt: attempt, error: recorded)])
                return
            case .fail(let recorded), .needsAttention(let recorded, _):
                stepLogger.info(
                    side == .action ? "step failed for good" : "compensation failed for good",
                    metadata: ["error": "\(recorded)"])
                let kind: SagaLogRecord.Kind = side == .action ? .stepFailed : .compensationFailed
                try await write([Draft(kind: kind, step: name, attempt: attempt, error: recorded)])
                return
            }
        }
    }

    /// What one attempt's participant answered, as the state machine sees it.
    enum AttemptAnswer {
        case succeeded(Data)
        case failed(SagaStateMachine.AttemptFailure)
    }

    /// The time bound of one attempt, as the state machine set it.
    struct AttemptBound {
        var limit: Duration?
        var byDeadline: Bool
    }

    /// Logs the intent of attempt `attempt`, returning its time bound, or `nil` when the attempt is
    /// not to start: a cancellation or a sibling's failure stopped the group, or the saga's deadline
    /// passed (then the step is logged failed).
    private func begin(_ step: AnySagaStep, side: Side, attempt: Int) async throws -> AttemptBound? {
        let name = step.name
        guard side == .action else {
            try await write([Draft(kind: .compensationStarted, step: name, attempt: attempt)])
            return AttemptBound(limit: step.options.timeout, byDeadline: false)
        }
        let now = engine.configuration.clock.now()
        let bound = state.withLock { state -> SagaStateMachine.AttemptLimit? in
            // A pending cancellation stops new attempts; the execution logs it at its next boundary.
            guard state.machine.requests.cancellation == nil else { return nil }
            return state.machine.limit(forNextAttemptOf: name, deadline: deadline, now: now)
        }
        switch bound {
        case nil:
            return nil
        case .deadlinePassed(let error):
            try await write([Draft(kind: .stepFailed, step: name, attempt: attempt - 1, error: error)])
            return nil
        case .attempt(let limit, let byDeadline):
            let skipIntent = engine.configuration.plantedBug == .skipWriteAheadIntent
            if skipIntent { try await flush() }
            let wrote = try await write(
                [Draft(kind: .stepStarted, step: name, attempt: attempt)], deferring: skipIntent
            ) { $0.machine.mayStartForwardAttempt }
            return wrote ? AttemptBound(limit: limit, byDeadline: byDeadline) : nil
        }
    }

    /// Calls the participant once, with the attempt's span, metrics and time limit, and says what
    /// it answered in the state machine's terms. Throws `RunStop` when the execution must stop.
    private func perform(
        _ step: AnySagaStep, side: Side, attempt: Int, limit bound: AttemptBound, logger stepLogger: Logger,
        span: any Span
    ) async throws -> AttemptAnswer {
        let name = step.name
        let loggedOutput: Data?
        if side == .compensation {
            loggedOutput = state.withLock { state in
                let logged = state.machine.step(name)
                return logged.status == .succeeded ? logged.output : nil
            }
            stepLogger.info("compensating step")
        } else {
            loggedOutput = nil
            stepLogger.debug("step started")
        }
        let stepSpan = engine.tracer.startSpan(
            side == .action ? "step \(name)" : "compensate \(name)", context: span.context)
        defer { stepSpan.end() }
        stepSpan.attributes["saga.step"] = name
        stepSpan.attributes["saga.step.attempt"] = attempt
        let began = ContinuousClock.now
        let result = await call(
            name: name, attempt: attempt, logger: stepLogger, timeout: bound.limit,
            local: side == .action ? step.local : step.localCompensation, loggedOutput: loggedOutput,
            isCompensation: side.isCompensation, trace: stepSpan.context
        ) { context in
            switch side {
            case .action:
                return try await step.action(context)
            case .compensation:
                try await step.compensate?(loggedOutput, context)
                return Data()
            }
        }
        let nanoseconds = Self.nanoseconds(since: began)
        if Task.isCancelled { throw RunStop(kind: .cancelled) }
        func measure(_ outcome: String) {
            if side == .action {
                engine.metrics.step(plan.name, name, outcome: outcome, nanoseconds: nanoseconds)
            } else {
                engine.metrics.compensation(plan.name, name, outcome: outcome, nanoseconds: nanoseconds)
            }
        }
        switch result {
        case .success(let output):
            measure("succeeded")
            if side == .action { stepLogger.debug("step succeeded") }
            return .succeeded(output)
        case .failure(let stop as RunStop):
            throw stop
        case .failure(let error):
            stepSpan.recordError(error)
            measure("failed")
            return .failed(Self.classify(error, byDeadline: bound.byDeadline, compensating: side.isCompensation))
        }
    }

    /// Carries out a retry verdict, for an action or a compensation alike: counts it, logs the
    /// failed attempt with its error, and waits out the backoff. Returns `false` when graceful
    /// shutdown cut the wait short (the execution stops; recovery retries later).
    private func retry(
        _ name: String, side: Side, attempt: Int, after recorded: RecordedError, used: Int, policy: RetryPolicy
    ) async throws -> Bool {
        if side == .compensation {
            engine.metrics.compensationRetry(plan.name, name)
        } else {
            engine.metrics.retry(plan.name, name)
        }
        let delay = engine.backoff(policy, after: used)
        var stepLogger = logger
        stepLogger[metadataKey: "saga.step"] = "\(name)"
        stepLogger[metadataKey: "saga.step.attempt"] = "\(attempt)"
        stepLogger.info(
            side == .compensation ? "compensation attempt failed; retrying" : "step attempt failed; retrying",
            metadata: ["error": "\(recorded)", "backoff": "\(delay)"])
        let kind: SagaLogRecord.Kind = side == .compensation ? .compensationAttemptFailed : .stepAttemptFailed
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
}
