import SagaKit
import SagaKitTesting
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@Suite("Engine as a service", .tags(.engine), .timeLimit(.minutes(1)))
struct SagaEngineLifecycleTests {
    let participant = Participant()
    let store = InMemorySagaStore()

    @Test func gracefulShutdownRefusesNewSagasAndStopsAtTheNextDurableBoundary() async throws {
        participant.script("charge", [.wait])
        let saga = threeStepSaga(participant)
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await engine.run() }
                let handle = try await engine.start(saga, id: "g-1", input: Order(id: 1))
                await participant.waitForCalls("charge")
                trigger.triggerGracefulShutdown()
                let refused = await #expect(throws: SagaError.self) {
                    try await engine.start(saga, id: "g-2", input: Order(id: 2))
                }
                #expect(refused?.code == .shuttingDown)
                participant.release("charge")
                try await group.waitForAll()
                let interrupted = await #expect(throws: SagaError.self) { try await handle.outcome() }
                #expect(interrupted?.code == .interrupted)
            }
        }
        // The step in flight finished and its outcome is durable; nothing after it started.
        let history = try await store.records(of: "g-1")
        #expect(history.last?.kind == .stepSucceeded)
        #expect(history.last?.step == "charge")
        #expect(participant.calls("ship").isEmpty)

        // A new engine finishes the saga without repeating the logged step.
        let next = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(next) { engine in
            try engine.register(saga)
            return try await engine.handle(for: "g-1", output: Receipt.self).outcome()
        }
        #expect(outcome.status == .completed)
        #expect(participant.calls("charge").count == 1)
    }

    @Test func cancellationStopsAtOnceAndRecoveryRetriesTheUnfinishedStepWithItsKey() async throws {
        participant.script("charge", [.hang])
        let saga = threeStepSaga(participant)
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            _ = try await engine.start(saga, id: "x-1", input: Order(id: 3))
            await participant.waitForCalls("charge")
        }
        let history = try await store.records(of: "x-1")
        #expect(history.last?.kind == .stepStarted, "the interrupted attempt has an intent and no outcome")
        let next = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(next) { engine in
            try engine.register(saga)
            return try await engine.handle(for: "x-1", output: Receipt.self).outcome()
        }
        #expect(outcome.status == .completed)
        #expect(participant.calls("charge").map(\.key) == ["x-1/charge", "x-1/charge"])
        #expect(participant.calls("charge").map(\.attempt) == [1, 2])
    }

    @Test func anEngineRunsOnce() async throws {
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            _ = try await engine.execute(threeStepSaga(participant), id: "once", input: Order(id: 4))
            await #expect(throws: SagaError.self) { try await engine.run() }
        }
    }
}
