import Foundation
import SagaKitTesting
import Synchronization
import Testing

@testable import SagaKit

/// Suspends, yielding, until `condition` holds; records an issue if it never does within a bound.
/// For conditions on the engine's own state that no continuation announces (a caller parked on a run).
func eventually(
    _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () -> Bool
) async {
    for _ in 0..<200_000 {
        if condition() { return }
        await Task.yield()
    }
    Issue.record("never happened: \(what)", sourceLocation: sourceLocation)
}

/// Holes a review of the engine found, each ordered deterministically: the layout validation lets
/// through, operator actions racing runs, attaching before durability, waiters left hanging, and a
/// cause that differs between the live run and the log.
@Suite("Engine holes", .tags(.engine), .timeLimit(.minutes(1)))
struct EngineHoleTests {
    let participant = Participant()

    // MARK: 1. Validation

    @Test func aRetryableStepBesideACompensatableOneIsRejectedInEitherOrder() throws {
        let compensatableFirst = SagaDefinition<Order, NoOutput>("mixed") {
            Parallel {
                compensatable("reserve", participant)
                retryable("notify", participant)
            }
        }
        let retryableFirst = SagaDefinition<Order, NoOutput>("mixed") {
            Parallel {
                retryable("notify", participant)
                compensatable("reserve", participant)
            }
        }
        for saga in [compensatableFirst, retryableFirst] {
            let error = #expect(throws: SagaDefinitionError.self) { try saga.validate() }
            #expect(error?.code == .retryableBesideCompensatable, "\(String(describing: error))")
            #expect(error?.step == "notify")
            #expect(error?.message.contains("'notify'") == true && error?.message.contains("'reserve'") == true)
        }
    }

    @Test func aGroupOfRetryableStepsAfterThePivotStaysValid() throws {
        let saga = SagaDefinition<Order, NoOutput>("after-pivot") {
            compensatable("reserve", participant)
            pivot("pay", participant)
            Parallel {
                retryable("notify", participant)
                retryable("ship", participant)
            }
        }
        try saga.validate()
    }

    // MARK: 2. An operator action racing a run

    /// resolve has read the saga's status (needs attention) when a retry starts compensating again;
    /// resolve must not then mark the saga final with a compensation in flight.
    @Test func resolveRacingARetryNeverEndsASagaWithACompensationInFlight() async throws {
        let store = HookedStore()
        participant.script("undo-reserve", [.failForGood, .wait])
        let saga = threeStepSaga(participant)
        participant.script("charge", [.failForGood])
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            let first = try await engine.execute(saga, id: "r-1", input: Order(id: 1))
            #expect(first.status == .needsAttention)

            let resolveRead = Gate()
            store.hooks.withLock { $0.beforeNextRecordsRead = resolveRead }
            let resolved = Task { try await engine.resolve(sagaID: "r-1", note: "refunded by hand") }
            await resolveRead.waitUntilSomeoneWaits()
            // resolve has checked the status; a retry now runs the compensation again.
            try await engine.retry(sagaID: "r-1", note: "try the refund again")
            await participant.waitForCalls("undo-reserve", count: 2)
            resolveRead.open()
            let error = await #expect(throws: SagaError.self) { try await resolved.value }
            #expect(error?.code == .invalidOperatorAction, "\(String(describing: error))")
            participant.release("undo-reserve")
            let outcome = try await engine.handle(for: "r-1", output: Receipt.self).outcome()
            #expect(outcome.status == .compensated)
        }
        let records = try await store.records(of: "r-1")
        #expect(!records.contains { $0.kind == .operatorResolved }, "\(records.kinds)")
        // The history replays: no record was appended beside a running compensation.
        #expect(try SagaStateMachine(plan: saga.plan, sagaID: "r-1", records: records).status == .compensated)
        #expect(try await store.summary(of: "r-1")?.status == .compensated)
    }

    @Test func resolveIsRefusedWhileARetryHoldsTheSaga() async throws {
        let store = HookedStore()
        participant.script("undo-reserve", [.failForGood, .wait])
        participant.script("charge", [.failForGood])
        let saga = threeStepSaga(participant)
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            #expect(try await engine.execute(saga, id: "r-2", input: Order(id: 2)).status == .needsAttention)
            try await engine.retry(sagaID: "r-2", note: "again")
            await participant.waitForCalls("undo-reserve", count: 2)
            let error = await #expect(throws: SagaError.self) {
                try await engine.resolve(sagaID: "r-2", note: "by hand")
            }
            #expect(error?.code == .invalidOperatorAction)
            participant.release("undo-reserve")
            #expect(try await engine.handle(for: "r-2", output: Receipt.self).outcome().status == .compensated)
        }
    }

    @Test func resolveSettlesWaitersAndTheLogSaysResolved() async throws {
        let store = HookedStore()
        participant.script("undo-reserve", [.failForGood])
        participant.script("charge", [.failForGood])
        let saga = threeStepSaga(participant)
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            #expect(try await engine.execute(saga, id: "r-3", input: Order(id: 3)).status == .needsAttention)
            try await engine.resolve(sagaID: "r-3", note: "refunded by hand")
            let outcome = try await engine.handle(for: "r-3", output: Receipt.self).outcome()
            guard case .resolved(let note) = outcome else {
                Issue.record("expected resolved, got \(outcome)")
                return
            }
            #expect(note == "refunded by hand")
        }
        #expect(try await store.summary(of: "r-3")?.status == .resolved)
        #expect(try await store.records(of: "r-3").last?.kind == .operatorResolved)
    }

    // MARK: 3. start returns only once the saga is durable

    @Test func aSecondStartWithTheSameIDGetsTheFirstStartsFailure() async throws {
        let store = HookedStore()
        let gate = Gate()
        store.hooks.withLock { hooks in
            hooks.holdAppend = { $0.creation != nil }
            hooks.appendGate = gate
            hooks.failAppend = { $0.creation != nil }
        }
        var configuration = testConfiguration()
        configuration.logWriteRetry = .noRetries
        let saga = threeStepSaga(participant)
        let engine = SagaEngine(store: store, configuration: configuration, logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            let first = Task { try await engine.start(saga, id: "s-1", input: Order(id: 1)) }
            await gate.waitUntilSomeoneWaits()
            let secondReturned = Atomic(false)
            let second = Task {
                defer { secondReturned.store(true, ordering: .sequentiallyConsistent) }
                return try await engine.start(saga, id: "s-1", input: Order(id: 1))
            }
            // The second caller either returned already (attached too early) or waits on the first
            // start's creation record.
            await eventually("the second start attached") {
                secondReturned.load(ordering: .sequentiallyConsistent)
                    || (engine.activeRun("s-1")?.acceptance.waiterCount ?? 0) >= 2
            }
            gate.open()
            let firstError = await #expect(throws: SagaError.self) { _ = try await first.value }
            #expect(firstError?.code == .logWriteFailed)
            let secondError = await #expect(throws: SagaError.self) { _ = try await second.value }
            #expect(secondError?.code == .logWriteFailed, "the second caller was told the saga exists")
        }
        #expect(try await store.summary(of: "s-1") == nil)
        #expect(participant.calls.isEmpty)
    }

    // MARK: 4. No waiter hangs

    /// A caller waits on a saga's outcome while an operator retry's log write fails for good: the
    /// caller is told, instead of waiting forever.
    @Test func aWaiterIsWokenWhenARetrysLogWriteFails() async throws {
        let store = HookedStore()
        participant.script("undo-reserve", [.failForGood])
        participant.script("charge", [.failForGood])
        var configuration = testConfiguration()
        configuration.logWriteRetry = .noRetries
        let saga = threeStepSaga(participant)
        let engine = SagaEngine(store: store, configuration: configuration, logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            #expect(try await engine.execute(saga, id: "w-1", input: Order(id: 1)).status == .needsAttention)
            let gate = Gate()
            store.hooks.withLock { hooks in
                let retried: @Sendable (SagaLogAppend) -> Bool = { $0.records.contains { $0.kind == .operatorRetried } }
                hooks.holdAppend = retried
                hooks.appendGate = gate
                hooks.failAppend = retried
            }
            let retry = Task { try await engine.retry(sagaID: "w-1", note: "again") }
            await gate.waitUntilSomeoneWaits()
            let waiter = Task { try await engine.handle(for: "w-1", output: Receipt.self).outcome() }
            await eventually("the waiter is parked on the retried run") {
                (engine.activeRun("w-1")?.settled.waiterCount ?? 0) >= 1
            }
            let run = try #require(engine.activeRun("w-1"))
            gate.open()
            let error = await #expect(throws: SagaError.self) { try await retry.value }
            #expect(error?.code == .logWriteFailed)
            // Checked before awaiting, so that a regression fails here instead of hanging the suite.
            let woken = run.settled.isSet && run.settled.waiterCount == 0
            #expect(woken, "the retried run was dropped without waking its waiter")
            guard woken else { return }
            // Woken with the failure; the saga is as last logged, still needing attention.
            await #expect(throws: SagaError.self) { _ = try await waiter.value }
            #expect(try await engine.summary(of: "w-1")?.status == .needsAttention)
            #expect(try await engine.handle(for: "w-1", output: Receipt.self).outcome().status == .needsAttention)
        }
    }

    // MARK: 5. One cause

    /// Two siblings fail for good, one after the other: the outcome names the first, live and
    /// rebuilt from the log alike.
    @Test func aSagaHasOneCauseLiveAndFromTheLog() async throws {
        let store = HookedStore()
        let firstFailed = Gate()
        store.hooks.withLock { hooks in
            hooks.afterAppend = { append in
                if append.records.contains(where: { $0.kind == .stepFailed && $0.step == "left" }) {
                    firstFailed.open()
                }
            }
        }
        let left = SagaStep<Order, Receipt>.compensatable("left") { context in
            try await participant.call("left", key: context.idempotencyKey, attempt: context.attempt)
            throw NonRetryableError("left refused", type: "LeftRefused")
        } compensation: { _, _ in
        }
        let right = SagaStep<Order, Receipt>.compensatable("right") { context in
            await firstFailed.wait()
            throw NonRetryableError("right refused", type: "RightRefused")
        } compensation: { _, _ in
        }
        let saga = SagaDefinition<Order, NoOutput>("two-failures") {
            Parallel {
                left
                right
            }
            pivot("ship", participant)
        }
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        let (live, rebuilt) = try await withRunningSagaEngine(engine) { engine in
            let live = try await engine.execute(saga, id: "c-1", input: Order(id: 1))
            let rebuilt = try await engine.handle(for: "c-1", output: NoOutput.self).outcome()
            return (live, rebuilt)
        }
        // A new engine that does not know the definition rebuilds the same cause.
        let other = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        let foreign = try await withRunningSagaEngine(other) { engine in
            try await engine.handle(for: "c-1", output: NoOutput.self).outcome()
        }
        for (what, outcome) in [("live", live), ("rebuilt", rebuilt), ("rebuilt elsewhere", foreign)] {
            guard case .compensated(let failure) = outcome else {
                Issue.record("\(what): expected compensated, got \(outcome)")
                continue
            }
            #expect(failure.step == "left", "\(what): cause step \(failure.step ?? "nil")")
            #expect(failure.cause.type == "LeftRefused", "\(what): cause \(failure.cause)")
        }
    }

    // MARK: A resumption built from stale records

    /// `resume` read the saga's records; before it registers its execution, another execution (the
    /// one `register` started for the stranded saga) runs the saga to its end. The stale execution's
    /// first write is refused by the log; a caller waiting on it gets the saga's real outcome, not a
    /// write failure. Found by the property schedules (an operator's resume racing recovery).
    @Test func aResumptionBuiltFromStaleRecordsGivesWayToTheLog() async throws {
        let store = HookedStore()
        let saga = threeStepSaga(participant)
        // Engine 1 dies after its second write: reserve's outcome and charge's intent are logged.
        let plan = CrashPlan(write: 2, moment: .afterWrite)
        let first = SagaEngine(store: store, configuration: plan.configure(testConfiguration()), logger: quietLogger)
        _ = try? await withRunningSagaEngine(first) { try await $0.execute(saga, id: "st-1", input: Order(id: 1)) }
        #expect(try await store.summary(of: "st-1")?.status == .running)

        // Engine 2 does not know the definition yet: recovery strands the saga.
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            await engine.waitForRecovery()
            let staleRead = Gate()
            store.hooks.withLock { $0.afterNextRecordsRead = staleRead }
            let resume = Task { try await engine.resume(sagaID: "st-1") }
            await staleRead.waitUntilSomeoneWaits()
            // Registering resumes the stranded saga, which runs to its end meanwhile.
            let completed = Gate()
            store.hooks.withLock { hooks in
                hooks.afterAppend = { append in
                    if append.records.contains(where: { $0.kind == .sagaCompleted }) { completed.open() }
                }
            }
            try engine.register(saga)
            await completed.wait()
            await eventually("the first execution ended") { engine.activeRun("st-1") == nil }
            // The stale resumption now registers an execution from the records it read; hold its
            // first write until a caller waits on it.
            let staleWrite = Gate()
            store.hooks.withLock { hooks in
                hooks.holdAppend = { _ in true }
                hooks.appendGate = staleWrite
            }
            staleRead.open()
            try await resume.value
            let waiter = Task { try await engine.handle(for: "st-1", output: Receipt.self).outcome() }
            await eventually("the waiter is parked on the stale execution") {
                (engine.activeRun("st-1")?.settled.waiterCount ?? 0) >= 1
            }
            staleWrite.open()
            let outcome = try await waiter.value
            #expect(outcome.status == .completed)
        }
        let records = try await store.records(of: "st-1")
        #expect(records.last?.kind == .sagaCompleted, "\(records.kinds)")
        #expect(participant.calls("ship").count == 1)
    }

    // MARK: The hint after a hard stop

    @Test func aStoppedEngineDoesNotSuggestAResumeThatItWouldRefuse() async throws {
        let store = HookedStore()
        participant.script("charge", [.hang])
        let saga = threeStepSaga(participant)
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            _ = try await engine.start(saga, id: "h-1", input: Order(id: 1))
            await participant.waitForCalls("charge")
        }
        let error = await #expect(throws: SagaError.self) {
            _ = try await engine.handle(for: "h-1", output: Receipt.self).outcome()
        }
        #expect(error?.code == .interrupted)
        let message = error?.message ?? ""
        #expect(!message.contains("resume(sagaID:)"), "\(message)")
        #expect(message.contains("new engine"), "\(message)")
        let resume = await #expect(throws: SagaError.self) { try await engine.resume(sagaID: "h-1") }
        #expect(resume?.code == .shuttingDown)
    }
}
