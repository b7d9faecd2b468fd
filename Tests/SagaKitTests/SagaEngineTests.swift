import Foundation
import SagaKitTesting
import Testing

@testable import SagaKit

@Suite("Saga engine", .tags(.engine), .timeLimit(.minutes(1)))
struct SagaEngineTests {
    let participant = Participant()
    let store = InMemorySagaStore()

    func engine(_ configuration: SagaEngine.Configuration = testConfiguration()) -> SagaEngine {
        SagaEngine(store: store, configuration: configuration, logger: quietLogger)
    }

    @Test func happyPathRunsEachStepOnceWithStableKeysAndCompletes() async throws {
        let saga = threeStepSaga(participant)
        let outcome = try await withRunningSagaEngine(engine()) { engine in
            try await engine.execute(saga, id: "order-1", input: Order(id: 1))
        }
        #expect(outcome.output == Receipt(step: "ship", order: 1))
        #expect(participant.operations == ["reserve", "charge", "ship"])
        #expect(participant.calls.map(\.key) == ["order-1/reserve", "order-1/charge", "order-1/ship"])
        let history = try await store.records(of: "order-1")
        #expect(
            history.kinds == [
                "saga.started", "step.started", "step.succeeded", "step.started", "step.succeeded",
                "step.started", "step.succeeded", "saga.completed",
            ])
        #expect(history.map(\.sequence) == Array(1...8))
        // Each outcome commits together with the next intent: 4 durable writes for 3 steps.
        #expect(store.appendCount == 4)
        #expect(try await store.summary(of: "order-1")?.status == .completed)
    }

    @Test(arguments: ["reserve", "charge", "ship"])
    func failureAtEachStepCompensatesStartedStepsInReverse(failing step: String) async throws {
        participant.script(step, [.failForGood])
        let outcome = try await withRunningSagaEngine(engine()) { engine in
            try await engine.execute(threeStepSaga(participant), id: "order-2", input: Order(id: 2))
        }
        guard case .compensated(let failure) = outcome else {
            Issue.record("expected compensated, got \(outcome)")
            return
        }
        #expect(failure.step == step)
        #expect(failure.cause.type == "Refused")
        #expect(!failure.cause.isRetryable)
        let forward = ["reserve", "charge", "ship"]
        let ran = Array(forward.prefix(through: forward.firstIndex(of: step)!))
        let undone = ran.filter { $0 != "ship" }.reversed().map { "undo-\($0)" }
        #expect(participant.operations == ran + undone)
        // A compensation receives its step's key.
        for call in participant.calls where call.operation.hasPrefix("undo-") {
            #expect(call.key == "order-2/\(call.operation.dropFirst(5))")
        }
        #expect(participant.calls(step).count == 1, "a non-retryable failure is not retried")
    }

    @Test func parallelGroupRunsTogetherAndCompensatesTogether() async throws {
        participant.script("left", [.wait])
        participant.script("right", [.wait])
        participant.script("ship", [.failForGood])
        participant.script("undo-left", [.wait])
        participant.script("undo-right", [.wait])
        let saga = SagaDefinition<Order, NoOutput>("parallel") {
            compensatable("first", participant)
            Parallel {
                compensatable("left", participant)
                compensatable("right", participant)
            }
            pivot("ship", participant)
        }
        let outcome = try await withRunningSagaEngine(engine()) { engine in
            let handle = try await engine.start(saga, id: "p-1", input: Order(id: 3))
            // Both branches are in flight at once before either is released.
            await participant.waitForCalls("left")
            await participant.waitForCalls("right")
            participant.release("left")
            participant.release("right")
            await participant.waitForCalls("undo-left")
            await participant.waitForCalls("undo-right")
            #expect(
                participant.calls("undo-first").isEmpty, "the earlier group waits for the parallel group's compensation"
            )
            participant.release("undo-left")
            participant.release("undo-right")
            return try await handle.outcome()
        }
        #expect(outcome.status == .compensated)
        #expect(participant.operations.suffix(1) == ["undo-first"])
    }

    @Test func retriesWithBackoffOnTheInjectedClock() async throws {
        let clock = ManualSagaClock()
        participant.script("charge", [.fail, .fail])
        let options = StepOptions(
            retry: .exponential(maxAttempts: 5, initialBackoff: .seconds(1), maxBackoff: .seconds(4)))
        let outcome = try await withRunningSagaEngine(engine(testConfiguration(clock: clock))) { engine in
            let handle = try await engine.start(
                threeStepSaga(participant, options: options), id: "r-1", input: Order(id: 4))
            for retry in 1...2 {
                await clock.waitForSleepers(count: 1)
                #expect(participant.calls("charge").count == retry, "no retry before the clock moves")
                clock.advance(by: .seconds(4))
            }
            return try await handle.outcome()
        }
        #expect(outcome.status == .completed)
        #expect(participant.calls("charge").map(\.attempt) == [1, 2, 3])
        #expect(Set(participant.calls("charge").map(\.key)) == ["r-1/charge"])
        let history = try await store.records(of: "r-1")
        #expect(history.filter { $0.kind == .stepAttemptFailed }.count == 2)
        #expect(clock.elapsed == .seconds(8))
    }

    @Test func exhaustedRetriesFailTheStepAndCompensate() async throws {
        let clock = ManualSagaClock()
        participant.script("charge", [], then: .fail)
        let options = StepOptions(
            retry: .exponential(maxAttempts: 3, initialBackoff: .seconds(1), maxBackoff: .seconds(1)))
        let outcome = try await withRunningSagaEngine(engine(testConfiguration(clock: clock))) { engine in
            let handle = try await engine.start(
                threeStepSaga(participant, options: options), id: "r-2", input: Order(id: 5))
            for _ in 1...2 {
                await clock.waitForSleepers(count: 1)
                clock.advance(by: .seconds(1))
            }
            return try await handle.outcome()
        }
        #expect(outcome.status == .compensated)
        #expect(participant.calls("charge").count == 3)
        #expect(participant.operations.suffix(2) == ["undo-charge", "undo-reserve"])
    }

    @Test func attemptTimeoutCountsAsFailureAndRetriesWithSameKey() async throws {
        let clock = ManualSagaClock()
        participant.script("charge", [.hang])
        let options = StepOptions(
            retry: .exponential(maxAttempts: 3, initialBackoff: .seconds(1), maxBackoff: .seconds(1)),
            timeout: .seconds(30))
        let outcome = try await withRunningSagaEngine(engine(testConfiguration(clock: clock))) { engine in
            let handle = try await engine.start(
                threeStepSaga(participant, options: options), id: "t-1", input: Order(id: 6))
            await participant.waitForCalls("charge")
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(30))  // the attempt times out
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(1))  // the backoff ends
            return try await handle.outcome()
        }
        #expect(outcome.status == .completed)
        #expect(participant.calls("charge").map(\.key) == ["t-1/charge", "t-1/charge"])
        let failed = try await store.records(of: "t-1").first { $0.kind == .stepAttemptFailed }
        #expect(failed?.error?.type == "SagaKit.StepTimeout")
    }

    @Test func sagaDeadlineStopsForwardProgressAndCompensates() async throws {
        let clock = ManualSagaClock()
        participant.script("charge", [.hang])
        let outcome = try await withRunningSagaEngine(engine(testConfiguration(clock: clock))) { engine in
            let handle = try await engine.start(
                threeStepSaga(participant), id: "d-1", input: Order(id: 7), options: SagaOptions(deadline: .seconds(5)))
            await participant.waitForCalls("charge")
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(5))
            return try await handle.outcome()
        }
        guard case .compensated(let failure) = outcome else {
            Issue.record("expected compensated, got \(outcome)")
            return
        }
        #expect(failure.cause.type == "SagaKit.DeadlineExceeded")
        #expect(failure.step == "charge")
        #expect(participant.calls("charge").count == 1)
        #expect(participant.operations.suffix(2) == ["undo-charge", "undo-reserve"])
    }

    @Test func startWithTheSameIDAttachesToOneSaga() async throws {
        participant.script("reserve", [.wait])
        let saga = threeStepSaga(participant)
        try await withRunningSagaEngine(engine()) { engine in
            let first = try await engine.start(saga, id: "same", input: Order(id: 8))
            let second = try await engine.start(saga, id: "same", input: Order(id: 999))
            participant.release("reserve")
            let a = try await first.outcome()
            let b = try await second.outcome()
            #expect(a.output == b.output)
            #expect(a.output?.order == 8, "the first input wins")
            // After it finished, starting again still returns the same result and runs nothing.
            let again = try await engine.execute(saga, id: "same", input: Order(id: 1000))
            #expect(again.output?.order == 8)
            let other = SagaDefinition<Order, NoOutput>("other-saga") { pivot("x", participant) }
            await #expect(throws: SagaError.self) { try await engine.start(other, id: "same", input: Order(id: 1)) }
        }
        #expect(participant.operations == ["reserve", "charge", "ship"])
        // A new engine on the same log also attaches instead of running again.
        let again = try await withRunningSagaEngine(engine()) { engine in
            try await engine.execute(saga, id: "same", input: Order(id: 5))
        }
        #expect(again.output?.order == 8)
        #expect(participant.operations.count == 3)
    }

    @Test func concurrentSagasRespectTheConfiguredBound() async throws {
        participant.script("reserve", [], then: .wait)
        var configuration = testConfiguration()
        configuration.maxConcurrentSagas = 2
        let saga = threeStepSaga(participant)
        try await withRunningSagaEngine(engine(configuration)) { engine in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for id in 0..<5 {
                    group.addTask { _ = try await engine.execute(saga, id: "bound-\(id)", input: Order(id: id)) }
                }
                await participant.waitForCalls("reserve", count: 2)
                #expect(participant.calls("reserve").count == 2, "only two sagas execute at once")
                participant.release("reserve")
                try await group.waitForAll()
            }
        }
        #expect(participant.calls("ship").count == 5)
    }

    @Test func failedCompensationNeedsAttentionThenOperatorRetryCompensates() async throws {
        participant.script("ship", [.failForGood])
        participant.script("undo-charge", [.failForGood])
        let saga = threeStepSaga(participant)
        try await withRunningSagaEngine(engine()) { engine in
            let outcome = try await engine.execute(saga, id: "na-1", input: Order(id: 9))
            guard case .needsAttention(let failure) = outcome else {
                Issue.record("expected needs attention, got \(outcome)")
                return
            }
            #expect(failure.step == "charge")
            #expect(failure.cause.message == "undo-charge refused")
            #expect(participant.calls("undo-reserve").isEmpty, "compensation stops at the failure")
            let listed = try await engine.sagas(matching: SagaQuery(status: [.needsAttention]))
            #expect(listed.map(\.id) == ["na-1"])
            #expect(listed.first?.lastError?.message == "undo-charge refused")

            try await engine.retry(sagaID: "na-1", note: "payment service fixed")
            let retried = try await engine.handle(for: "na-1", output: Receipt.self).outcome()
            #expect(retried.status == .compensated)
        }
        #expect(participant.calls("undo-charge").map(\.key) == ["na-1/charge", "na-1/charge"])
        let history = try await store.records(of: "na-1")
        #expect(history.first { $0.kind == .operatorRetried }?.note == "payment service fixed")
        #expect(history.last?.kind == .sagaCompensated)
    }

    @Test func operatorResolvesASagaThatNeedsAttention() async throws {
        participant.script("ship", [.failForGood])
        participant.script("undo-reserve", [], then: .failForGood)
        try await withRunningSagaEngine(engine()) { engine in
            let outcome = try await engine.execute(threeStepSaga(participant), id: "na-2", input: Order(id: 10))
            #expect(outcome.status == .needsAttention)
            await #expect(throws: SagaError.self) { try await engine.resolve(sagaID: "unknown", note: "x") }
            try await engine.resolve(sagaID: "na-2", note: "refunded by hand, ticket 7")
            let resolved = try await engine.handle(for: "na-2", output: Receipt.self).outcome()
            guard case .resolved(let note) = resolved else {
                Issue.record("expected resolved, got \(resolved)")
                return
            }
            #expect(note == "refunded by hand, ticket 7")
            await #expect(throws: SagaError.self) { try await engine.retry(sagaID: "na-2") }
        }
        #expect(try await store.summary(of: "na-2")?.status == .resolved)
    }

    @Test func cancelCompensatesARunningSagaButNotOnePastItsPivot() async throws {
        participant.script("charge", [.wait])
        participant.script("ship", [.wait])
        let saga = threeStepSaga(participant)
        try await withRunningSagaEngine(engine()) { engine in
            let handle = try await engine.start(saga, id: "c-1", input: Order(id: 11))
            await participant.waitForCalls("charge")
            // The cancellation is logged at the saga's next durable boundary: after charge returns.
            // charge is released only once the cancellation is in place (else, on a slow machine, the
            // saga could reach its pivot first and the cancellation be refused).
            let (registered, signal) = AsyncStream.makeStream(of: Void.self)
            async let cancelled: Void = engine.cancelHere("c-1", reason: "customer changed their mind") {
                signal.finish()
            }
            for await _ in registered {}
            participant.release("charge")
            try await cancelled
            let outcome = try await handle.outcome()
            guard case .compensated(let failure) = outcome else {
                Issue.record("expected compensated, got \(outcome)")
                return
            }
            #expect(failure.cause.type == "SagaKit.Cancelled")
            #expect(failure.cause.message == "customer changed their mind")
            #expect(participant.calls("ship").isEmpty)
            #expect(participant.operations.suffix(2) == ["undo-charge", "undo-reserve"])

            let past = try await engine.start(saga, id: "c-2", input: Order(id: 12))
            await participant.waitForCalls("ship")
            let error = await #expect(throws: SagaError.self) {
                try await engine.cancel(sagaID: "c-2", reason: "too late")
            }
            #expect(error?.code == .cannotCancel)
            participant.release("ship")
            #expect(try await past.outcome().status == .completed)
        }
    }

    @Test func retryableStepRetriesUntilItSucceedsAfterThePivot() async throws {
        let clock = ManualSagaClock()
        participant.script("notify", [.fail, .fail, .fail])
        let notify = retryable(
            "notify", participant,
            options: StepOptions(
                retry: .exponential(maxAttempts: nil, initialBackoff: .seconds(1), maxBackoff: .seconds(1))))
        let saga = SagaDefinition<Order, Receipt>("with-retryable", returning: notify) {
            pivot("ship", participant)
            notify
        }
        let outcome = try await withRunningSagaEngine(engine(testConfiguration(clock: clock))) { engine in
            let handle = try await engine.start(saga, id: "rt-1", input: Order(id: 13))
            for _ in 1...3 {
                await clock.waitForSleepers(count: 1)
                clock.advance(by: .seconds(1))
            }
            return try await handle.outcome()
        }
        #expect(outcome.status == .completed)
        #expect(participant.calls("notify").count == 4)
    }

    @Test func nonRetryableFailureAfterThePivotNeedsAttention() async throws {
        participant.script("notify", [.failForGood])
        let notify = retryable("notify", participant)
        let saga = SagaDefinition<Order, Receipt>("with-retryable", returning: notify) {
            pivot("ship", participant)
            notify
        }
        try await withRunningSagaEngine(engine()) { engine in
            let outcome = try await engine.execute(saga, id: "rt-2", input: Order(id: 14))
            #expect(outcome.status == .needsAttention)
            try await engine.retry(sagaID: "rt-2", note: "notifier redeployed")
            #expect(try await engine.handle(for: "rt-2", output: Receipt.self).outcome().status == .completed)
        }
        #expect(participant.calls("notify").count == 2)
        #expect(participant.calls("ship").count == 1)
    }

    @Test func aPivotWithoutADefiniteAnswerNeedsAttentionInsteadOfCompensating() async throws {
        let clock = ManualSagaClock()
        participant.script("ship", [], then: .fail)
        let options = StepOptions(
            retry: .exponential(maxAttempts: 2, initialBackoff: .seconds(1), maxBackoff: .seconds(1)))
        try await withRunningSagaEngine(engine(testConfiguration(clock: clock))) { engine in
            let handle = try await engine.start(
                threeStepSaga(participant, options: options), id: "pv-1", input: Order(id: 15))
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(1))
            let outcome = try await handle.outcome()
            guard case .needsAttention(let failure) = outcome else {
                Issue.record("expected needs attention, got \(outcome)")
                return
            }
            #expect(failure.step == "ship")
            #expect(failure.cause.type == "SagaKit.PivotOutcomeUnknown")
            #expect(participant.operations.filter { $0.hasPrefix("undo-") }.isEmpty, "the pivot may have taken effect")
            // Once the participant answers, an operator retry completes the saga.
            participant.script("ship", [], then: .succeed)
            try await engine.retry(sagaID: "pv-1", note: "shipping service back")
            #expect(try await engine.handle(for: "pv-1", output: Receipt.self).outcome().status == .completed)
        }
    }

    @Test func theDeadlineDoesNotCutAPivotAttemptShort() async throws {
        let clock = ManualSagaClock()
        participant.script("ship", [.wait])
        try await withRunningSagaEngine(engine(testConfiguration(clock: clock))) { engine in
            let handle = try await engine.start(
                threeStepSaga(participant), id: "pv-2", input: Order(id: 16),
                options: SagaOptions(deadline: .seconds(5)))
            await participant.waitForCalls("ship")
            clock.advance(by: .seconds(60))  // far past the deadline, while the pivot is in flight
            participant.release("ship")
            #expect(try await handle.outcome().status == .completed)
        }
        #expect(participant.calls("ship").count == 1)
    }

    @Test func rejectsInvalidIDsAndUnknownSagas() async throws {
        try await withRunningSagaEngine(engine()) { engine in
            let empty = await #expect(throws: SagaError.self) {
                try await engine.start(threeStepSaga(participant), id: "", input: Order(id: 1))
            }
            #expect(empty?.code == .invalidSagaID)
            let unknown = await #expect(throws: SagaError.self) { try await engine.history(of: "nope") }
            #expect(unknown?.code == .unknownSaga)
            let outcome = await #expect(throws: SagaError.self) {
                try await engine.handle(for: "nope", output: Receipt.self).outcome()
            }
            #expect(outcome?.code == .unknownSaga)
        }
    }
}
