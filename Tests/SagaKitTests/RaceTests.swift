import Foundation
import SagaKitTesting
import Synchronization
import Testing

@testable import SagaKit

/// Races between callers, operators and a saga's own writes, ordered deterministically by holding
/// one append back.
@Suite("Races", .tags(.engine), .timeLimit(.minutes(1)))
struct RaceTests {
    let participant = Participant()

    @Test func cancelDuringTheFirstWriteKeepsTheSagaWhole() async throws {
        let store = GatedStore()
        store.holdOnce { $0.creation != nil }
        let saga = threeStepSaga(participant)
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            async let started = engine.start(saga, id: "c-1", input: Order(id: 1))
            await store.waitUntilHeld()
            async let cancelled: Void = engine.cancel(sagaID: "c-1", reason: "customer")
            // The cancellation must be requested while the first write is held: released earlier, the
            // saga could finish before the cancel call reached it.
            await eventually("the cancellation is requested") {
                engine.activeRun("c-1")?.state.withLock { $0.machine.requests.cancellation != nil } ?? false
            }
            store.release()
            _ = try await started
            try await cancelled
            let outcome = try await engine.handle(for: "c-1", output: Receipt.self).outcome()
            #expect(outcome.status == .compensated)
        }
        let records = try await store.records(of: "c-1")
        #expect(records.first?.kind == .sagaStarted, "\(records.kinds)")
        #expect(try SagaStateMachine(plan: saga.plan, sagaID: "c-1", records: records).status == .compensated)
        #expect(try await store.summary(of: "c-1")?.status == .compensated)
    }

    @Test func noCompensationRunsBeforeTheCancellationIsDurable() async throws {
        let store = GatedStore()
        participant.script("reserve", [.wait])
        store.holdOnce { $0.records.contains { $0.kind == .operatorCancelled } }
        let saga = threeStepSaga(participant)
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            let handle = try await engine.start(saga, id: "c-2", input: Order(id: 2))
            await participant.waitForCalls("reserve")
            async let cancelled: Void = engine.cancel(sagaID: "c-2", reason: "customer")
            await eventually("the cancellation is requested") {
                engine.activeRun("c-2")?.state.withLock { $0.machine.requests.cancellation != nil } ?? false
            }
            participant.release("reserve")
            await store.waitUntilHeld()
            #expect(participant.calls("undo-reserve").isEmpty, "a compensation ran before the cancellation was durable")
            let snapshot = try await store.records(of: "c-2")
            #expect(throws: Never.self) { _ = try SagaStateMachine(plan: saga.plan, sagaID: "c-2", records: snapshot) }
            store.release()
            try await cancelled
            #expect(try await handle.outcome().status == .compensated)
        }
        #expect(try await store.summary(of: "c-2")?.status == .compensated)
        #expect(participant.operations == ["reserve", "undo-reserve"])
    }

    @Test func aSiblingThatCannotRunWaitsForTheOtherBeforeNeedingAttention() async throws {
        let store = InMemorySagaStore()
        participant.script("left", [.wait])
        let left = compensatable("left", participant)
        let right = SagaStep<Order, Receipt>.compensatable("right") { context in
            try await participant.call("right", key: context.idempotencyKey, attempt: context.attempt)
            _ = try context.output(of: left)  // a sibling's output: not available
            return Receipt(step: "right", order: 0)
        } compensation: { _, _ in
        }
        let saga = SagaDefinition<Order, NoOutput>("sibling") {
            Parallel {
                left
                right
            }
            pivot("ship", participant)
        }
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(engine) { engine in
            let handle = try await engine.start(saga, id: "s-1", input: Order(id: 3))
            await participant.waitForCalls("left")
            await participant.waitForCalls("right")
            participant.release("left")
            return try await handle.outcome()
        }
        guard case .needsAttention(let failure) = outcome else {
            Issue.record("expected needs attention, got \(outcome)")
            return
        }
        #expect(failure.step == "right")
        let records = try await store.records(of: "s-1")
        #expect(records.contains { $0.kind == .stepSucceeded && $0.step == "left" }, "\(records.kinds)")
        #expect(participant.calls("ship").isEmpty)
    }

    @Test func operatorActionsAfterTheEngineStoppedAreRefused() async throws {
        let store = InMemorySagaStore()
        participant.script("ship", [.failForGood])
        let saga = SagaDefinition<Order, NoOutput>("late") {
            compensatable("reserve", participant)
            pivot("pay", participant)
            retryable("ship", participant)
        }
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(engine) {
            try await $0.execute(saga, id: "l-1", input: Order(id: 5))
        }
        #expect(outcome.status == .needsAttention)
        let error = await #expect(throws: SagaError.self) { try await engine.retry(sagaID: "l-1", note: "after stop") }
        #expect(error?.code == .shuttingDown)
        #expect(try await store.records(of: "l-1").contains { $0.kind == .operatorRetried } == false)
        // A new engine takes the retry.
        let next = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        let retried = try await withRunningSagaEngine(next) { engine in
            try engine.register(saga)
            try await engine.retry(sagaID: "l-1", note: "after restart")
            return try await engine.handle(for: "l-1", output: NoOutput.self).outcome()
        }
        #expect(retried.status == .completed)
    }

    @Test func aSecondCallerAttachedToARunThatDuplicatesALoggedSagaGetsItsOutcome() async throws {
        let store = GatedStore()
        let saga = threeStepSaga(participant)
        let first = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        _ = try await withRunningSagaEngine(first) { try await $0.execute(saga, id: "d-1", input: Order(id: 1)) }

        store.holdOnce { $0.creation != nil }
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            async let a = engine.execute(saga, id: "d-1", input: Order(id: 1))
            await store.waitUntilHeld()
            // Attaches to the doomed run, and returns once that run learned the saga exists.
            async let b = engine.execute(saga, id: "d-1", input: Order(id: 1))
            await eventually("the second caller attached") {
                (engine.activeRun("d-1")?.acceptance.waiterCount ?? 0) >= 2
            }
            store.release()
            let (outcomeA, outcomeB) = try await (a, b)
            #expect(outcomeA.status == .completed)
            #expect(outcomeB.status == .completed)
        }
        #expect(participant.operations == ["reserve", "charge", "ship"])
    }
}
