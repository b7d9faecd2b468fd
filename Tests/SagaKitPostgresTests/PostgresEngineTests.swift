#if Postgres
import Foundation
import InMemoryLogging
import Logging
import SagaKit
import SagaKitPostgres
import SagaKitTesting
import Synchronization
import Testing

/// Engines sharing one PostgreSQL log: a dead engine's saga is finished by a survivor, and an engine
/// that lost its lease while paused cannot write again.
@Suite(
    .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipReason),
    .timeLimit(.minutes(2))
)
struct PostgresEngineTests {
    static let logger = Logger(label: "sagakit.tests", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A participant that records each call by step and key; a step's calls can be held until released.
    final class Participant: Sendable {
        private let state = Mutex(
            (
                calls: [(step: String, key: String)](), held: Set<String>(),
                waiting: [String: [CheckedContinuation<Void, Never>]](),
                watchers: [(id: UUID, step: String, count: Int, continuation: CheckedContinuation<Void, Never>)]()
            ))

        func hold(_ step: String) { state.withLock { _ = $0.held.insert(step) } }

        func release(_ step: String) {
            let waiting = state.withLock { state in
                state.held.remove(step)
                return state.waiting.removeValue(forKey: step) ?? []
            }
            for waiter in waiting { waiter.resume() }
        }

        func calls(_ step: String) -> [String] { state.withLock { $0.calls.filter { $0.step == step }.map(\.key) } }

        /// Suspends until `step` was called `count` times, or the task is cancelled.
        func waitForCalls(_ step: String, count: Int = 1) async {
            let id = UUID()
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state in
                        if Task.isCancelled || state.calls.filter({ $0.step == step }).count >= count { return true }
                        state.watchers.append((id, step, count, continuation))
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                // A suite's time limit ends the wait, so the test fails instead of hanging.
                let watcher = state.withLock { state in
                    state.watchers.firstIndex { $0.id == id }.map { state.watchers.remove(at: $0).continuation }
                }
                watcher?.resume()
            }
        }

        func call(_ step: String, key: String) async {
            let (held, ready) = state.withLock { state in
                state.calls.append((step, key))
                let count = state.calls.filter { $0.step == step }.count
                let ready = state.watchers.filter { $0.step == step && $0.count <= count }.map(\.continuation)
                state.watchers.removeAll { $0.step == step && $0.count <= count }
                return (state.held.contains(step), ready)
            }
            for watcher in ready { watcher.resume() }
            guard held else { return }
            await withCheckedContinuation { continuation in
                let go = state.withLock { state in
                    guard state.held.contains(step) else { return true }
                    state.waiting[step, default: []].append(continuation)
                    return false
                }
                if go { continuation.resume() }
            }
        }
    }

    /// reserve and charge (compensatable), then ship (the pivot).
    static func saga(_ participant: Participant) -> SagaDefinition<Int, String> {
        func step(_ name: String) -> @Sendable (StepContext<Int>) async throws -> String {
            { context in
                await participant.call(name, key: context.idempotencyKey)
                return name
            }
        }
        let ship = SagaStep<Int, String>.pivot("ship", action: step("ship"))
        return SagaDefinition("pg-order", returning: ship) {
            SagaStep<Int, String>.compensatable("reserve", action: step("reserve")) { _, context in
                await participant.call("undo-reserve", key: context.idempotencyKey)
            }
            SagaStep<Int, String>.compensatable("charge", action: step("charge")) { _, context in
                await participant.call("undo-charge", key: context.idempotencyKey)
            }
            ship
        }
    }

    /// Ages an engine's heartbeat by an hour, as if it had been paused (SIGSTOP) or had died.
    static func ageHeartbeat(of store: PostgresSagaStore) async throws {
        _ = try await store.executeForTesting(
            "UPDATE sagakit_engines SET heartbeat_at = now() - interval '1 hour' WHERE instance_id = '\(store.instanceID)' RETURNING 'x'"
        )
    }

    @Test func anEngineThatLostItsLeaseWhilePausedCannotWriteAndTheNewOwnerFinishesTheSaga() async throws {
        var paused = try PostgresTestDatabase.freshConfiguration()
        paused.heartbeatInterval = .seconds(3600)  // renews once, at start
        var survivor = paused
        survivor.heartbeatInterval = .milliseconds(50)
        let participant = Participant()
        participant.hold("charge")
        try await withRunningStores([paused, survivor]) { stores in
            let (first, second) = (stores[0], stores[1])
            let zombieLog = InMemoryLogHandler()
            let zombie = SagaEngine(store: first, logger: Logger(label: "zombie", factory: { _ in zombieLog }))
            let answer = try await withRunningSagaEngine(zombie) { zombie in
                let handle = try await zombie.start(Self.saga(participant), id: "zombie", input: 1)
                await participant.waitForCalls("charge")
                // The first engine stops in the middle of charge, past its lease.
                try await Self.ageHeartbeat(of: first)
                let taken = try await withRunningSagaEngine(SagaEngine(store: second, logger: Self.logger)) { engine in
                    try engine.register(Self.saga(participant))
                    // The survivor claimed the saga and calls charge again: both calls are held till now.
                    await participant.waitForCalls("charge", count: 2)
                    participant.release("charge")
                    await participant.waitForCalls("ship")
                    return try await engine.handle(for: "zombie", output: String.self).outcome()
                }
                #expect(taken.status == .completed)
                // The first engine wakes up: its charge answered, its write is fenced out, and its caller
                // learns the saga's outcome from the log.
                return try await handle.outcome()
            }
            #expect(answer.status == .completed)
            let fenced = zombieLog.entries.filter {
                $0.message.description == "saga belongs to another engine sharing the log; this engine stops running it"
            }
            #expect(fenced.count == 1, "the paused engine's write was not refused by the fence")
            #expect(fenced.first?.metadata["error"]?.description.contains("ownershipLost") == true)
            let records = try await second.records(of: "zombie")
            #expect(records.map(\.sequence) == Array(1...records.count))
            #expect(records.filter { $0.kind == .sagaCompleted }.count == 1)
            #expect(records.last?.kind == .sagaCompleted, "a record was written after the saga completed")
            #expect(participant.calls("reserve") == ["zombie/reserve"])
            #expect(participant.calls("ship") == ["zombie/ship"])
            // charge's outcome was unknown when the engine paused: the new owner called it again, with its key.
            #expect(participant.calls("charge") == ["zombie/charge", "zombie/charge"])
        }
    }

    @Test func aSurvivorTakesOverADeadEnginesSagasAtItsSweep() async throws {
        var survivor = try PostgresTestDatabase.freshConfiguration()
        survivor.heartbeatInterval = .milliseconds(50)
        // The lease stays the default 30 s, so that nobody takes the saga before the dying engine
        // reaches its crash, however slow the machine; the aged heartbeat below is an hour old.
        var dying = survivor
        dying.heartbeatInterval = .seconds(3600)  // renews once, at start: its aged heartbeat stays aged
        let participant = Participant()
        try await withRunningStores([dying, survivor]) { stores in
            let (dead, survivor) = (stores[0], stores[1])
            // The survivor runs first, so the dead engine's sagas reach it at a sweep, not at recovery.
            try await withRunningSagaEngine(SagaEngine(store: survivor, logger: Self.logger)) { engine in
                try engine.register(Self.saga(participant))
                let plan = CrashPlan(write: 2)
                let dying = SagaEngine(
                    store: dead, configuration: plan.configure(SagaEngine.Configuration()), logger: Self.logger)
                _ = try? await withRunningSagaEngine(dying) { dying in
                    try await dying.execute(Self.saga(participant), id: "orphan", input: 2)
                }
                #expect(plan.crashed)
                try await Self.ageHeartbeat(of: dead)
                await participant.waitForCalls("ship")
                let outcome = try await engine.handle(for: "orphan", output: String.self).outcome()
                #expect(outcome.status == .completed)
            }
            #expect(participant.calls("reserve") == ["orphan/reserve"])
            #expect(participant.calls("charge") == ["orphan/charge"])
            let records = try await survivor.records(of: "orphan")
            #expect(records.filter { $0.kind == .sagaStarted }.count == 1)
            #expect(records.last?.kind == .sagaCompleted)
        }
    }
}
#endif
