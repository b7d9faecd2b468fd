import Foundation
import PropertyBased
import SagaKit
import SagaKitTesting
import Synchronization
import Testing

/// The testing kit's property test of a user's saga: plans name only the definition's steps, each
/// saga meets only its own faults, world invariants see every outcome, and shrinking keeps a crash
/// on a saga that still exists.
@Suite("Property tests of your saga", .tags(.testingKit), .timeLimit(.minutes(2)))
struct SagaPropertyTestTests {
    /// reserve (compensatable) → charge (pivot), over one participant shared by every saga.
    static func world(_ participant: Participant = Participant(), invariants: [SagaWorldInvariant<Order, Receipt>] = [])
        -> SagaWorld<Order, Receipt>
    {
        let definition = SagaDefinition<Order, Receipt>("property", returning: pivot("charge", participant)) {
            compensatable("reserve", participant)
            pivot("charge", participant)
        }
        return SagaWorld(definition: definition, invariants: invariants)
    }

    static let orders = Gen.int(in: 1...9).map { Order(id: $0) }

    @Test func plansNameOnlyTheDefinitionsSteps() async throws {
        let test = try await SagaPropertyTest { Self.world() }
        #expect(test.steps.map(\.name) == ["reserve", "charge"])
        #expect(test.steps.map(\.isCompensatable) == [true, false])
        var generator = Xoshiro(seed: (1, 2, 3, 4))
        var faults = 0
        for _ in 0..<200 {
            let plan = test.plans(inputs: Self.orders).run(using: &generator)
            #expect((1...test.maxSagas).contains(plan.sagas.count))
            for saga in plan.sagas {
                for fault in saga.faults {
                    faults += 1
                    #expect(["reserve", "charge"].contains(fault.step), "\(fault)")
                    if fault.step == "charge" {
                        #expect(fault.fault != .failCompensationForGood, "the pivot has no compensation")
                    }
                }
            }
            if let crash = plan.crash { #expect(plan.sagas.indices.contains(crash.saga)) }
        }
        #expect(faults > 0, "200 plans without a single fault")
    }

    @Test func eachSagaMeetsOnlyItsOwnFaults() async throws {
        let participant = Participant()
        let test = try await SagaPropertyTest { Self.world(participant) }
        let refused = SagaFaultPlan<Order>.Fault(step: "charge", fault: .fail(call: 1, retryable: false))
        // Calls are counted per saga: each refused saga's first charge call is its call 1.
        let plan = SagaFaultPlan(sagas: [
            .init(input: Order(id: 1), faults: [refused]), .init(input: Order(id: 2), faults: [refused]),
            .init(input: Order(id: 3)),
        ])
        let outcomes = try await outcomes(of: plan, in: test, participant: participant)
        #expect(
            outcomes == [
                "property-saga-0": .compensated, "property-saga-1": .compensated, "property-saga-2": .completed,
            ])
    }

    /// Runs `plan` with an invariant that only records the sagas' final statuses.
    func outcomes(of plan: SagaFaultPlan<Order>, in test: SagaPropertyTest<Order, Receipt>, participant: Participant)
        async throws -> [String: SagaStatus]
    {
        let seen = SeenStatuses()
        var test = test
        test.makeWorld = {
            Self.world(
                participant,
                invariants: [
                    SagaWorldInvariant("records the statuses") { sagas in
                        seen.record(sagas.map { ($0.sagaID, $0.status) })
                        return nil
                    }
                ])
        }
        #expect(try await test.check(plan).isEmpty)
        return seen.statuses
    }

    @Test func aWorldInvariantThatFailsIsReportedWithTheCrash() async throws {
        let test = try await SagaPropertyTest {
            Self.world(
                invariants: [
                    SagaWorldInvariant("no saga compensates") { sagas in
                        sagas.contains { $0.status == .compensated } ? "a saga compensated" : nil
                    }
                ])
        }
        let refused = SagaFaultPlan<Order>.Fault(step: "charge", fault: .fail(call: 1, retryable: false))
        let violations = try await test.check(
            SagaFaultPlan(sagas: [.init(input: Order(id: 1), faults: [refused])], crash: .init(saga: 0, point: 1)))
        #expect(violations.map(\.invariant) == ["no saga compensates"])
        #expect(violations.first?.crashPoint != nil, "the crash at point 1 is reported")
        #expect(try await test.check(SagaFaultPlan(sagas: [.init(input: Order(id: 1))])).isEmpty)
    }

    @Test func aPlanThatHangsIsReportedNotWaitedFor() async throws {
        let participant = Participant()
        participant.script("charge", [.hang])
        var test = try await SagaPropertyTest { Self.world(participant) }
        test.planTimeLimit = .milliseconds(300)
        let violations = try await test.check(SagaFaultPlan(sagas: [.init(input: Order(id: 1))]))
        #expect(violations.map(\.invariant) == ["finishes within planTimeLimit"])
    }

    @Test func aFaultInAStepTheSagaDoesNotHaveIsRefused() async throws {
        let test = try await SagaPropertyTest { Self.world() }
        let typo = SagaFaultPlan<Order>.Fault(step: "chrage", fault: .fail(call: 1))
        await #expect(throws: ParticipantFaultsError.self) {
            _ = try await test.check(SagaFaultPlan(sagas: [.init(input: Order(id: 1), faults: [typo])]))
        }
    }

    @Test func removingTheCrashedSagaMovesTheCrashToAnotherSaga() {
        let fault = SagaFaultPlan<Order>.Fault(step: "charge", fault: .fail(call: 1))
        let plan = SagaFaultPlan(
            sagas: [.init(input: Order(id: 1)), .init(input: Order(id: 2), faults: [fault])],
            crash: .init(saga: 0, point: 3))
        let candidates = plan.smallerCandidates(crashPoints: 5)
        for candidate in candidates {
            if let crash = candidate.crash { #expect(candidate.sagas.indices.contains(crash.saga), "\(candidate)") }
            #expect(candidate.size < plan.size || candidate.sagas.count < plan.sagas.count, "\(candidate)")
        }
        // Saga 0 removed: the crash is counted in what was saga 1, at every point up to 5.
        let moved = candidates.filter { $0.sagas.count == 1 && $0.sagas[0].input == Order(id: 2) && $0.crash != nil }
        #expect(Set(moved.compactMap(\.crash?.point)) == Set(0...5))
        #expect(candidates.contains { $0.crash == .init(saga: 0, point: 2) && $0.sagas.count == 2 })
        #expect(candidates.contains { $0.sagas.count == 2 && $0.sagas[1].faults.isEmpty })
    }
}

/// Final statuses an invariant saw.
final class SeenStatuses: Sendable {
    private let state = Mutex<[String: SagaStatus]>([:])
    var statuses: [String: SagaStatus] { state.withLock { $0 } }

    func record(_ statuses: [(String, SagaStatus?)]) {
        state.withLock { state in
            for (id, status) in statuses { state[id] = status }
        }
    }
}
