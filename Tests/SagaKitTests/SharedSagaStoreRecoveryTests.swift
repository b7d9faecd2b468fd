import Foundation
import SagaKit
import SagaKitTesting
import Synchronization
import Testing

/// A shared log whose appends fail as a database restart makes them fail: one append of one saga
/// throws `io`, either before anything is written (the statement or the connection failed) or
/// after the append was applied (the commit went through, its acknowledgement was lost with the
/// connection). Nothing else: no orphans to claim, a current lease.
final class FlakySharedStore: SharedSagaStore {
    let inner = InMemorySagaStore()
    let sweepInterval: Duration = .seconds(5)
    private let state = Mutex((appends: [String: Int](), failing: [String: (from: Int, committing: Bool)]()))

    /// Append number `from` of `sagaID` (counting from 1, its creation) fails with `io`; with
    /// `committing`, it is applied first.
    func failAppend(_ from: Int, of sagaID: String, committing: Bool = false) {
        state.withLock { $0.failing[sagaID] = (from, committing) }
    }

    var leaseIsCurrent: Bool { true }

    func claimOrphanedSagas(limit: Int?) async throws -> [SagaLogRecords] { [] }

    func append(_ append: SagaLogAppend) async throws {
        let failure = state.withLock { state -> (from: Int, committing: Bool)? in
            let number = state.appends[append.sagaID, default: 0] + 1
            state.appends[append.sagaID] = number
            guard let failure = state.failing[append.sagaID], failure.from == number else { return nil }
            return failure
        }
        guard let failure else { return try await inner.append(append) }
        if failure.committing { try await inner.append(append) }
        throw SagaStoreError(
            .io,
            message: failure.committing
                ? "committing failed: the connection was lost during COMMIT (outcome unknown)"
                : "appending failed: cannot reach the database")
    }

    func activeSagaRecords() async throws -> [SagaLogRecords] { try await inner.activeSagaRecords() }
    func summary(of sagaID: String) async throws -> SagaSummary? { try await inner.summary(of: sagaID) }
    func records(of sagaID: String) async throws -> [SagaLogRecord] { try await inner.records(of: sagaID) }
    func sagas(matching query: SagaQuery) async throws -> [SagaSummary] { try await inner.sagas(matching: query) }
}

/// On a shared log, a saga whose run stopped because its log writes failed (the database went away
/// for longer than the log-write retries last, or a retried write found its own commit already there)
/// is resumed from the log by the engine's next sweep, without an operator's `resume(sagaID:)`.
@Suite("Shared saga log: sagas stopped by failed log writes", .tags(.engine, .recovery), .timeLimit(.minutes(1)))
struct SharedSagaStoreRecoveryTests {
    let participant = Participant()
    let store = FlakySharedStore()
    let clock = ManualSagaClock()

    func engine(logWriteRetry: RetryPolicy) -> SagaEngine {
        var configuration = testConfiguration(clock: clock)
        configuration.logWriteRetry = logWriteRetry
        return SagaEngine(store: store, configuration: configuration, logger: quietLogger)
    }

    /// Suspends until the engine lists `sagaID` as stranded: the run has ended and the engine kept the
    /// saga for its sweep. (The run's callers are answered just before, on another task.)
    func waitUntilStranded(_ sagaID: String, in engine: SagaEngine) async {
        while !engine.strandedSagas.contains(where: { $0.id == sagaID }) && !Task.isCancelled {
            await Task.yield()
        }
    }

    /// The log's records of `sagaID` are numbered 1, 2, … without a gap, and hold each record once.
    func expectWholeHistory(_ sagaID: String, ending kind: SagaLogRecord.Kind) async throws {
        let records = try await store.inner.records(of: sagaID)
        #expect(records.map(\.sequence) == Array(1...records.count))
        #expect(records.filter { $0.kind == .sagaStarted }.count == 1)
        let outcomes = records.filter { $0.kind == .stepSucceeded }.map { "\($0.step ?? "")#\($0.attempt ?? 0)" }
        #expect(Set(outcomes).count == outcomes.count, "an outcome was logged twice: \(outcomes)")
        #expect(records.last?.kind == kind)
    }

    @Test func aSagaWhoseLogWritesFailedIsResumedAtTheNextSweep() async throws {
        // Write 2 holds reserve's outcome and charge's intent; it fails, and there are no retries.
        store.failAppend(2, of: "w-1")
        let outcome = try await withRunningSagaEngine(engine(logWriteRetry: .noRetries)) { engine in
            // Write 1 (the saga's start) succeeds; write 2 fails later, in the run.
            let handle = try await engine.start(threeStepSaga(participant), id: "w-1", input: Order(id: 1))
            let stopped = await #expect(throws: SagaError.self) { try await handle.outcome() }
            // A caller attached to the run hears why it stopped; one that comes in the instant between
            // the run's end and the engine keeping the saga for its sweep hears that it is not running.
            #expect(
                stopped.map { [.logWriteFailed, .interrupted].contains($0.code) } == true,
                "\(String(describing: stopped))")
            await waitUntilStranded("w-1", in: engine)
            #expect(engine.strandedSagas.map(\.code) == [.logWriteFailed])
            #expect(try await store.summary(of: "w-1")?.status == .running)
            // A caller that attaches meanwhile learns why the saga is not running.
            let attached = await #expect(throws: SagaError.self) {
                try await engine.handle(for: "w-1", output: Receipt.self).outcome()
            }
            #expect(attached?.code == .logWriteFailed)
            #expect(attached?.message.contains("the next sweep") == true, "\(String(describing: attached))")

            // The database is back: the next sweep resumes the saga from the log.
            await clock.waitForSleepers(count: 1)
            clock.advance(by: store.sweepInterval)
            await participant.waitForCalls("ship")
            return try await engine.handle(for: "w-1", output: Receipt.self).outcome()
        }
        #expect(outcome.status == .completed)
        // reserve's outcome was never logged: it ran again with its key; charge and ship ran once.
        #expect(participant.calls("reserve").map(\.key) == ["w-1/reserve", "w-1/reserve"])
        #expect(participant.calls("charge").map(\.key) == ["w-1/charge"])
        #expect(participant.calls("ship").map(\.key) == ["w-1/ship"])
        try await expectWholeHistory("w-1", ending: .sagaCompleted)
    }

    @Test func aRetriedWriteWhoseCommitWasLostResumesFromTheLogWithoutADuplicate() async throws {
        // Write 2 is applied, but its caller hears `io`: the retry then finds record 3 taken.
        store.failAppend(2, of: "c-1", committing: true)
        let retries = RetryPolicy(maxAttempts: 3, initialBackoff: .zero, maxBackoff: .zero)
        let outcome = try await withRunningSagaEngine(engine(logWriteRetry: retries)) { engine in
            // Nobody awaits this saga's outcome: only the engine itself can resume it.
            _ = try await engine.start(threeStepSaga(participant), id: "c-1", input: Order(id: 2))
            await waitUntilStranded("c-1", in: engine)
            #expect(engine.strandedSagas.map(\.code) == [.logWriteFailed])
            #expect(participant.calls("charge").isEmpty, "charge ran before its intent was known to be durable")

            await clock.waitForSleepers(count: 1)
            clock.advance(by: store.sweepInterval)
            await participant.waitForCalls("ship")
            return try await engine.handle(for: "c-1", output: Receipt.self).outcome()
        }
        #expect(outcome.status == .completed)
        #expect(participant.operations == ["reserve", "charge", "ship"], "a step ran twice or not at all")
        try await expectWholeHistory("c-1", ending: .sagaCompleted)
    }

    @Test func aSagaFinishedMeanwhileIsDroppedNotResumed() async throws {
        store.failAppend(2, of: "f-1")
        try await withRunningSagaEngine(engine(logWriteRetry: .noRetries)) { engine in
            let handle = try await engine.start(threeStepSaga(participant), id: "f-1", input: Order(id: 3))
            _ = try? await handle.outcome()
            await waitUntilStranded("f-1", in: engine)
            // An operator resumes it before the sweep does; it finishes.
            try await engine.resume(sagaID: "f-1")
            #expect(try await engine.handle(for: "f-1", output: Receipt.self).outcome().status == .completed)
            #expect(engine.strandedSagas.isEmpty)
            await clock.waitForSleepers(count: 1)
            clock.advance(by: store.sweepInterval)
            // The sweep after it finds nothing to do: the next sweep's sleep begins.
            await clock.waitForSleepers(count: 1)
            #expect(engine.strandedSagas.isEmpty)
        }
        #expect(participant.calls("ship").count == 1)
        try await expectWholeHistory("f-1", ending: .sagaCompleted)
    }
}
