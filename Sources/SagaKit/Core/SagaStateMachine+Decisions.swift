package import Foundation

/// The decisions the engine makes around one attempt of a step or a compensation, as pure functions
/// of the saga's state, the step's policy and what the attempt did. The async layer observes (the
/// participant's answer, the clock's instant) and executes (write, sleep, call); it decides nothing.
extension SagaStateMachine {
    /// How an attempt that did not succeed ended, as the engine observed it.
    package enum AttemptFailure: Sendable, Equatable {
        /// The participant (or a layer around it) threw this error.
        case threw(RecordedError)
        /// The attempt ran past its time limit; `byDeadline` when the saga's deadline set that limit.
        case timedOut(Duration, byDeadline: Bool)
        /// The step could not run: its input or an earlier step's output does not decode or is not
        /// available. No retry can fix that; a person must.
        case cannotRun(RecordedError)
    }

    /// What to do after an attempt failed.
    package enum AttemptVerdict: Sendable, Equatable {
        /// Log the attempt failed with `error`, wait the policy's backoff after `retries` attempts of
        /// this budget, and try again with the same key.
        case retry(RecordedError, backoffAfter: Int)
        /// Log the step (or its compensation) failed for good with `error`.
        case fail(RecordedError)
        /// Log the attempt failed with `logged`, start no new forward attempt in this group, and once
        /// the group has finished, log that the saga needs attention because of `cause`.
        case needsAttention(logged: RecordedError, cause: RecordedError)
    }

    /// What bounds the next forward attempt of a step in time.
    package enum AttemptLimit: Sendable, Equatable {
        /// The saga's deadline has passed: log the step failed for good with this error.
        case deadlinePassed(RecordedError)
        /// Run the attempt within `limit` (`nil`: no limit); `byDeadline` when the deadline set it.
        case attempt(limit: Duration?, byDeadline: Bool)
    }

    /// The retry budget of a step's forward attempts: its own policy, else retryable steps retry
    /// forever and the others use ``RetryPolicy/default``.
    package static func retryPolicy(of step: AnySagaStep) -> RetryPolicy {
        step.options.retry ?? (step.kind == .retryable ? .forever : .default)
    }

    /// The error a deadline that passed before `step` finished is recorded as.
    package static func deadlineExceeded(_ step: String) -> RecordedError {
        RecordedError(
            type: "SagaKit.DeadlineExceeded", message: "the saga's deadline passed before step '\(step)' finished",
            isRetryable: false)
    }

    /// The time limit of the next forward attempt of `name`, at instant `now`.
    ///
    /// The deadline binds compensatable steps, and the pivot only until its first attempt starts: an
    /// attempt of the pivot cut short would leave its outcome unknown. Retryable steps, past the
    /// point of no return, are never cut short by it. A compensatable step runs within the earlier of
    /// its timeout and the deadline.
    package func limit(forNextAttemptOf name: String, deadline: Date?, now: Date) -> AttemptLimit {
        guard let step = plan.stepsByName[name] else { return .attempt(limit: nil, byDeadline: false) }
        let timeout = step.options.timeout
        let pivotAttempted = step.kind == .pivot && self.step(name).attempts > 0
        guard let deadline, step.kind != .retryable, !pivotAttempted else {
            return .attempt(limit: timeout, byDeadline: false)
        }
        let left = deadline.timeIntervalSince(now)
        if left <= 0 { return .deadlinePassed(Self.deadlineExceeded(name)) }
        let remaining = Duration.seconds(left)
        if step.kind == .compensatable, timeout.map({ remaining < $0 }) ?? true {
            return .attempt(limit: remaining, byDeadline: true)
        }
        return .attempt(limit: timeout, byDeadline: false)
    }

    /// What to do after forward attempt `attempt` of `name` failed.
    ///
    /// - A step that cannot run needs attention.
    /// - A timeout is retryable, unless the saga's deadline set the limit (then the deadline passed).
    /// - A retryable failure is retried while the step's budget (counted from the last operator
    ///   retry) allows and no sibling has failed for good (``Requests/groupHalted``).
    /// - A pivot whose retries ran out without a definite answer may have taken effect: compensating
    ///   would be wrong, so the saga needs attention.
    /// - Anything else fails the step for good.
    package func verdict(
        afterForwardAttempt attempt: Int, of name: String, failed failure: AttemptFailure, policy: RetryPolicy
    ) -> AttemptVerdict {
        let recorded: RecordedError
        switch failure {
        case .cannotRun(let error):
            return .needsAttention(logged: error, cause: error)
        case .threw(let error):
            recorded = error
        case .timedOut(_, byDeadline: true):
            recorded = Self.deadlineExceeded(name)
        case .timedOut(let limit, byDeadline: false):
            recorded = Self.timeoutError(limit)
        }
        let used = attempt - step(name).retryBase
        if recorded.isRetryable, !requests.groupHalted, policy.allowsAttempt(after: used) {
            return .retry(recorded, backoffAfter: used)
        }
        if plan.stepsByName[name]?.kind == .pivot, recorded.isRetryable {
            let cause = RecordedError(
                type: "SagaKit.PivotOutcomeUnknown",
                message:
                    "pivot '\(name)' gave no definite answer in \(used) attempts (last: \(recorded)); it may have taken effect, so the saga does not compensate",
                isRetryable: true)
            return .needsAttention(logged: recorded, cause: cause)
        }
        return .fail(recorded)
    }

    /// What to do after compensation attempt `attempt` of `name` failed: retry a retryable failure
    /// (a timeout included) while the compensation budget, counted from the last operator retry,
    /// allows; else the compensation failed for good, and the saga will need attention.
    package func verdict(
        afterCompensationAttempt attempt: Int, of name: String, failed failure: AttemptFailure, policy: RetryPolicy
    ) -> AttemptVerdict {
        let recorded: RecordedError
        switch failure {
        case .threw(let error), .cannotRun(let error): recorded = error
        case .timedOut(let limit, _): recorded = Self.timeoutError(limit)
        }
        let used = attempt - step(name).compensationRetryBase
        if recorded.isRetryable, policy.allowsAttempt(after: used) {
            return .retry(recorded, backoffAfter: used)
        }
        return .fail(recorded)
    }

    static func timeoutError(_ limit: Duration) -> RecordedError {
        RecordedError(
            type: "SagaKit.StepTimeout", message: "the attempt did not finish within \(limit)", isRetryable: true)
    }
}
