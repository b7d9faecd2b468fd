import Foundation
import Testing

@testable import SagaKit

/// The decisions around one attempt, made by the state machine without I/O: the retry budget, the
/// deadline's binding, timeout classification, an unknown pivot outcome, a step that cannot run.
@Suite("Attempt decisions", .tags(.stateMachine), .timeLimit(.minutes(1)))
struct SagaDecisionTests {
    let participant = Participant()
    let start = Date(timeIntervalSince1970: 1_000)

    /// reserve (compensatable, timeout 2 s) → pay (pivot) → notify (retryable).
    var plan: SagaPlan {
        SagaDefinition<Order, NoOutput>("decide") {
            compensatable("reserve", participant, options: StepOptions(timeout: .seconds(2)))
            pivot("pay", participant)
            retryable("notify", participant)
        }.plan
    }

    /// A machine after these records, numbered in order.
    func machine(_ records: [(SagaLogRecord.Kind, String?, Int?)]) throws -> SagaStateMachine {
        var machine = SagaStateMachine(plan: plan, sagaID: "d")
        let all = [(SagaLogRecord.Kind.sagaStarted, String?.none, Int?.none)] + records
        for (index, record) in all.enumerated() {
            try machine.apply(
                SagaLogRecord(
                    sagaID: "d", sequence: index + 1, timestamp: start, kind: record.0, step: record.1,
                    attempt: record.2, payload: Data("{}".utf8)))
        }
        return machine
    }

    let flaky = RecordedError(type: "Flaky", message: "try again", isRetryable: true)
    let refused = RecordedError(type: "Refused", message: "no", isRetryable: false)

    // MARK: Retry budgets

    @Test func eachKindOfStepHasItsRetryBudget() {
        let steps = plan.stepsByName
        #expect(SagaStateMachine.retryPolicy(of: steps["reserve"]!) == .default)
        #expect(SagaStateMachine.retryPolicy(of: steps["pay"]!) == .default)
        #expect(SagaStateMachine.retryPolicy(of: steps["notify"]!) == .forever)
        let own = compensatable("own", participant, options: StepOptions(retry: .noRetries))
        #expect(
            SagaStateMachine.retryPolicy(of: SagaDefinition<Order, NoOutput>("own") { own }.plan.stepsByName["own"]!)
                == .noRetries)
    }

    @Test func aRetryableFailureIsRetriedWhileTheBudgetAllows() throws {
        let machine = try machine([(.stepStarted, "reserve", 1)])
        let policy = RetryPolicy.exponential(maxAttempts: 2)
        #expect(
            machine.verdict(
                afterForwardAttempt: 1, of: "reserve", failed: .threw(flaky), policy: policy)
                == .retry(flaky, backoffAfter: 1))
        #expect(
            machine.verdict(
                afterForwardAttempt: 2, of: "reserve", failed: .threw(flaky), policy: policy)
                == .fail(flaky))
    }

    @Test func aNonRetryableFailureOrAFailedSiblingFailsTheStepAtOnce() throws {
        let machine = try machine([(.stepStarted, "reserve", 1)])
        #expect(
            machine.verdict(
                afterForwardAttempt: 1, of: "reserve", failed: .threw(refused), policy: .default)
                == .fail(refused))
        var halted = machine
        halted.deferAttention(step: "reserve", cause: refused)
        #expect(halted.requests.groupHalted)
        #expect(
            halted.verdict(afterForwardAttempt: 1, of: "reserve", failed: .threw(flaky), policy: .default)
                == .fail(flaky))
    }

    @Test func anOperatorRetryGivesAFreshBudget() throws {
        // Three attempts, the saga needed attention, an operator retried it: the budget counts from
        // attempt 3, so attempt 4 is the budget's first.
        let machine = try machine([
            (.stepStarted, "reserve", 1), (.stepAttemptFailed, "reserve", 1), (.stepStarted, "reserve", 2),
            (.stepAttemptFailed, "reserve", 2), (.stepStarted, "reserve", 3), (.sagaNeedsAttention, "reserve", nil),
            (.operatorRetried, nil, nil), (.stepStarted, "reserve", 4),
        ])
        let policy = RetryPolicy.exponential(maxAttempts: 2)
        #expect(
            machine.verdict(
                afterForwardAttempt: 4, of: "reserve", failed: .threw(flaky), policy: policy)
                == .retry(flaky, backoffAfter: 1))
    }

    // MARK: Timeouts and the deadline

    @Test func aTimeoutIsRetryableUnlessTheDeadlineSetTheLimit() throws {
        let machine = try machine([(.stepStarted, "reserve", 1)])
        let timeout = SagaStateMachine.timeoutError(.seconds(2))
        #expect(timeout.isRetryable && timeout.type == "SagaKit.StepTimeout")
        #expect(
            machine.verdict(
                afterForwardAttempt: 1, of: "reserve", failed: .timedOut(.seconds(2), byDeadline: false),
                policy: .default) == .retry(timeout, backoffAfter: 1))
        #expect(
            machine.verdict(
                afterForwardAttempt: 1, of: "reserve", failed: .timedOut(.seconds(1), byDeadline: true),
                policy: .default) == .fail(SagaStateMachine.deadlineExceeded("reserve")))
    }

    @Test func theDeadlineBindsACompensatableStepWhenItIsNearerThanTheTimeout() throws {
        let machine = try machine([])
        let deadline = start.addingTimeInterval(10)
        #expect(
            machine.limit(forNextAttemptOf: "reserve", deadline: nil, now: start)
                == .attempt(limit: .seconds(2), byDeadline: false))
        #expect(
            machine.limit(forNextAttemptOf: "reserve", deadline: deadline, now: start)
                == .attempt(limit: .seconds(2), byDeadline: false))
        #expect(
            machine.limit(forNextAttemptOf: "reserve", deadline: deadline, now: start.addingTimeInterval(9))
                == .attempt(limit: .seconds(1), byDeadline: true))
        #expect(
            machine.limit(forNextAttemptOf: "reserve", deadline: deadline, now: start.addingTimeInterval(10))
                == .deadlinePassed(SagaStateMachine.deadlineExceeded("reserve")))
    }

    @Test func theDeadlineStopsAPivotOnlyBeforeItsFirstAttempt() throws {
        let deadline = start.addingTimeInterval(1)
        let late = start.addingTimeInterval(5)
        let before = try machine([(.stepStarted, "reserve", 1), (.stepSucceeded, "reserve", 1)])
        #expect(
            before.limit(forNextAttemptOf: "pay", deadline: deadline, now: late)
                == .deadlinePassed(SagaStateMachine.deadlineExceeded("pay")))
        // The pivot's own limit is its timeout, never the deadline: cut short, its outcome would be unknown.
        #expect(
            before.limit(forNextAttemptOf: "pay", deadline: deadline, now: start)
                == .attempt(limit: nil, byDeadline: false)
        )
        let started = try machine([
            (.stepStarted, "reserve", 1), (.stepSucceeded, "reserve", 1), (.stepStarted, "pay", 1),
            (.stepAttemptFailed, "pay", 1),
        ])
        #expect(
            started.limit(forNextAttemptOf: "pay", deadline: deadline, now: late)
                == .attempt(limit: nil, byDeadline: false)
        )
    }

    @Test func theDeadlineNeverBindsARetryableStep() throws {
        let machine = try machine([
            (.stepStarted, "reserve", 1), (.stepSucceeded, "reserve", 1), (.stepStarted, "pay", 1),
            (.stepSucceeded, "pay", 1),
        ])
        #expect(
            machine.limit(forNextAttemptOf: "notify", deadline: start, now: start.addingTimeInterval(60))
                == .attempt(limit: nil, byDeadline: false))
    }

    // MARK: The pivot, and steps that cannot run

    @Test func aPivotWithoutADefiniteAnswerNeedsAttentionInsteadOfCompensating() throws {
        let machine = try machine([
            (.stepStarted, "reserve", 1), (.stepSucceeded, "reserve", 1), (.stepStarted, "pay", 1),
        ])
        let verdict = machine.verdict(
            afterForwardAttempt: 1, of: "pay", failed: .threw(flaky), policy: .noRetries)
        guard case .needsAttention(let logged, let cause) = verdict else {
            Issue.record("expected needs attention, got \(verdict)")
            return
        }
        #expect(logged == flaky)
        #expect(cause.type == "SagaKit.PivotOutcomeUnknown" && cause.message.contains("'pay'"))
        // A definite refusal of the pivot fails it, and the saga compensates.
        #expect(
            machine.verdict(
                afterForwardAttempt: 1, of: "pay", failed: .threw(refused), policy: .noRetries)
                == .fail(refused))
    }

    @Test func aStepThatCannotRunNeedsAttention() throws {
        let machine = try machine([(.stepStarted, "reserve", 1)])
        let undecodable = RecordedError(type: "SagaError.undecodablePayload", message: "bad input", isRetryable: false)
        #expect(
            machine.verdict(
                afterForwardAttempt: 1, of: "reserve", failed: .cannotRun(undecodable), policy: .default)
                == .needsAttention(logged: undecodable, cause: undecodable))
    }

    // MARK: Compensations

    @Test func aCompensationIsRetriedWhileItsBudgetAllowsThenFailsForGood() throws {
        let machine = try machine([
            (.stepStarted, "reserve", 1), (.stepFailed, "reserve", 1), (.compensationStarted, "reserve", 1),
        ])
        let policy = RetryPolicy.exponential(maxAttempts: 2)
        #expect(
            machine.verdict(afterCompensationAttempt: 1, of: "reserve", failed: .threw(flaky), policy: policy)
                == .retry(flaky, backoffAfter: 1))
        #expect(
            machine.verdict(afterCompensationAttempt: 2, of: "reserve", failed: .threw(flaky), policy: policy)
                == .fail(flaky))
        #expect(
            machine.verdict(afterCompensationAttempt: 1, of: "reserve", failed: .threw(refused), policy: policy)
                == .fail(refused))
        #expect(
            machine.verdict(
                afterCompensationAttempt: 1, of: "reserve", failed: .timedOut(.seconds(2), byDeadline: false),
                policy: policy) == .retry(SagaStateMachine.timeoutError(.seconds(2)), backoffAfter: 1))
    }
}
