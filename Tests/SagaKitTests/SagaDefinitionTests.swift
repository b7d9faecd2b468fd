import SagaKit
import Testing

@Suite("Saga definitions", .tags(.stateMachine), .timeLimit(.minutes(1)))
struct SagaDefinitionTests {
    let participant = Participant()

    func code(_ definition: SagaDefinition<Order, NoOutput>) -> SagaDefinitionError.Code? {
        do {
            try definition.validate()
            return nil
        } catch {
            return error.code
        }
    }

    @Test func acceptsCompensatableThenPivotThenRetryable() throws {
        let definition = SagaDefinition<Order, NoOutput>("ok") {
            compensatable("a", participant)
            Parallel {
                compensatable("b", participant)
                compensatable("c", participant)
            }
            pivot("p", participant)
            retryable("r", participant)
        }
        try definition.validate()
        #expect(definition.fingerprint.count == 16)
    }

    @Test func rejectsDuplicateStepNames() {
        #expect(
            code(
                SagaDefinition("dup") {
                    compensatable("a", participant); compensatable("a", participant)
                }) == .duplicateStepName)
    }

    @Test func rejectsCompensatableAfterPivot() {
        #expect(
            code(
                SagaDefinition("late") {
                    pivot("p", participant); compensatable("a", participant)
                }) == .compensatableAfterPivot)
    }

    @Test func rejectsTwoPivots() {
        #expect(
            code(
                SagaDefinition("two") {
                    pivot("p", participant); pivot("q", participant)
                }) == .multiplePivots)
    }

    @Test func rejectsRetryableBeforePivot() {
        #expect(
            code(
                SagaDefinition("early") {
                    retryable("r", participant); pivot("p", participant)
                }) == .retryableBeforePivot)
        #expect(
            code(
                SagaDefinition("early2") {
                    retryable("r", participant); compensatable("a", participant)
                }) == .retryableBeforePivot)
    }

    @Test func rejectsPivotInParallelGroup() {
        let definition = SagaDefinition<Order, NoOutput>("par") {
            Parallel {
                compensatable("a", participant)
                pivot("p", participant)
            }
        }
        #expect(code(definition) == .pivotInParallelGroup)
    }

    @Test func rejectsEmptySagaAndEmptyGroup() {
        #expect(code(SagaDefinition("empty") {}) == .emptySaga)
        let definition = SagaDefinition<Order, NoOutput>("group") {
            Parallel<Order> {}
        }
        #expect(code(definition) == .emptyParallelGroup)
    }

    @Test func rejectsBadNames() {
        #expect(code(SagaDefinition("") { pivot("p", participant) }) == .invalidName)
        #expect(code(SagaDefinition("ok") { pivot("a/b", participant) }) == .invalidName)
    }

    @Test func rejectsCompensatingUnknownOutcomeOfPivot() {
        let options = StepOptions(onUnknownOutcome: .compensate)
        #expect(
            code(SagaDefinition("policy") { pivot("p", participant, options: options) }) == .invalidUnknownOutcomePolicy
        )
    }

    @Test func registerRejectsInvalidDefinitionWithMessage() {
        let engine = SagaEngine(store: InMemorySagaStore(), logger: quietLogger)
        let definition = SagaDefinition<Order, NoOutput>("late") {
            pivot("p", participant); compensatable("a", participant)
        }
        let error = #expect(throws: SagaDefinitionError.self) { try engine.register(definition) }
        #expect(error?.step == "a")
        #expect(error?.message.contains("after pivot 'p'") == true)
    }

    @Test func fingerprintChangesWithStructureOnly() {
        let base = SagaDefinition<Order, NoOutput>("s") {
            compensatable("a", participant); pivot("p", participant)
        }
        let same = SagaDefinition<Order, NoOutput>("s") {
            compensatable("a", Participant()); pivot("p", Participant())
        }
        let renamed = SagaDefinition<Order, NoOutput>("s") {
            compensatable("a2", participant); pivot("p", participant)
        }
        let reordered = SagaDefinition<Order, NoOutput>("s") {
            Parallel { compensatable("a", participant) }
            pivot("p", participant)
        }
        let otherSaga = SagaDefinition<Order, NoOutput>("t") {
            compensatable("a", participant); pivot("p", participant)
        }
        #expect(base.fingerprint == same.fingerprint)
        #expect(Set([base.fingerprint, renamed.fingerprint, reordered.fingerprint, otherSaga.fingerprint]).count == 4)
    }
}
