import Foundation
import SagaKitTesting
import Synchronization
import Testing

@testable import SagaKit

/// One log shared by several engines, fenced as PostgreSQL fences it, with its request channel: each
/// engine sees it through a ``View`` named after its instance. A saga belongs to the instance that
/// created, claimed or adopted it; an append from any other instance to a running or compensating saga
/// is refused with `ownershipLost`; an instance that ``kill(_:)`` marks dead loses its unfinished sagas
/// to the next claim.
final class FakeSharedLog: Sendable {
    struct State {
        var owners: [String: String] = [:]
        var live: Set<String> = []
        /// The instances that wrote each saga's appends, in order.
        var writers: [String: [String]] = [:]
        var requests: [SagaOperatorRequest] = []
        /// Sagas an instance wrongly believes it still owns (it has not seen another engine's claim).
        var staleBeliefs: [String: Set<String>] = [:]
        var tick = 0
    }

    let inner = InMemorySagaStore()
    let state = Mutex(State())

    /// The log as instance `name` sees it; the instance is live from now on.
    func view(_ name: String) -> View {
        state.withLock { _ = $0.live.insert(name) }
        return View(log: self, instance: name)
    }

    /// The instance's lease runs out: its unfinished sagas go to the next claim.
    func kill(_ name: String) { state.withLock { _ = $0.live.remove(name) } }

    /// The instance that wrote each of the saga's appends.
    func writers(of sagaID: String) -> [String] { state.withLock { $0.writers[sagaID] ?? [] } }

    func owner(of sagaID: String) -> String? { state.withLock { $0.owners[sagaID] } }

    /// The instance goes on believing it owns the saga, whatever the log says.
    func believe(_ name: String, owns sagaID: String) {
        state.withLock { _ = $0.staleBeliefs[name, default: []].insert(sagaID) }
    }

    /// The requests recorded for a saga, as the log holds them.
    func requests(of sagaID: String) -> [SagaOperatorRequest] {
        state.withLock { $0.requests.filter { $0.sagaID == sagaID } }
    }

    final class View: SharedSagaStore {
        let log: FakeSharedLog
        let instance: String
        let sweepInterval: Duration = .seconds(5)
        var leaseIsCurrent: Bool { true }

        init(log: FakeSharedLog, instance: String) {
            self.log = log
            self.instance = instance
        }

        func append(_ append: SagaLogAppend) async throws {
            let id = append.sagaID
            if append.creation == nil {
                let status = try await log.inner.summary(of: id)?.status
                let owner = log.owner(of: id)
                if owner != instance, status?.isActive == true {
                    throw SagaStoreError(
                        .ownershipLost,
                        message: "saga '\(id)' is \(status!) under \(owner ?? "no engine"), not \(instance)")
                }
            }
            try await log.inner.append(append)
            log.state.withLock { state in
                state.owners[id] = instance
                state.writers[id, default: []].append(instance)
            }
        }

        func holdsOwnership(of sagaID: String) -> Bool {
            log.state.withLock { $0.owners[sagaID] == instance || $0.staleBeliefs[instance]?.contains(sagaID) == true }
        }

        func claimOrphanedSagas(limit: Int?) async throws -> [SagaLogRecords] {
            let active = try await log.inner.activeSagaRecords()
            return log.state.withLock { state in
                active.filter { saga in
                    let owner = state.owners[saga.summary.id]
                    guard owner != instance, !(owner.map { state.live.contains($0) } ?? false) else { return false }
                    state.owners[saga.summary.id] = instance
                    return true
                }
            }
        }

        func activeSagaRecords() async throws -> [SagaLogRecords] {
            let claimed = try await claimOrphanedSagas(limit: nil).map(\.summary.id)
            return try await log.inner.activeSagaRecords().filter {
                claimed.contains($0.summary.id) || log.owner(of: $0.summary.id) == instance
            }
        }

        func recordRequest(
            id: UUID, kind: SagaOperatorRequest.Kind, sagaID: String, reason: String
        ) async throws -> SagaOperatorRequest {
            guard try await log.inner.summary(of: sagaID) != nil else {
                throw SagaStoreError(.unknownSaga, message: "saga '\(sagaID)' does not exist")
            }
            return log.state.withLock { state in
                if let stored = state.requests.first(where: { $0.id == id }) { return stored }
                state.tick += 1
                let request = SagaOperatorRequest(
                    id: id, sagaID: sagaID, kind: kind, reason: reason,
                    requestedAt: Date(timeIntervalSince1970: Double(state.tick)), requestedBy: instance)
                state.requests.append(request)
                return request
            }
        }

        func pendingRequests(limit: Int?) async throws -> [SagaOperatorRequest] {
            var statuses: [String: SagaStatus] = [:]
            for id in Set(log.state.withLock { $0.requests.map(\.sagaID) }) {
                statuses[id] = try await log.inner.summary(of: id)?.status
            }
            return log.state.withLock { state in
                state.requests.filter { request in
                    let owner = state.owners[request.sagaID]
                    let ownerIsGone = !(owner.map { state.live.contains($0) } ?? false)
                    return request.state == .pending
                        && (owner == instance || (statuses[request.sagaID]?.isActive == false && ownerIsGone))
                }
            }
        }

        func answerRequest(_ id: UUID, with answer: SagaOperatorRequest.Answer) async throws -> Bool {
            log.state.withLock { state in
                guard let index = state.requests.firstIndex(where: { $0.id == id && $0.state == .pending }) else {
                    return false
                }
                state.tick += 1
                state.requests[index].answer = answer
                state.requests[index].answeredAt = Date(timeIntervalSince1970: Double(state.tick))
                state.requests[index].answeredBy = instance
                return true
            }
        }

        func requests(of sagaID: String) async throws -> [SagaOperatorRequest] { log.requests(of: sagaID) }
        func summary(of sagaID: String) async throws -> SagaSummary? { try await log.inner.summary(of: sagaID) }
        func records(of sagaID: String) async throws -> [SagaLogRecord] { try await log.inner.records(of: sagaID) }
        func sagas(matching query: SagaQuery) async throws -> [SagaSummary] {
            try await log.inner.sagas(matching: query)
        }
    }
}

/// Operator actions from any engine: a cancellation made through an engine that does not run the saga
/// is recorded as a request, and the owner carries it out at its sweep, writing the saga's log alone.
@Suite("Operator requests on a shared log", .tags(.engine, .recovery), .timeLimit(.minutes(1)))
struct SharedSagaStoreRequestTests {
    let participant = Participant()
    let log = FakeSharedLog()
    let clockA = ManualSagaClock()
    let clockB = ManualSagaClock()

    /// Engines A and B on the shared log, each with its own clock (so each one's sweep is driven alone).
    func engines() -> (SagaEngine, SagaEngine) {
        (
            SagaEngine(store: log.view("A"), configuration: testConfiguration(clock: clockA), logger: quietLogger),
            SagaEngine(store: log.view("B"), configuration: testConfiguration(clock: clockB), logger: quietLogger)
        )
    }

    /// Runs one sweep of the engine on `clock` (its only sleeper) and waits until it sleeps again.
    func sweep(_ clock: ManualSagaClock) async {
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(5))
        await clock.waitForSleepers(count: 1)
    }

    func cancellationIsInPlace(_ engine: SagaEngine, _ sagaID: String) -> Bool {
        engine.activeRun(sagaID)?.state.withLock { $0.machine.requests.cancellation != nil } ?? false
    }

    @Test func aCancellationMadeThroughAnotherEngineIsAppliedByTheOwnerAtItsSweep() async throws {
        participant.script("charge", [.wait])
        let (engineA, engineB) = engines()
        try await withRunningSagaEngine(engineA) { a in
            try await withRunningSagaEngine(engineB) { b in
                // B does not even know the definition: it never runs the saga.
                let handle = try await a.start(threeStepSaga(participant), id: "x-1", input: Order(id: 1))
                await participant.waitForCalls("charge")
                try await b.cancel(sagaID: "x-1", reason: "customer cancelled")

                let recorded = try await b.operatorRequests(of: "x-1")
                #expect(recorded.map(\.state) == [.pending])
                #expect(recorded.first?.kind == .cancel)
                #expect(recorded.first?.requestedBy == "B")
                #expect(recorded.first?.reason == "customer cancelled")
                #expect(try await log.inner.summary(of: "x-1")?.status == .running)

                // A's sweep puts the cancellation in place; charge is in flight, so the sweep does not
                // wait for it: the request stays pending until the record is in the log.
                await sweep(clockA)
                #expect(cancellationIsInPlace(a, "x-1"))
                #expect(log.requests(of: "x-1").map(\.state) == [.pending])

                participant.release("charge")
                let outcome = try await handle.outcome()
                guard case .compensated(let failure) = outcome else {
                    Issue.record("the saga was not compensated: \(outcome)")
                    return
                }
                #expect(failure.cause.message == "customer cancelled")

                // The next sweep sees operator.cancelled in the log and answers.
                await sweep(clockA)
                let answered = try await b.operatorRequests(of: "x-1")
                #expect(answered.map(\.state) == [.applied])
                #expect(answered.first?.answeredBy == "A")
                #expect(answered.first?.answer?.message.contains("operator.cancelled") == true)
            }
        }
        let records = try await log.inner.records(of: "x-1")
        #expect(records.filter { $0.kind == .operatorCancelled }.map(\.note) == ["customer cancelled"])
        #expect(Set(log.writers(of: "x-1")) == ["A"], "only the owner writes the saga's log")
        #expect(participant.operations == ["reserve", "charge", "undo-charge", "undo-reserve"])
    }

    @Test func theOwnerRefusesACancellationPastThePivotAndAWaitingCallerLearnsWhy() async throws {
        participant.script("ship", [.wait])
        let (engineA, engineB) = engines()
        try await withRunningSagaEngine(engineA) { a in
            try await withRunningSagaEngine(engineB) { b in
                let handle = try await a.start(threeStepSaga(participant), id: "x-2", input: Order(id: 2))
                await participant.waitForCalls("ship")
                let waiting = Task {
                    try await b.cancel(sagaID: "x-2", reason: "too late", waitingForOwner: .seconds(30))
                }
                // B's sweeper and B's wait for the answer.
                await clockB.waitForSleepers(count: 2)
                await sweep(clockA)
                #expect(log.requests(of: "x-2").map(\.state) == [.refused])
                clockB.advance(by: .seconds(1))
                let error = await #expect(throws: SagaError.self) { try await waiting.value }
                #expect(error?.code == .cannotCancel)
                #expect(error?.message.contains("pivot") == true, "\(String(describing: error))")

                participant.release("ship")
                #expect(try await handle.outcome().status == .completed)
            }
        }
        #expect(try await log.inner.records(of: "x-2").allSatisfy { $0.kind != .operatorCancelled })
        #expect(Set(log.writers(of: "x-2")) == ["A"])
    }

    @Test func aRequestForASagaThatFinishedMeanwhileIsRefusedWithWhy() async throws {
        participant.script("charge", [.wait])
        let (engineA, engineB) = engines()
        try await withRunningSagaEngine(engineA) { a in
            try await withRunningSagaEngine(engineB) { b in
                let handle = try await a.start(threeStepSaga(participant), id: "x-3", input: Order(id: 3))
                await participant.waitForCalls("charge")
                try await b.cancel(sagaID: "x-3", reason: "changed my mind")
                // The saga finishes before A's next sweep.
                participant.release("charge")
                #expect(try await handle.outcome().status == .completed)
                await sweep(clockA)
            }
        }
        let request = log.requests(of: "x-3").first
        #expect(request?.state == .refused)
        #expect(request?.answer?.message == "saga 'x-3' ended completed before the cancellation could be applied")
        #expect(Set(log.writers(of: "x-3")) == ["A"])
    }

    @Test func theEngineThatClaimsADeadOwnersSagaAppliesItsRequests() async throws {
        // A's charge hangs until A stops; B's retry of it (if the claimed run gets there before the
        // cancellation is in place) waits until released.
        participant.script("charge", [.hang, .wait])
        let (engineA, engineB) = engines()
        try await withRunningSagaEngine(engineB) { b in
            try b.register(threeStepSaga(participant))
            try await withRunningSagaEngine(engineA) { a in
                _ = try await a.start(threeStepSaga(participant), id: "x-4", input: Order(id: 4))
                await participant.waitForCalls("charge")
            }
            // A stopped in the middle of charge; its lease has not run out yet, so B records a request.
            try await b.cancel(sagaID: "x-4", reason: "owner is gone")
            #expect(log.requests(of: "x-4").map(\.state) == [.pending])
            log.kill("A")

            // B's sweep claims the saga, then finds the request among its own and puts it in place: the
            // run logs it at its next boundary and compensates.
            await sweep(clockB)
            #expect(log.owner(of: "x-4") == "B")
            #expect(
                try await log.inner.records(of: "x-4").contains { $0.kind == .operatorCancelled }
                    || cancellationIsInPlace(b, "x-4"))
            participant.release("charge")
            let outcome = try await b.handle(for: "x-4", output: Receipt.self).outcome()
            #expect(outcome.status == .compensated)
            await sweep(clockB)
        }
        #expect(log.requests(of: "x-4").map(\.state) == [.applied])
        #expect(log.requests(of: "x-4").first?.answeredBy == "B")
        // One writer at a time: A until it died, then B.
        let writers = log.writers(of: "x-4")
        #expect(writers.first == "A")
        #expect(writers.drop { $0 == "A" }.allSatisfy { $0 == "B" } && writers.last == "B", "\(writers)")
        #expect(Set(participant.calls("charge").map(\.key)) == ["x-4/charge"])
        #expect(participant.calls("ship").isEmpty)
        #expect(participant.operations.suffix(2) == ["undo-charge", "undo-reserve"])
    }

    @Test func aWaitingCallerReturnsOnceTheOwnerHasLoggedTheCancellation() async throws {
        participant.script("charge", [.wait])
        let (engineA, engineB) = engines()
        try await withRunningSagaEngine(engineA) { a in
            try await withRunningSagaEngine(engineB) { b in
                let handle = try await a.start(threeStepSaga(participant), id: "x-5", input: Order(id: 5))
                await participant.waitForCalls("charge")
                let waiting = Task {
                    try await b.cancel(sagaID: "x-5", reason: "customer", waitingForOwner: .seconds(30))
                }
                await clockB.waitForSleepers(count: 2)
                await sweep(clockA)
                participant.release("charge")
                #expect(try await handle.outcome().status == .compensated)
                // B reads the log again at its next poll: the cancellation is there, before A answers.
                clockB.advance(by: .seconds(1))
                let cancellation = try await waiting.value
                #expect(cancellation.isLogged)
                #expect(cancellation.request?.state == .pending)
                #expect(cancellation.request?.requestedBy == "B")
            }
        }
    }

    @Test func theOwnerCancelsItsOwnSagaWithoutARequest() async throws {
        participant.script("charge", [.wait])
        let (engineA, _) = engines()
        try await withRunningSagaEngine(engineA) { a in
            let handle = try await a.start(threeStepSaga(participant), id: "x-6", input: Order(id: 6))
            await participant.waitForCalls("charge")
            async let cancelled = a.cancel(sagaID: "x-6", reason: "here", waitingForOwner: .seconds(30))
            await eventually("the cancellation is in place") { cancellationIsInPlace(a, "x-6") }
            participant.release("charge")
            let cancellation = try await cancelled
            #expect(cancellation == SagaCancellation(isLogged: true))
            #expect(try await handle.outcome().status == .compensated)
        }
        #expect(log.requests(of: "x-6").isEmpty)
    }

    @Test func aStoreThatThinksItStillOwnsTheSagaRecordsTheRequestOnceTheFenceRefusesIt() async throws {
        participant.script("charge", [.wait])
        let (engineA, engineB) = engines()
        try await withRunningSagaEngine(engineA) { a in
            try await withRunningSagaEngine(engineB) { b in
                try b.register(threeStepSaga(participant))
                let handle = try await a.start(threeStepSaga(participant), id: "x-7", input: Order(id: 7))
                await participant.waitForCalls("charge")
                // B has not seen that A owns the saga now (say, A claimed it from B after B stalled).
                log.believe("B", owns: "x-7")
                try await b.cancel(sagaID: "x-7", reason: "through the stale engine")
                #expect(log.requests(of: "x-7").map(\.requestedBy) == ["B"])
                await sweep(clockA)
                participant.release("charge")
                #expect(try await handle.outcome().status == .compensated)
            }
        }
        #expect(Set(log.writers(of: "x-7")) == ["A"])
        #expect(participant.calls("charge").count == 1)
    }

    @Test func withoutARequestChannelTheCancellationIsRefusedAsAnotherEnginesSaga() async throws {
        // A saga left running by an engine that another one took over: this engine cannot reach it.
        let plan = CrashPlan(write: 2)
        let dead = SagaEngine(
            store: log.inner, configuration: plan.configure(testConfiguration()), logger: quietLogger)
        _ = try? await withRunningSagaEngine(dead) { engine in
            try await engine.execute(threeStepSaga(participant), id: "x-8", input: Order(id: 8))
        }
        let shared = FakeSharedStore(log.inner)
        shared.takeOver("x-8")
        let before = try await log.inner.records(of: "x-8")
        let engine = SagaEngine(store: shared, configuration: testConfiguration(clock: clockA), logger: quietLogger)
        let error = try await withRunningSagaEngine(engine) { engine in
            try engine.register(threeStepSaga(participant))
            return await #expect(throws: SagaError.self) {
                try await engine.cancel(sagaID: "x-8", reason: "unreachable")
            }
        }
        #expect(error?.code == .ownershipLost)
        #expect(try await log.inner.records(of: "x-8") == before)
    }
}
