import Foundation
import Testing

@testable import SagaKit

/// The requests an execution holds in its state machine (a halted group, a cancellation, a deferred
/// needs-attention) and the operator's resolution, decided without I/O.
@Suite("Requests and operator decisions", .tags(.stateMachine), .timeLimit(.minutes(1)))
struct SagaRequestTests {
    let participant = Participant()
    let start = Date(timeIntervalSince1970: 1_000)
    let broken = RecordedError(type: "Broken", message: "cannot read", isRetryable: false)

    /// (reserve ‖ hold) → pay (pivot) → notify (retryable).
    var plan: SagaPlan {
        SagaDefinition<Order, NoOutput>("request") {
            Parallel {
                compensatable("reserve", participant)
                compensatable("hold", participant)
            }
            pivot("pay", participant)
            retryable("notify", participant)
        }.plan
    }

    func records(_ kinds: [(SagaLogRecord.Kind, String?, Int?)]) -> [SagaLogRecord] {
        let all = [(SagaLogRecord.Kind.sagaStarted, String?.none, Int?.none)] + kinds
        return all.enumerated().map { index, record in
            SagaLogRecord(
                sagaID: "r", sequence: index + 1, timestamp: start, kind: record.0, step: record.1,
                attempt: record.2, payload: Data("{}".utf8), error: record.0 == .sagaNeedsAttention ? broken : nil)
        }
    }

    func machine(_ kinds: [(SagaLogRecord.Kind, String?, Int?)]) throws -> SagaStateMachine {
        try SagaStateMachine(plan: plan, sagaID: "r", records: records(kinds))
    }

    func next(after machine: SagaStateMachine, _ kind: SagaLogRecord.Kind, _ step: String? = nil, attempt: Int? = nil)
        -> SagaLogRecord
    {
        SagaLogRecord(
            sagaID: "r", sequence: machine.nextSequence, timestamp: start, kind: kind, step: step, attempt: attempt)
    }

    // MARK: A halted group

    @Test func aSiblingFailingForGoodHaltsTheGroupUntilTheNextGroupBegins() throws {
        var machine = try machine([(.stepStarted, "reserve", 1), (.stepStarted, "hold", 1)])
        #expect(machine.mayStartForwardAttempt)
        try machine.apply(next(after: machine, .stepFailed, "hold", attempt: 1))
        #expect(machine.requests.groupHalted)
        #expect(!machine.mayStartForwardAttempt)
        machine.beginGroup()
        #expect(!machine.requests.groupHalted)
    }

    @Test func aDeferredAttentionHaltsTheGroupAndIsRaisedOnce() throws {
        var machine = try machine([(.stepStarted, "reserve", 1), (.stepStarted, "hold", 1)])
        machine.deferAttention(step: "hold", cause: broken)
        let other = RecordedError(type: "Other", message: "later", isRetryable: false)
        machine.deferAttention(step: "reserve", cause: other)
        #expect(!machine.mayStartForwardAttempt)
        #expect(machine.nextAction() == .raiseAttention(step: "hold", cause: broken), "the first request is kept")
        var raised = next(after: machine, .sagaNeedsAttention, "hold")
        raised.error = broken
        try machine.apply(raised)
        #expect(machine.requests.attention == nil)
        #expect(machine.nextAction() == .none)
    }

    @Test func anUnreadableInputIsRaisedBeforeAnyStepRuns() throws {
        var machine = try machine([])
        machine.deferAttention(step: nil, cause: broken)
        #expect(machine.nextAction() == .raiseAttention(step: nil, cause: broken))
    }

    // MARK: Cancellation

    @Test func aCancellationBeforeThePivotIsPendingAndLoggedAtTheNextBoundary() throws {
        var machine = try machine([(.stepStarted, "reserve", 1), (.stepSucceeded, "reserve", 1)])
        #expect(machine.requestCancellation(reason: "customer") == .pending)
        #expect(machine.requestCancellation(reason: "again") == .pending, "a second request joins the first")
        #expect(!machine.mayStartForwardAttempt, "no new forward attempt while a cancellation waits")
        #expect(machine.nextAction() == .logCancellation(reason: "customer"))
        var cancelled = next(after: machine, .operatorCancelled)
        cancelled.note = "customer"
        try machine.apply(cancelled)
        #expect(machine.requests.cancellation == nil)
        #expect(machine.phase == .compensating)
        #expect(machine.nextAction() == .compensate(group: 0, steps: ["reserve"]))
    }

    @Test func aCancellationPastThePointOfNoReturnIsRefused() throws {
        var machine = try machine([
            (.stepStarted, "reserve", 1), (.stepSucceeded, "reserve", 1), (.stepStarted, "hold", 1),
            (.stepSucceeded, "hold", 1), (.stepStarted, "pay", 1),
        ])
        #expect(machine.pastPointOfNoReturn)
        guard case .refused(let message) = machine.requestCancellation(reason: "late") else {
            Issue.record("a cancellation after the pivot started was accepted")
            return
        }
        #expect(message.contains("pivot"))
        #expect(machine.requests.cancellation == nil)
    }

    @Test func aCancellationOvertakenByTheSagaIsAnsweredAsMoot() throws {
        // Requested before the pivot; the pivot then started before the execution reached a boundary.
        var machine = try machine([
            (.stepStarted, "reserve", 1), (.stepSucceeded, "reserve", 1), (.stepStarted, "hold", 1),
            (.stepSucceeded, "hold", 1),
        ])
        #expect(machine.requestCancellation(reason: "late") == .pending)
        try machine.apply(next(after: machine, .stepStarted, "pay", attempt: 1))
        #expect(machine.nextAction() == .answerMootCancellation(compensating: false))
        // Requested, then a step failed for good: the saga compensates anyway.
        var failing = try self.machine([(.stepStarted, "reserve", 1), (.stepStarted, "hold", 1)])
        #expect(failing.requestCancellation(reason: "customer") == .pending)
        try failing.apply(next(after: failing, .stepFailed, "hold", attempt: 1))
        #expect(failing.nextAction() == .answerMootCancellation(compensating: true))
        failing.dropCancellation()
        #expect(failing.nextAction() == .compensate(group: 0, steps: ["reserve", "hold"]))
    }

    // MARK: Resolution

    @Test func aResolutionFollowsTheNeedsAttentionRecordOrNothing() throws {
        let waiting = records([
            (.stepStarted, "reserve", 1), (.stepFailed, "reserve", 1), (.sagaNeedsAttention, nil, nil),
        ])
        let resolution = try #require(
            SagaStateMachine.resolution(of: "r", records: waiting, note: "refunded by hand", at: start))
        #expect(resolution.record.sequence == waiting.count + 1)
        #expect(resolution.record.kind == .operatorResolved && resolution.record.note == "refunded by hand")
        #expect(resolution.lastError == broken)
        var machine = try SagaStateMachine(plan: plan, sagaID: "r", records: waiting)
        try machine.apply(resolution.record)
        #expect(machine.status == .resolved)

        let retried =
            waiting + [
                SagaLogRecord(sagaID: "r", sequence: waiting.count + 1, timestamp: start, kind: .operatorRetried)
            ]
        #expect(SagaStateMachine.resolution(of: "r", records: retried, note: "n", at: start) == nil)
        #expect(SagaStateMachine.resolution(of: "r", records: [], note: "n", at: start) == nil)
        #expect(
            SagaStateMachine.resolution(of: "r", records: retried, note: "n", at: start, checked: false)?.record
                .sequence
                == retried.count + 1)
    }
}
