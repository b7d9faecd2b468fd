import Foundation
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Synchronization
import Testing

@Suite("Testing kit", .tags(.recovery), .timeLimit(.minutes(1)))
struct TestingKitTests {
    @Test func inMemoryStoreKeepsTheStoreContract() async throws {
        try await SagaStoreContract { InMemorySagaStore() }.verify()
    }

    @Test func sqliteStoreKeepsTheStoreContract() async throws {
        try await withTemporaryDirectory(prefix: "SagaKitTests-contract") { directory in
            try await SagaStoreContract {
                try SQLiteSagaStore(path: directory.path(of: "\(UUID().uuidString).sqlite"))
            }
            .verify()
        }
    }

    @Test func theContractCatchesAStoreThatLosesAtomicity() async throws {
        /// Writes an append's records one by one, so a duplicate half-way leaves a partial append.
        final class LeakyStore: SagaStore {
            let inner = InMemorySagaStore()
            func append(_ append: SagaLogAppend) async throws {
                for (index, record) in append.records.enumerated() {
                    var part = append
                    part.records = [record]
                    if index > 0 { part.creation = nil }
                    try await inner.append(part)
                }
            }
            func summary(of sagaID: String) async throws -> SagaSummary? { try await inner.summary(of: sagaID) }
            func records(of sagaID: String) async throws -> [SagaLogRecord] { try await inner.records(of: sagaID) }
            func sagas(matching query: SagaQuery) async throws -> [SagaSummary] {
                try await inner.sagas(matching: query)
            }
            func activeSagaRecords() async throws -> [SagaLogRecords] { try await inner.activeSagaRecords() }
        }
        let error = await #expect(throws: SagaStoreContract.Violation.self) {
            try await SagaStoreContract { LeakyStore() }.verify()
        }
        #expect(error?.rule == "appends atomically and refuses a duplicate sequence")
    }

    @Test func idempotentParticipantsPassTheDoubleRunCheck() async throws {
        let world = Mutex<Participant?>(nil)
        let check = IdempotenceCheck(snapshot: { world.withLock { $0 }!.effects }) {
            let participant = Participant()
            world.withLock { $0 = participant }
            return SagaScenario(definition: threeStepSaga(participant), input: Order(id: 1))
        }
        #expect(try await check.run() == nil)
    }

    @Test func theDoubleRunCheckCatchesAParticipantThatIsNotIdempotent() async throws {
        /// Counts every delivery: applying twice shows.
        final class Counter: Sendable {
            let value = Mutex(0)
        }
        let world = Mutex<Counter?>(nil)
        let check = IdempotenceCheck(snapshot: { world.withLock { $0 }!.value.withLock { $0 } }) {
            let counter = Counter()
            world.withLock { $0 = counter }
            let add = SagaStep<Order, NoOutput>.pivot("add") { _ in
                counter.value.withLock { $0 += 1 }
                return NoOutput()
            }
            return SagaScenario(definition: SagaDefinition("count") { add }, input: Order(id: 1))
        }
        let mismatch = try await check.run()
        #expect(mismatch?.single == 1)
        #expect(mismatch?.double == 2)
    }

    /// A crash explorer over in-memory logs, one per exploration index (opened twice per point).
    static func inMemoryExplorer(
        sagaID: String = "explored-saga",
        makeScenario: @escaping @Sendable () async throws -> SagaScenario<Order, Receipt>
    ) -> CrashExplorer<Order, Receipt> {
        let stores = Mutex<[Int: InMemorySagaStore]>([:])
        return CrashExplorer(
            makeStore: { index in
                stores.withLock { stores in
                    if let store = stores[index] { return store }
                    let store = InMemorySagaStore()
                    stores[index] = store
                    return store
                }
            },
            sagaID: sagaID,
            makeScenario: makeScenario)
    }

    /// Before the check, a fault in "chrage" (for "charge") never fired: all 14 crash points completed
    /// with no violation, so a test expecting the saga to survive the fault passed while testing nothing.
    @Test func aFaultInAStepTheDefinitionDoesNotHaveFailsTheCrashExplorer() async throws {
        let explorer = Self.inMemoryExplorer {
            let faults = ParticipantFaults()
            faults.inject(.fail(call: 1, retryable: false), into: "chrage")  // misspelled "charge"
            return SagaScenario(definition: threeStepSaga(Participant()), input: Order(id: 1), faults: faults)
        }
        let error = await #expect(throws: ParticipantFaultsError.self) { try await explorer.explore() }
        #expect(error?.code == .unknownStep)
        #expect(error?.unknownSteps == ["chrage"])
        #expect(error?.knownSteps == ["reserve", "charge", "ship"])
        #expect(
            error?.description
                == "faults were injected into step 'chrage', which saga 'three' does not have; its steps are "
                + "'reserve', 'charge', 'ship' (a fault on a step the saga does not have never fires)")
    }

    @Test func aFaultInAStepTheDefinitionDoesNotHaveFailsTheIdempotenceCheck() async throws {
        let check = IdempotenceCheck(snapshot: { 0 }) {
            let faults = ParticipantFaults()
            faults.inject(.failCompensationForGood, into: "reserv")
            return SagaScenario(definition: threeStepSaga(Participant()), input: Order(id: 1), faults: faults)
        }
        let error = await #expect(throws: ParticipantFaultsError.self) { try await check.run() }
        #expect(error?.unknownSteps == ["reserv"])
        #expect(error?.description.contains("'reserve', 'charge', 'ship'") == true)
    }

    @Test func verifyAcceptsTheDefinitionsStepsAndNamesEveryUnknownOne() throws {
        let participant = Participant()
        let three = threeStepSaga(participant)
        let refund = SagaDefinition<Order, NoOutput>("refund") {
            SagaStep<Order, NoOutput>.pivot("pay-back") { _ in NoOutput() }
        }
        let faults = ParticipantFaults()
        faults.inject(.fail(call: 1), into: "charge")
        faults.inject(.loseReply(call: 2), into: "pay-back")
        try faults.verify(against: three, refund)  // every name belongs to one of them

        faults.inject(.hang(call: 1), into: "shipp")
        faults.inject(.duplicate(call: 1), into: "Charge")
        let error = #expect(throws: ParticipantFaultsError.self) { try faults.verify(against: three, refund) }
        #expect(error?.unknownSteps == ["Charge", "shipp"])
        #expect(error?.sagas == ["three", "refund"])
        #expect(
            error?.description
                == "faults were injected into steps 'Charge', 'shipp', which sagas 'three', 'refund' do not have; "
                + "their steps are 'reserve', 'charge', 'ship', 'pay-back' "
                + "(a fault on a step the saga does not have never fires)")
        #expect(throws: ParticipantFaultsError.self) { try faults.verify(against: refund) }
    }

    @Test func aFaultInjectedIntoTheStepValueFires() async throws {
        let participant = Participant()
        let charge = compensatable("charge", participant)
        let ship = pivot("ship", participant)
        let saga = SagaDefinition<Order, Receipt>("typed", returning: ship) {
            compensatable("reserve", participant)
            charge
            ship
        }
        let faults = ParticipantFaults()
        faults.inject(.fail(call: 1, retryable: false), into: charge)
        #expect(faults.schedule.keys.sorted() == ["charge"])
        try faults.verify(against: saga)
        let engine = SagaEngine(
            store: InMemorySagaStore(), configuration: faults.configure(testConfiguration()), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(engine) { engine in
            try await engine.execute(saga, id: "typed-1", input: Order(id: 1))
        }
        #expect(outcome.status == .compensated)
        // The fault fails "charge" before it reaches the participant; a started step is compensated all the same.
        #expect(participant.operations == ["reserve", "undo-charge", "undo-reserve"])
    }

    @Test(arguments: [nil, "order-7"] as [String?])
    func theIdempotenceCheckRunsTheSagaUnderItsID(_ sagaID: String?) async throws {
        let world = Mutex<Participant?>(nil)
        let makeScenario: @Sendable () async throws -> SagaScenario<Order, Receipt> = {
            let participant = Participant()
            world.withLock { $0 = participant }
            return SagaScenario(definition: threeStepSaga(participant), input: Order(id: 1))
        }
        let snapshot: @Sendable () async throws -> [String] = {
            Array(Set(world.withLock { $0 }!.calls.map(\.key))).sorted()
        }
        let check =
            if let sagaID {
                IdempotenceCheck(snapshot: snapshot, sagaID: sagaID, makeScenario: makeScenario)
            } else {
                IdempotenceCheck(snapshot: snapshot, makeScenario: makeScenario)  // today's default id
            }
        let expectedID = sagaID ?? "idempotence-check"
        #expect(check.sagaID == expectedID)
        #expect(try await check.run() == nil)
        let keys = try await snapshot()
        #expect(keys == ["charge", "reserve", "ship"].map { "\(expectedID)/\($0)" })
    }

    @Test func theCrashExplorerRunsTheSagaUnderItsID() async throws {
        let participants = Mutex<[Participant]>([])
        let report = try await Self.inMemoryExplorer(sagaID: "order-42") {
            let participant = Participant()
            participants.withLock { $0.append(participant) }
            return SagaScenario(definition: threeStepSaga(participant), input: Order(id: 1))
        }.explore()
        #expect(report.violations.isEmpty, "\(report)")
        let keys = Set(participants.withLock { $0 }.flatMap { $0.calls.map(\.key) })
        #expect(keys == ["order-42/reserve", "order-42/charge", "order-42/ship"])
    }
}
