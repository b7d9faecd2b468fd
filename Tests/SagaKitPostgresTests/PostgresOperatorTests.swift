#if Postgres
import Foundation
import Logging
import SagaKit
import SagaKitPostgres
import SagaKitTesting
import Synchronization
import Testing

/// Operator actions from any engine on one PostgreSQL log: a cancellation made through the engine that
/// does not run the saga travels as a row in `sagakit_requests` and is carried out by the owner's sweep;
/// a retry or resolution of a saga that needs attention is adopted by the engine it was made through.
@Suite(
    .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipReason),
    .timeLimit(.minutes(2))
)
struct PostgresOperatorTests {
    static let logger = Logger(label: "sagakit.tests", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A participant whose calls are recorded by step and key; a step can be held at a gate until
    /// released, or fail for good a number of times.
    final class Participant: Sendable {
        private struct State {
            var calls: [(step: String, key: String)] = []
            var gated: Set<String> = []
            var gateWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]
            var failures: [String: Int] = [:]
            var watchers: [(id: Int, step: String, continuation: CheckedContinuation<Void, Never>)] = []
            var nextWatcher = 0
        }

        private let state = Mutex(State())

        /// Holds `step`'s calls until ``release(_:)``.
        func gate(_ step: String) { state.withLock { _ = $0.gated.insert(step) } }
        /// `step` fails for good its next `times` calls.
        func fail(_ step: String, times: Int) { state.withLock { $0.failures[step] = times } }

        func release(_ step: String) {
            let waiters = state.withLock { state in
                state.gated.remove(step)
                return state.gateWaiters.removeValue(forKey: step) ?? []
            }
            for waiter in waiters { waiter.resume() }
        }

        func calls(_ step: String) -> [String] { state.withLock { $0.calls.filter { $0.step == step }.map(\.key) } }

        /// Suspends until `step` has been called, or the task is cancelled (the suite's time limit).
        func waitForCall(_ step: String) async {
            let id = state.withLock { state -> Int in
                state.nextWatcher += 1
                return state.nextWatcher
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state in
                        if Task.isCancelled || state.calls.contains(where: { $0.step == step }) { return true }
                        state.watchers.append((id, step, continuation))
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                let watcher = state.withLock { state in
                    state.watchers.firstIndex { $0.id == id }.map { state.watchers.remove(at: $0).continuation }
                }
                watcher?.resume()
            }
        }

        func call(_ step: String, key: String) async throws {
            let (gated, fails, ready) = state.withLock { state in
                state.calls.append((step, key))
                let ready = state.watchers.filter { $0.step == step }.map(\.continuation)
                state.watchers.removeAll { $0.step == step }
                let fails = (state.failures[step] ?? 0) > 0
                if fails { state.failures[step]! -= 1 }
                return (state.gated.contains(step), fails, ready)
            }
            for watcher in ready { watcher.resume() }
            if fails { throw NonRetryableError("\(step) refused", type: "Refused") }
            guard gated else { return }
            await withCheckedContinuation { continuation in
                let go = state.withLock { state in
                    guard state.gated.contains(step) else { return true }
                    state.gateWaiters[step, default: []].append(continuation)
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
                try await participant.call(name, key: context.idempotencyKey)
                return name
            }
        }
        let ship = SagaStep<Int, String>.pivot("ship", action: step("ship"))
        return SagaDefinition("pg-operator", returning: ship) {
            SagaStep<Int, String>.compensatable("reserve", action: step("reserve")) { _, context in
                try await participant.call("undo-reserve", key: context.idempotencyKey)
            }
            SagaStep<Int, String>.compensatable("charge", action: step("charge")) { _, context in
                try await participant.call("undo-charge", key: context.idempotencyKey)
            }
            ship
        }
    }

    static func engine(_ store: PostgresSagaStore, clock: ManualSagaClock) -> SagaEngine {
        var configuration = SagaEngine.Configuration()
        configuration.clock = clock
        configuration.jitterSeed = 7
        // A compensation that fails needs attention at once: no backoff to sleep on the manual clock.
        configuration.compensationRetry = .noRetries
        return SagaEngine(store: store, configuration: configuration, logger: logger)
    }

    /// Runs one sweep of the engine on `clock` (its only sleeper) and waits until it sleeps again.
    static func sweep(_ clock: ManualSagaClock, of store: PostgresSagaStore) async {
        await clock.waitForSleepers(count: 1)
        clock.advance(by: store.sweepInterval)
        await clock.waitForSleepers(count: 1)
    }

    static func ownerAndEpoch(_ sagaID: String, _ store: PostgresSagaStore) async throws -> [String?] {
        try await store.executeForTesting(
            "SELECT owner::text || ' ' || epoch FROM sagakit_sagas WHERE id = '\(sagaID)'")
    }

    static func owner(_ store: PostgresSagaStore, epoch: Int) -> [String?] {
        ["\(store.instanceID.uuidString.lowercased()) \(epoch)"]
    }

    @Test func aCancellationThroughAnotherEngineIsAppliedByTheOwnersSweep() async throws {
        let configuration = try PostgresTestDatabase.freshConfiguration()
        let participant = Participant()
        participant.gate("charge")
        try await withRunningStores([configuration, configuration]) { stores in
            let (storeA, storeB) = (stores[0], stores[1])
            let (clockA, clockB) = (ManualSagaClock(), ManualSagaClock())
            try await withRunningSagaEngine(Self.engine(storeA, clock: clockA)) { a in
                try await withRunningSagaEngine(Self.engine(storeB, clock: clockB)) { b in
                    try b.register(Self.saga(participant))
                    let handle = try await a.start(Self.saga(participant), id: "pg-cancel", input: 1)
                    await participant.waitForCall("charge")

                    // B does not own the saga: it records a request, and writes nothing to the log.
                    try await b.cancel(sagaID: "pg-cancel", reason: "customer cancelled")
                    let requested = try await storeB.executeForTesting(
                        "SELECT state || ' ' || kind || ' ' || requested_by::text || ' ' || reason FROM sagakit_requests"
                    )
                    #expect(
                        requested == ["pending cancel \(storeB.instanceID.uuidString.lowercased()) customer cancelled"])
                    #expect(try await storeB.records(of: "pg-cancel").allSatisfy { $0.kind != .operatorCancelled })

                    // A's sweep puts the cancellation in place; once charge is released, A logs it and
                    // compensates; its next sweep answers the request.
                    await Self.sweep(clockA, of: storeA)
                    #expect(try await a.operatorRequests(of: "pg-cancel").map(\.state) == [.pending])
                    participant.release("charge")
                    #expect(try await handle.outcome().status == .compensated)
                    await Self.sweep(clockA, of: storeA)

                    let answered = try await b.operatorRequests(of: "pg-cancel")
                    #expect(answered.map(\.state) == [.applied])
                    #expect(answered.first?.requestedBy == storeB.instanceID.uuidString.lowercased())
                    #expect(answered.first?.answeredBy == storeA.instanceID.uuidString.lowercased())
                    #expect(answered.first.map { ($0.answeredAt ?? .distantPast) >= $0.requestedAt } == true)
                    #expect(try await storeB.pendingRequests(limit: nil).isEmpty)
                    #expect(try await storeA.pendingRequests(limit: nil).isEmpty)
                }
            }
            // One writer: A created the saga at epoch 1 and nobody else ever wrote it (a write from B would
            // have adopted or claimed it under a new epoch, or been refused).
            #expect(try await Self.ownerAndEpoch("pg-cancel", storeA) == Self.owner(storeA, epoch: 1))
            let records = try await storeA.records(of: "pg-cancel")
            #expect(records.map(\.sequence) == Array(1...records.count))
            #expect(records.filter { $0.kind == .operatorCancelled }.map(\.note) == ["customer cancelled"])
            #expect(records.last?.kind == .sagaCompensated)
            #expect(participant.calls("charge") == ["pg-cancel/charge"])
            #expect(participant.calls("ship").isEmpty)
            #expect(participant.calls("undo-reserve") == ["pg-cancel/reserve"])
        }
    }

    @Test func anotherEngineRetriesAndResolvesSagasThatNeedAttentionAndTheirCreatorIsFencedOut() async throws {
        let configuration = try PostgresTestDatabase.freshConfiguration()
        let participant = Participant()
        // charge fails for good, and so does each saga's first undo of reserve: both need attention.
        participant.fail("charge", times: 2)
        participant.fail("undo-reserve", times: 2)
        try await withRunningStores([configuration, configuration]) { stores in
            let (storeA, storeB) = (stores[0], stores[1])
            let (clockA, clockB) = (ManualSagaClock(), ManualSagaClock())
            try await withRunningSagaEngine(Self.engine(storeA, clock: clockA)) { a in
                for id in ["pg-retry", "pg-resolve"] {
                    let outcome = try await a.execute(Self.saga(participant), id: id, input: 2)
                    #expect(outcome.status == .needsAttention)
                }
                try await withRunningSagaEngine(Self.engine(storeB, clock: clockB)) { b in
                    try b.register(Self.saga(participant))
                    // A is alive; B's retry adopts the saga (epoch 2) and compensates it.
                    try await b.retry(sagaID: "pg-retry", note: "payments fixed")
                    let retried = try await b.handle(for: "pg-retry", output: String.self).outcome()
                    #expect(retried.status == .compensated)
                    try await b.resolve(sagaID: "pg-resolve", note: "refunded by hand")
                    #expect(try await a.summary(of: "pg-resolve")?.status == .resolved)
                }
                // A, which still holds epoch 1 of both, can no longer write them.
                for id in ["pg-retry", "pg-resolve"] {
                    let next = try await storeA.records(of: id).count + 1
                    let error = await #expect(throws: SagaStoreError.self) {
                        try await storeA.append(
                            SagaLogAppend(
                                sagaID: id,
                                records: [
                                    SagaLogRecord(
                                        sagaID: id, sequence: next, timestamp: Date(), kind: .operatorRetried,
                                        note: "stale")
                                ],
                                status: .running))
                    }
                    #expect(error?.code == .ownershipLost, "\(id): \(String(describing: error))")
                }
                let error = await #expect(throws: SagaError.self) {
                    try await a.retry(sagaID: "pg-retry", note: "too late")
                }
                #expect(error?.code == .invalidOperatorAction)
            }
            for id in ["pg-retry", "pg-resolve"] {
                #expect(try await Self.ownerAndEpoch(id, storeA) == Self.owner(storeB, epoch: 2), "\(id)")
                let records = try await storeA.records(of: id)
                #expect(records.map(\.sequence) == Array(1...records.count), "\(id)")
                #expect(records.allSatisfy { $0.note != "stale" })
            }
            #expect(try await storeA.records(of: "pg-retry").last?.kind == .sagaCompensated)
            #expect(try await storeA.records(of: "pg-resolve").last?.kind == .operatorResolved)
            #expect(
                participant.calls("undo-reserve") == ["pg-retry/reserve", "pg-resolve/reserve", "pg-retry/reserve"])
        }
    }

    @Test func aCancellationPastThePivotIsRefusedByTheOwnerAndTheWaitingCallerIsTold() async throws {
        let configuration = try PostgresTestDatabase.freshConfiguration()
        let participant = Participant()
        participant.gate("ship")
        try await withRunningStores([configuration, configuration]) { stores in
            let (storeA, storeB) = (stores[0], stores[1])
            let (clockA, clockB) = (ManualSagaClock(), ManualSagaClock())
            try await withRunningSagaEngine(Self.engine(storeA, clock: clockA)) { a in
                try await withRunningSagaEngine(Self.engine(storeB, clock: clockB)) { b in
                    let handle = try await a.start(Self.saga(participant), id: "pg-late", input: 3)
                    await participant.waitForCall("ship")
                    let waiting = Task {
                        try await b.cancel(sagaID: "pg-late", reason: "too late", waitingForOwner: .seconds(60))
                    }
                    // B's sweeper, and B reading the request again.
                    await clockB.waitForSleepers(count: 2)
                    await Self.sweep(clockA, of: storeA)
                    clockB.advance(by: storeB.sweepInterval / 5)
                    let error = await #expect(throws: SagaError.self) { try await waiting.value }
                    #expect(error?.code == .cannotCancel)
                    #expect(error?.message.contains("pivot") == true, "\(String(describing: error))")
                    participant.release("ship")
                    #expect(try await handle.outcome().status == .completed)
                }
            }
            let states = try await storeA.executeForTesting("SELECT state FROM sagakit_requests")
            #expect(states == ["refused"])
            #expect(try await Self.ownerAndEpoch("pg-late", storeA) == Self.owner(storeA, epoch: 1))
        }
    }
}
#endif
