import Foundation
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Testing

@Suite("Crash explorer", .tags(.recovery), .timeLimit(.minutes(2)))
final class CrashExplorerTests: Sendable {
    /// The logs of one test's explorations, removed when the test is over.
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory(prefix: "SagaKitTests-explorer")
    }

    deinit { try? directory.remove() }

    /// Every forward effect is undone exactly when the saga compensated (read from the participant).
    static func ledgerBalances(_ participant: Participant) -> SagaInvariant {
        SagaInvariant("the participant's ledger matches the outcome") { report in
            let effects = Set(participant.effects.keys)
            let forward = effects.filter { !$0.hasPrefix("undo-") && !$0.hasPrefix("ship") }
            switch report.summary?.status {
            case .completed?:
                let undone = effects.filter { $0.hasPrefix("undo-") }
                return undone.isEmpty ? nil : "a completed saga undid \(undone.sorted())"
            case .compensated?:
                let missing = forward.filter { !effects.contains("undo-\($0)") }
                return missing.isEmpty ? nil : "a compensated saga kept \(missing.sorted())"
            default:
                return nil
            }
        }
    }

    func explorer(
        options: StepOptions = StepOptions(),
        configure: @escaping @Sendable (inout SagaEngine.Configuration) -> Void = { _ in },
        faults: @escaping @Sendable (ParticipantFaults) -> Void = { _ in }
    ) -> CrashExplorer<Order, Receipt> {
        let directory = self.directory
        let run = UUID().uuidString  // keeps this explorer's logs apart from another's in the same test
        var explorer = CrashExplorer<Order, Receipt>(
            makeStore: { index in try SQLiteSagaStore(path: directory.path(of: "\(run)-\(index).sqlite")) },
            closeStore: { store in try await (store as? SQLiteSagaStore)?.close() }
        ) {
            let participant = Participant()
            let scenarioFaults = ParticipantFaults()
            faults(scenarioFaults)
            let ship = pivot("ship", participant)
            let saga = SagaDefinition<Order, Receipt>("explored", returning: ship) {
                compensatable("reserve", participant)
                compensatable("charge", participant, options: options)
                ship
            }
            return SagaScenario(
                definition: saga, input: Order(id: 1), invariants: [Self.ledgerBalances(participant)],
                faults: scenarioFaults)
        }
        configure(&explorer.configuration)
        return explorer
    }

    @Test func exploresEveryDurablePointOfASagaThatCompletes() async throws {
        let report = try await explorer().explore()
        // 4 writes and 3 calls, each crashed before and after.
        #expect(report.points.count == 14, "\(report.points)")
        #expect(report.explored == 14)
        #expect(report.violations.isEmpty, "\(report)")
        #expect(report.outcomes[.completed] == 14)
    }

    static let faults: [(String, ParticipantFault)] = [
        ("charge", .fail(call: 1)),
        ("ship", .fail(call: 1, retryable: false)),
        ("reserve", .loseReply(call: 1)),
        ("charge", .duplicate(call: 1)),
    ]

    @Test(arguments: 0..<faults.count)
    func exploresEveryPointUnderAParticipantFault(_ index: Int) async throws {
        let (step, fault) = Self.faults[index]
        let report = try await explorer(faults: { $0.inject(fault, into: step) }).explore()
        #expect(report.explored == report.points.count)
        #expect(report.explored >= 14, "\(fault) in \(step): \(report.points)")
        #expect(report.violations.isEmpty, "\(fault) in \(step): \(report)")
    }

    @Test func compensationsThatFailThenSucceedOrFailForGoodKeepTheInvariants() async throws {
        let flaky = try await explorer(faults: {
            $0.inject(.fail(call: 1, retryable: false), into: "ship")
            $0.inject(.failCompensation(times: 2), into: "charge")
        }).explore()
        #expect(flaky.violations.isEmpty, "\(flaky)")
        #expect((flaky.outcomes[.compensated] ?? 0) > 0)

        let stuck = try await explorer(faults: {
            $0.inject(.fail(call: 1, retryable: false), into: "ship")
            $0.inject(.failCompensationForGood, into: "charge")
        }).explore()
        #expect(stuck.violations.isEmpty, "\(stuck)")
        #expect((stuck.outcomes[.needsAttention] ?? 0) > 0)
    }

    @Test func aHungCallTimesOutAndIsRetried() async throws {
        let report = try await explorer(
            options: StepOptions(timeout: .seconds(5)),
            faults: {
                $0.inject(.hang(call: 1), into: "charge")
            }
        ).explore()
        #expect(report.violations.isEmpty, "\(report)")
        #expect(report.points.contains { $0.contains("compensate") } == false)
    }

    @Test func catchesAnEngineThatSkipsTheWriteAheadIntent() async throws {
        let options = StepOptions(onUnknownOutcome: .compensate)
        let correct = try await explorer(options: options).explore()
        #expect(correct.violations.isEmpty, "\(correct)")

        let broken = try await explorer(options: options, configure: { $0.plantedBug = .skipWriteAheadIntent })
            .explore()
        let caught = broken.violations.filter { $0.invariant.contains("unknown outcome") }
        #expect(!caught.isEmpty, "the planted bug went unnoticed: \(broken)")
        #expect(caught.allSatisfy { $0.crashPoint?.contains("charge") == true })
    }
}
