/// What an execution has been asked to do that is not in the log yet: stop starting forward
/// attempts in the running group, cancel the saga, raise attention once the group has finished.
///
/// Requests are machine state, so the same pure code that decides the next action also decides
/// when a request is logged, answered or moot; the async layer only keeps the callers waiting for
/// the answer. A request is not logged itself: it ends when the record that carries it out is
/// applied (or it is found moot), and it does not survive a restart.
extension SagaStateMachine {
    /// The pending requests of one execution.
    package struct Requests: Sendable, Equatable {
        /// A step of the running group failed for good (or needs attention): its siblings start no
        /// new forward attempt.
        package var groupHalted = false
        /// An operator asked to cancel, for this reason; logged at the next boundary.
        package var cancellation: String?
        /// A step cannot go on: once its group has finished, the saga needs attention.
        package var attention: Attention?
    }

    /// Why the saga will need attention once the running group has finished.
    package struct Attention: Sendable, Equatable {
        /// The step that cannot go on, or `nil` when the saga's input cannot be read.
        package var step: String?
        package var cause: RecordedError
    }

    /// The answer to an operator's request to cancel.
    package enum CancellationAnswer: Sendable, Equatable {
        /// The request is pending; it is logged at the next boundary of the execution.
        case pending
        /// The saga cannot be cancelled any more.
        case refused(message: String)
    }

    /// Whether a new forward attempt may start: the saga runs forward, nothing halted the group, and
    /// no cancellation waits to be logged.
    package var mayStartForwardAttempt: Bool {
        phase == .forward && !requests.groupHalted && requests.cancellation == nil
    }

    /// A group is about to run: no sibling has failed in it yet.
    package mutating func beginGroup() {
        requests.groupHalted = false
    }

    /// Asks for the saga to be cancelled. Only a saga running forward that has not passed its point
    /// of no return can be; a second request while one is pending joins it.
    package mutating func requestCancellation(reason: String) -> CancellationAnswer {
        guard phase == .forward, !pastPointOfNoReturn else {
            return .refused(
                message:
                    "saga '\(sagaID)' is \(status) and past the start of its pivot; it can no longer be cancelled")
        }
        if requests.cancellation == nil { requests.cancellation = reason }
        return .pending
    }

    /// Drops a pending cancellation that could not be logged (the execution stopped first, or the
    /// request became moot).
    package mutating func dropCancellation() {
        requests.cancellation = nil
    }

    /// Marks that the saga needs attention once the running group has finished, because `step`
    /// cannot go on (`nil`: the saga's input cannot be read). The group starts no new forward
    /// attempt; the first such request is the one logged.
    package mutating func deferAttention(step: String?, cause: RecordedError) {
        requests.groupHalted = true
        if requests.attention == nil { requests.attention = Attention(step: step, cause: cause) }
    }

    /// Folds one applied record into the pending requests.
    mutating func settleRequests(after record: SagaLogRecord) {
        switch record.kind {
        case .stepFailed:
            // A sibling failed for good: the rest of the group starts nothing new.
            requests.groupHalted = true
        case .operatorCancelled:
            requests.cancellation = nil
        case .sagaNeedsAttention:
            requests.attention = nil
        default:
            break
        }
    }

    /// What a pending request asks to do at this boundary, if anything.
    func nextRequestedAction() -> Action? {
        if let reason = requests.cancellation {
            if phase == .forward, !pastPointOfNoReturn { return .logCancellation(reason: reason) }
            return .answerMootCancellation(compensating: phase == .compensating)
        }
        if let attention = requests.attention, phase == .forward || phase == .compensating {
            return .raiseAttention(step: attention.step, cause: attention.cause)
        }
        return nil
    }
}
