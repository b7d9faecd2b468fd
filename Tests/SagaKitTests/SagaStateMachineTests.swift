import Foundation
import Testing

@testable import SagaKit

@Suite("Saga state machine", .tags(.stateMachine), .timeLimit(.minutes(1)))
struct SagaStateMachineTests {
    let plan = threeStepSaga(Participant()).plan
    var sequence = 0

    mutating func record(_ kind: SagaLogRecord.Kind, _ step: String? = nil, attempt: Int? = nil) -> SagaLogRecord {
        sequence += 1
        return SagaLogRecord(
            sagaID: "s", sequence: sequence, timestamp: Date(timeIntervalSince1970: 0), kind: kind, step: step,
            attempt: attempt, payload: Data("{}".utf8))
    }

    @Test mutating func decidesForwardThenCompletes() throws {
        var machine = SagaStateMachine(plan: plan, sagaID: "s")
        try machine.apply(record(.sagaStarted))
        #expect(machine.nextAction() == .advance(group: 0, steps: ["reserve"]))
        try machine.apply(record(.stepStarted, "reserve", attempt: 1))
        try machine.apply(record(.stepSucceeded, "reserve", attempt: 1))
        #expect(machine.nextAction() == .advance(group: 1, steps: ["charge"]))
        try machine.apply(record(.stepStarted, "charge", attempt: 1))
        try machine.apply(record(.stepSucceeded, "charge", attempt: 1))
        try machine.apply(record(.stepStarted, "ship", attempt: 1))
        try machine.apply(record(.stepSucceeded, "ship", attempt: 1))
        #expect(machine.nextAction() == .complete)
        try machine.apply(record(.sagaCompleted))
        #expect(machine.status == .completed)
        #expect(machine.nextAction() == SagaStateMachine.Action.none)
    }

    @Test mutating func failedPivotCompensatesStartedStepsInReverse() throws {
        var machine = SagaStateMachine(plan: plan, sagaID: "s")
        for r in [
            record(.sagaStarted), record(.stepStarted, "reserve", attempt: 1),
            record(.stepSucceeded, "reserve", attempt: 1),
            record(.stepStarted, "charge", attempt: 1), record(.stepSucceeded, "charge", attempt: 1),
            record(.stepStarted, "ship", attempt: 1), record(.stepFailed, "ship", attempt: 1),
        ] { try machine.apply(r) }
        #expect(machine.status == .compensating)
        #expect(machine.nextAction() == .compensate(group: 1, steps: ["charge"]))
        try machine.apply(record(.compensationStarted, "charge", attempt: 1))
        try machine.apply(record(.compensationSucceeded, "charge", attempt: 1))
        #expect(machine.nextAction() == .compensate(group: 0, steps: ["reserve"]))
        try machine.apply(record(.compensationStarted, "reserve", attempt: 1))
        try machine.apply(record(.compensationSucceeded, "reserve", attempt: 1))
        #expect(machine.nextAction() == .finishCompensation)
    }

    @Test mutating func startedStepWithoutOutcomeIsRetriedOrAbandonedByPolicy() throws {
        var machine = SagaStateMachine(plan: plan, sagaID: "s")
        try machine.apply(record(.sagaStarted))
        try machine.apply(record(.stepStarted, "reserve", attempt: 1))
        #expect(machine.nextAction() == .advance(group: 0, steps: ["reserve"]))

        let participant = Participant()
        let compensating = SagaDefinition<Order, NoOutput>("c") {
            compensatable("reserve", participant, options: StepOptions(onUnknownOutcome: .compensate))
            pivot("ship", participant)
        }.plan
        var other = SagaStateMachine(plan: compensating, sagaID: "s")
        sequence = 0
        try other.apply(record(.sagaStarted))
        try other.apply(record(.stepStarted, "reserve", attempt: 1))
        #expect(other.nextAction() == .abandonUnknownOutcome(step: "reserve"))
    }

    @Test mutating func rejectsIllegalTransitions() throws {
        var machine = SagaStateMachine(plan: plan, sagaID: "s")
        #expect(throws: SagaError.self) { try machine.apply(record(.stepStarted, "reserve", attempt: 1)) }
        sequence = 0
        try machine.apply(record(.sagaStarted))
        // An outcome without an intent.
        #expect(throws: SagaError.self) { try machine.apply(record(.stepSucceeded, "reserve", attempt: 1)) }
        // A step the saga does not have.
        #expect(throws: SagaError.self) { try machine.apply(record(.stepStarted, "nope", attempt: 1)) }
        // Completing with steps left.
        #expect(throws: SagaError.self) { try machine.apply(record(.sagaCompleted)) }
        // Compensating while running forward.
        #expect(throws: SagaError.self) { try machine.apply(record(.compensationStarted, "reserve", attempt: 1)) }
        try machine.apply(record(.stepStarted, "reserve", attempt: 1))
        // Attempts never go backwards.
        #expect(throws: SagaError.self) { try machine.apply(record(.stepStarted, "reserve", attempt: 1)) }
        // A record out of sequence.
        let stale = SagaLogRecord(sagaID: "s", sequence: 1, timestamp: Date(), kind: .stepSucceeded, step: "reserve")
        #expect(throws: SagaError.self) { try machine.apply(stale) }
    }

    @Test mutating func cancelIsRefusedOncePivotStarted() throws {
        var machine = SagaStateMachine(plan: plan, sagaID: "s")
        for r in [
            record(.sagaStarted), record(.stepStarted, "reserve", attempt: 1),
            record(.stepSucceeded, "reserve", attempt: 1),
            record(.stepStarted, "charge", attempt: 1), record(.stepSucceeded, "charge", attempt: 1),
            record(.stepStarted, "ship", attempt: 1),
        ] { try machine.apply(r) }
        #expect(machine.pastPointOfNoReturn)
        #expect(throws: SagaError.self) { try machine.apply(record(.operatorCancelled)) }
    }

    @Test mutating func cancelIsRefusedOnceARetryableStepStartedInASagaWithoutPivot() throws {
        let participant = Participant()
        let noPivot = SagaDefinition<Order, NoOutput>("no-pivot") {
            compensatable("reserve", participant)
            retryable("notify", participant)
        }.plan
        var machine = SagaStateMachine(plan: noPivot, sagaID: "s")
        for r in [
            record(.sagaStarted), record(.stepStarted, "reserve", attempt: 1),
            record(.stepSucceeded, "reserve", attempt: 1),
        ] { try machine.apply(r) }
        #expect(!machine.pastPointOfNoReturn)
        try machine.apply(record(.stepStarted, "notify", attempt: 1))
        #expect(machine.pastPointOfNoReturn, "a started retryable step cannot be undone")
        #expect(throws: SagaError.self) { try machine.apply(record(.operatorCancelled)) }
    }

    @Test mutating func operatorRetryReturnsToCompensationWithFreshBudget() throws {
        var machine = SagaStateMachine(plan: plan, sagaID: "s")
        for r in [
            record(.sagaStarted), record(.stepStarted, "reserve", attempt: 1),
            record(.stepFailed, "reserve", attempt: 1),
            record(.compensationStarted, "reserve", attempt: 1), record(.compensationFailed, "reserve", attempt: 1),
        ] { try machine.apply(r) }
        #expect(machine.nextAction() == .raiseAttention(step: "reserve", cause: machine.step("reserve").lastError))
        try machine.apply(record(.sagaNeedsAttention, "reserve"))
        #expect(machine.nextAction() == SagaStateMachine.Action.none)
        try machine.apply(record(.operatorRetried))
        #expect(machine.status == .compensating)
        #expect(machine.step("reserve").compensationRetryBase == 1)
        #expect(machine.nextAction() == .compensate(group: 0, steps: ["reserve"]))
    }
}
