import Foundation
import SagaKit
import SagaKitTesting
import Testing

/// The saga log cut after every single write (and just before it), then a new engine on the same
/// store: every saga must end completed or compensated, with one stable key per action.
@Suite("Recovery from a cut log", .tags(.recovery), .timeLimit(.minutes(2)))
struct RecoveryTests {
    enum Scenario: String, CaseIterable, CustomTestStringConvertible {
        /// Every step succeeds.
        case completes
        /// The pivot fails for good: both earlier steps are compensated.
        case compensates
        var testDescription: String { rawValue }
    }

    /// The durable writes a full, uninterrupted run of each scenario makes: the saga's start with the
    /// first intent, then each outcome with the next intent, and the end.
    static func expectedWrites(_ scenario: Scenario) -> Int { scenario == .completes ? 4 : 7 }

    /// One cut of the log: before or after one write of one scenario, on one kind of store.
    struct Cut: Sendable, CustomTestStringConvertible {
        var kind: TestStoreKind
        var scenario: Scenario
        var write: Int
        var moment: CrashPlan.Moment
        var testDescription: String { "\(kind), \(scenario), \(moment) write \(write)" }
    }

    /// Every cut: before and after each write of each scenario, on each store.
    static let cuts: [Cut] = TestStoreKind.allCases.flatMap { kind in
        Scenario.allCases.flatMap { scenario in
            (1...expectedWrites(scenario)).flatMap { write in
                [CrashPlan.Moment.beforeWrite, .afterWrite].map {
                    Cut(kind: kind, scenario: scenario, write: write, moment: $0)
                }
            }
        }
    }

    /// How many durable writes a full, uninterrupted run of the scenario makes.
    func writeCount(_ scenario: Scenario, kind: TestStoreKind) async throws -> Int {
        let stores = try TestStores(kind)
        let participant = Participant()
        if scenario == .compensates { participant.script("ship", [], then: .failForGood) }
        let plan = CrashPlan(write: .max)
        let engine = SagaEngine(
            store: try await stores.open(), configuration: plan.configure(testConfiguration()), logger: quietLogger)
        _ = try await withRunningSagaEngine(engine) { engine in
            try await engine.execute(threeStepSaga(participant), id: "count", input: Order(id: 0))
        }
        return plan.writes
    }

    /// The cuts cover every write: a change to how many writes a saga makes changes this count, and
    /// then ``cuts`` with it.
    @Test(arguments: TestStoreKind.allCases, Scenario.allCases)
    func anUninterruptedRunMakesTheWritesTheCutsCover(kind: TestStoreKind, scenario: Scenario) async throws {
        #expect(try await writeCount(scenario, kind: kind) == Self.expectedWrites(scenario))
    }

    @Test(arguments: cuts)
    func sagaEndsCorrectlyAfterACrash(at cut: Cut) async throws {
        try await checkCut(write: cut.write, moment: cut.moment, kind: cut.kind, scenario: cut.scenario)
    }

    func checkCut(write: Int, moment: CrashPlan.Moment, kind: TestStoreKind, scenario: Scenario) async throws {
        let cut: Comment = "cut \(moment) \(write) (\(kind), \(scenario))"
        let stores = try TestStores(kind)
        let participant = Participant()
        if scenario == .compensates { participant.script("ship", [], then: .failForGood) }
        let saga = threeStepSaga(participant)

        // First engine: dies at the cut. Its caller may still read an outcome when the cut falls after
        // the saga's final write (the log already says how it ended); otherwise it gets an error.
        let plan = CrashPlan(write: write, moment: moment)
        let first = SagaEngine(
            store: try await stores.open(), configuration: plan.configure(testConfiguration()), logger: quietLogger)
        let early = try? await withRunningSagaEngine(first) { engine in
            try await engine.execute(saga, id: "order", input: Order(id: 1))
        }
        #expect(plan.crashed, cut)
        if early != nil { #expect(write == plan.writes && moment == .afterWrite, cut) }
        try await stores.close()

        // Second engine on the same log: recovers, and the caller attaches with the same id.
        let second = SagaEngine(store: try await stores.open(), configuration: testConfiguration(), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(second) { engine in
            try engine.register(saga)
            return try await engine.execute(saga, id: "order", input: Order(id: 1))
        }
        let expected: SagaStatus = scenario == .completes ? .completed : .compensated
        #expect(outcome.status == expected, cut)

        // Each action and compensation saw exactly one stable key.
        for operation in Set(participant.operations) {
            let step = operation.hasPrefix("undo-") ? String(operation.dropFirst(5)) : operation
            #expect(Set(participant.calls(operation).map(\.key)) == ["order/\(step)"], cut)
        }
        let forward = participant.operations.filter { !$0.hasPrefix("undo-") }
        let undos = participant.operations.filter { $0.hasPrefix("undo-") }
        switch scenario {
        case .completes:
            #expect(undos.isEmpty, cut)
            #expect(Set(forward) == ["reserve", "charge", "ship"], cut)
        case .compensates:
            #expect(Set(undos) == ["undo-charge", "undo-reserve"], cut)
            // The last compensation of charge precedes the last of reserve: reverse order.
            let lastCharge = participant.operations.lastIndex(of: "undo-charge")!
            let lastReserve = participant.operations.lastIndex(of: "undo-reserve")!
            #expect(lastCharge < lastReserve, cut)
            // No compensation ran before its step started.
            for undo in ["charge", "reserve"] {
                #expect(
                    participant.operations.firstIndex(of: undo)! < participant.operations.firstIndex(
                        of: "undo-\(undo)")!, cut)
            }
        }
        // Nothing ran after the saga finished: the log ends with its final record.
        try await stores.close()
        let history = try await stores.open().records(of: "order")
        try await stores.close()
        #expect(history.last?.kind == (scenario == .completes ? .sagaCompleted : .sagaCompensated), cut)
        #expect(history.filter { $0.kind == .sagaStarted }.count == 1, cut)
    }

    @Test(arguments: TestStoreKind.allCases)
    func unknownOutcomeWithCompensatePolicyCompensatesWithoutCallingAgain(kind: TestStoreKind) async throws {
        let stores = try TestStores(kind)
        let participant = Participant()
        let ship = pivot("ship", participant)
        let saga = SagaDefinition<Order, Receipt>("careful", returning: ship) {
            compensatable("reserve", participant)
            compensatable("charge", participant, options: StepOptions(onUnknownOutcome: .compensate))
            ship
        }
        // Write 2 holds reserve's outcome and charge's intent; die right after it.
        let plan = CrashPlan(write: 2, moment: .afterWrite)
        let first = SagaEngine(
            store: try await stores.open(), configuration: plan.configure(testConfiguration()), logger: quietLogger)
        await #expect(throws: SagaError.self) {
            try await withRunningSagaEngine(first) { try await $0.execute(saga, id: "u", input: Order(id: 2)) }
        }
        try await stores.close()
        let second = SagaEngine(store: try await stores.open(), configuration: testConfiguration(), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(second) { engine in
            try engine.register(saga)
            return try await engine.handle(for: "u", output: Receipt.self).outcome()
        }
        guard case .compensated(let failure) = outcome else {
            Issue.record("expected compensated, got \(outcome)")
            return
        }
        #expect(failure.cause.type == "SagaKit.UnknownOutcome")
        #expect(participant.operations == ["reserve", "undo-charge", "undo-reserve"])
    }

    @Test(arguments: TestStoreKind.allCases)
    func changedDefinitionLeavesSagaUntouchedUntilTheOldVersionIsRegistered(kind: TestStoreKind) async throws {
        let stores = try TestStores(kind)
        let participant = Participant()
        let v1 = threeStepSaga(participant, name: "order")
        let plan = CrashPlan(write: 2, moment: .afterWrite)
        let first = SagaEngine(
            store: try await stores.open(), configuration: plan.configure(testConfiguration()), logger: quietLogger)
        await #expect(throws: SagaError.self) {
            try await withRunningSagaEngine(first) { try await $0.execute(v1, id: "v", input: Order(id: 3)) }
        }
        try await stores.close()
        let before = try await stores.open().records(of: "v")
        try await stores.close()

        let v2 = SagaDefinition<Order, NoOutput>("order") {
            compensatable("reserve", participant)
            compensatable("charge", participant)
            compensatable("insure", participant)
            pivot("ship", participant)
        }
        let second = SagaEngine(store: try await stores.open(), configuration: testConfiguration(), logger: quietLogger)
        try second.register(v2)
        try await withRunningSagaEngine(second) { engine in
            let error = await #expect(throws: SagaError.self) {
                try await engine.handle(for: "v", output: Receipt.self).outcome()
            }
            #expect(error?.code == .definitionMismatch)
            #expect(error?.message.contains(v1.fingerprint) == true)
            #expect(engine.strandedSagas.map(\.id) == ["v"])
            #expect(engine.strandedSagas.first?.code == .definitionMismatch)
            #expect(try await engine.history(of: "v") == before, "a stranded saga's log is left untouched")
            #expect(participant.operations == ["reserve"], "nothing ran while the saga was stranded")

            // Registering the old version beside the new one lets the saga finish.
            try engine.register(v1)
            let outcome = try await engine.execute(v1, id: "v", input: Order(id: 3))
            #expect(outcome.status == .completed)
            #expect(engine.strandedSagas.isEmpty)
        }
        #expect(participant.calls("insure").isEmpty)
    }

    @Test(arguments: TestStoreKind.allCases)
    func unregisteredDefinitionIsReportedNotRun(kind: TestStoreKind) async throws {
        let stores = try TestStores(kind)
        let participant = Participant()
        let plan = CrashPlan(write: 1, moment: .afterWrite)
        let first = SagaEngine(
            store: try await stores.open(), configuration: plan.configure(testConfiguration()), logger: quietLogger)
        await #expect(throws: SagaError.self) {
            try await withRunningSagaEngine(first) {
                try await $0.execute(threeStepSaga(participant), id: "lost", input: Order(id: 4))
            }
        }
        try await stores.close()
        let second = SagaEngine(store: try await stores.open(), configuration: testConfiguration(), logger: quietLogger)
        try await withRunningSagaEngine(second) { engine in
            let error = await #expect(throws: SagaError.self) {
                try await engine.handle(for: "lost", output: Receipt.self).outcome()
            }
            #expect(error?.code == .definitionNotRegistered)
            #expect(error?.message.contains("'three' is not registered") == true)
        }
        #expect(participant.calls.count == 0)
    }

    @Test(arguments: TestStoreKind.allCases)
    func loggedPayloadThatNoLongerDecodesNeedsAttention(kind: TestStoreKind) async throws {
        let stores = try TestStores(kind)
        let participant = Participant()
        let plan = CrashPlan(write: 2, moment: .afterWrite)
        let first = SagaEngine(
            store: try await stores.open(), configuration: plan.configure(testConfiguration()), logger: quietLogger)
        await #expect(throws: SagaError.self) {
            try await withRunningSagaEngine(first) {
                try await $0.execute(threeStepSaga(participant), id: "p", input: Order(id: 5))
            }
        }
        try await stores.close()

        // Same structure, but the input type changed incompatibly.
        struct NewOrder: Codable, Sendable { var sku: String }
        let changed = SagaDefinition<NewOrder, NoOutput>("three") {
            SagaStep<NewOrder, Receipt>.compensatable("reserve") { _ in
                Receipt(step: "", order: 0)
            } compensation: { _, _ in
            }
            SagaStep<NewOrder, Receipt>.compensatable("charge") { _ in
                Receipt(step: "", order: 0)
            } compensation: { _, _ in
            }
            SagaStep<NewOrder, Receipt>.pivot("ship") { _ in Receipt(step: "", order: 0) }
        }
        #expect(changed.fingerprint == threeStepSaga(participant).fingerprint)
        let second = SagaEngine(store: try await stores.open(), configuration: testConfiguration(), logger: quietLogger)
        try second.register(changed)
        let outcome = try await withRunningSagaEngine(second) { engine in
            try await engine.handle(for: "p", output: NoOutput.self).outcome()
        }
        guard case .needsAttention(let failure) = outcome else {
            Issue.record("expected needs attention, got \(outcome)")
            return
        }
        #expect(failure.cause.message.contains("no longer decodes as NewOrder"))
        try await stores.close()
        let history = try await stores.open().records(of: "p")
        try await stores.close()
        #expect(history.filter { $0.kind == .stepSucceeded }.count == 1, "no committed record was lost")
    }
}
