import Foundation
import SagaKit
import SagaKitTesting
import Synchronization
import Testing

/// A shared log as the engine sees it, over an in-memory log: which sagas the next claim hands over
/// (as if their engine's lease ran out), whether the lease is current, and which sagas another engine
/// has taken (their appends fail with `ownershipLost` and write nothing).
final class FakeSharedStore: SharedSagaStore {
    let inner: InMemorySagaStore
    let sweepInterval: Duration = .seconds(5)
    private let state = Mutex((orphans: Set<String>(), lease: true, taken: Set<String>(), claims: 0))

    init(_ inner: InMemorySagaStore) { self.inner = inner }

    /// The next claim hands `sagaID` over.
    func orphan(_ sagaID: String) { state.withLock { _ = $0.orphans.insert(sagaID) } }
    /// Another engine takes `sagaID`: this one's appends to it are fenced from now on.
    func takeOver(_ sagaID: String) { state.withLock { _ = $0.taken.insert(sagaID) } }
    func setLease(_ current: Bool) { state.withLock { $0.lease = current } }
    var claims: Int { state.withLock { $0.claims } }

    var leaseIsCurrent: Bool { state.withLock { $0.lease } }

    func claimOrphanedSagas(limit: Int?) async throws -> [SagaLogRecords] {
        let orphans = state.withLock { state -> Set<String> in
            state.claims += 1
            defer { state.orphans = [] }
            return state.orphans
        }
        return try await inner.activeSagaRecords().filter { orphans.contains($0.summary.id) }
    }

    func append(_ append: SagaLogAppend) async throws {
        if state.withLock({ $0.taken.contains(append.sagaID) }) {
            throw SagaStoreError(.ownershipLost, message: "saga '\(append.sagaID)' is another engine's")
        }
        try await inner.append(append)
    }

    /// Sagas left by other engines are theirs until claimed: recovery at start takes none.
    func activeSagaRecords() async throws -> [SagaLogRecords] { [] }
    func summary(of sagaID: String) async throws -> SagaSummary? { try await inner.summary(of: sagaID) }
    func records(of sagaID: String) async throws -> [SagaLogRecord] { try await inner.records(of: sagaID) }
    func sagas(matching query: SagaQuery) async throws -> [SagaSummary] { try await inner.sagas(matching: query) }
}

/// The engine over a log that several engines share: it sweeps for orphaned sagas, starts no step
/// without a current lease, and stops a saga another engine took over.
@Suite("Shared saga log", .tags(.engine, .recovery), .timeLimit(.minutes(1)))
struct SharedSagaStoreTests {
    let participant = Participant()
    let log = InMemorySagaStore()

    /// Leaves saga `id` running in `log`, as an engine that died after its `write`-th write would.
    func leaveRunning(_ id: String, afterWrite write: Int) async throws {
        let plan = CrashPlan(write: write)
        let dead = SagaEngine(store: log, configuration: plan.configure(testConfiguration()), logger: quietLogger)
        _ = try? await withRunningSagaEngine(dead) { engine in
            try await engine.execute(threeStepSaga(participant), id: id, input: Order(id: 1))
        }
        #expect(plan.crashed)
        #expect(try await log.summary(of: id)?.status == .running)
    }

    @Test func anOrphanedSagaIsTakenOverAtTheNextSweepAndFinished() async throws {
        try await leaveRunning("o-1", afterWrite: 2)
        let shared = FakeSharedStore(log)
        let clock = ManualSagaClock()
        let survivor = SagaEngine(store: shared, configuration: testConfiguration(clock: clock), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(survivor) { engine in
            try engine.register(threeStepSaga(participant))
            await clock.waitForSleepers(count: 1)
            #expect(participant.calls("charge").isEmpty, "the saga is another engine's until claimed")
            shared.orphan("o-1")
            clock.advance(by: shared.sweepInterval)
            await participant.waitForCalls("ship")
            return try await engine.handle(for: "o-1", output: Receipt.self).outcome()
        }
        #expect(outcome.status == .completed)
        #expect(shared.claims == 1)
        // reserve ran once, before the crash; charge, logged as started, ran once after the claim.
        #expect(participant.calls("reserve").count == 1)
        #expect(participant.calls("charge").map(\.key) == ["o-1/charge"])
        #expect(try await log.records(of: "o-1").filter { $0.kind == .sagaStarted }.count == 1)
    }

    @Test func noStepStartsWhileTheLeaseIsNotCurrent() async throws {
        let shared = FakeSharedStore(log)
        shared.setLease(false)
        let clock = ManualSagaClock()
        let engine = SagaEngine(store: shared, configuration: testConfiguration(clock: clock), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(engine) { engine in
            let placing = Task { try await engine.execute(threeStepSaga(participant), id: "l-1", input: Order(id: 2)) }
            // The sweeper and the saga's lease check both wait on the clock.
            await clock.waitForSleepers(count: 2)
            clock.advance(by: .milliseconds(100))
            await clock.waitForSleepers(count: 2)
            #expect(participant.calls.isEmpty, "a step started without a current lease")
            #expect(try await log.records(of: "l-1").isEmpty, "the saga was started without a current lease")
            shared.setLease(true)
            clock.advance(by: .milliseconds(100))
            return try await placing.value
        }
        #expect(outcome.status == .completed)
        #expect(participant.operations == ["reserve", "charge", "ship"])
    }

    @Test func aSagaTakenOverByAnotherEngineStopsHereWithANamedError() async throws {
        let shared = FakeSharedStore(log)
        participant.script("charge", [.wait])
        let engine = SagaEngine(store: shared, configuration: testConfiguration(), logger: quietLogger)
        let error = try await withRunningSagaEngine(engine) { engine in
            let handle = try await engine.start(threeStepSaga(participant), id: "t-1", input: Order(id: 3))
            await participant.waitForCalls("charge")
            shared.takeOver("t-1")
            participant.release("charge")
            return await #expect(throws: SagaError.self) { try await handle.outcome() }
        }
        #expect(error?.code == .ownershipLost)
        #expect(error?.message.contains("belongs to another engine") == true, "\(String(describing: error))")
        // Nothing after the take-over was written or called: the new owner goes on from charge.
        #expect(try await log.records(of: "t-1").last?.kind == .stepStarted)
        #expect(participant.operations == ["reserve", "charge"])
        #expect(try await log.summary(of: "t-1")?.status == .running)
    }
}
