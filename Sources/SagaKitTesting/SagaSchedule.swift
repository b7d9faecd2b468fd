public import PropertyBased
public import SagaKit

/// A randomly shaped saga for property tests: compensatable groups (a group of more than one step
/// runs in parallel), an optional pivot, retriable steps, per-step unknown-outcome policies and
/// participant faults.
public struct SagaShape: Hashable, Sendable, CustomStringConvertible {
    /// One step of the shape.
    public struct Step: Hashable, Sendable {
        /// `s0`, `s1`, … in order.
        public var name: String
        /// Its kind.
        public var kind: SagaStepKind
        /// Whether recovery compensates (rather than retries) an unknown outcome.
        public var compensatesUnknownOutcome: Bool
    }

    /// A fault on one step's calls.
    public struct Fault: Hashable, Sendable {
        /// The step's name.
        public var step: String
        /// The fault.
        public var fault: ParticipantFault
    }

    /// The elements in order; an element of more than one step is a parallel group.
    public var groups: [[Step]]
    /// Faults injected into the steps' calls.
    public var faults: [Fault]

    /// All steps, in order.
    public var steps: [Step] { groups.flatMap { $0 } }

    public var description: String {
        let body = groups.map { group in
            let names = group.map { step in
                "\(step.name):\(step.kind)\(step.compensatesUnknownOutcome ? "(compensate unknown)" : "")"
            }
            return group.count > 1 ? "parallel[\(names.joined(separator: ", "))]" : names[0]
        }.joined(separator: " → ")
        let faults = faults.map { "\($0.step): \($0.fault)" }.joined(separator: "; ")
        return body + (faults.isEmpty ? "" : " with faults {\(faults)}")
    }
}

/// A property-test schedule: sagas started concurrently, and where (if anywhere) the engine crashes
/// before a new engine recovers them.
public struct SagaSchedule: Hashable, Sendable, CustomStringConvertible {
    /// The sagas, started at once.
    public var sagas: [SagaShape]
    /// The durable point (counted across all sagas, from 0) at which the first engine dies; `nil`
    /// for no crash.
    public var crashAt: Int?

    /// The number of steps over all sagas: a measure of how small a counterexample is.
    public var size: Int { sagas.reduce(0) { $0 + $1.steps.count } + sagas.reduce(0) { $0 + $1.faults.count } }

    public var description: String {
        sagas.enumerated().map { "saga \($0.offset): \($0.element)" }.joined(separator: "\n")
            + "\ncrash: " + (crashAt.map { "at durable point \($0)" } ?? "none")
    }
}

/// Generators of saga shapes and schedules for `propertyCheck`, with shrinking.
///
/// ```swift
/// @Test func everyScheduleKeepsTheInvariants() async {
///     await propertyCheck(count: 1_000, input: SagaGen.schedule()) { schedule in
///         let violations = try await SagaScheduleRunner().run(schedule)
///         #expect(violations.isEmpty, "\(schedule)\n\(violations)")
///     }
/// }
/// ```
public enum SagaGen {
    /// A fault gene: step index, fault kind, call number.
    static func fault() -> Generator<(Int, Int, Int), some SendableSequenceType> {
        zip(Gen.int(in: 0...7), Gen.int(in: 0...4), Gen.int(in: 1...2))
    }

    /// A saga shape of 1 to 8 steps: 0–3 compensatable groups of 1–3 steps, an optional pivot,
    /// 0–2 retriable steps, random unknown-outcome policies and up to 3 faults.
    public static func shape() -> Generator<SagaShape, some SendableSequenceType> {
        zip(
            Gen.int(in: 1...3).array(of: 0...3), Gen.bool, Gen.int(in: 0...2), Gen.int(in: 0...255),
            fault().array(of: 0...3)
        ).map { input in
            makeShape(groupSizes: input.0, pivot: input.1, retriables: input.2, policyBits: input.3, faults: input.4)
        }
    }

    /// A schedule of 1 to 3 concurrent sagas and an optional crash point.
    public static func schedule(maxSagas: Int = 3) -> Generator<SagaSchedule, some SendableSequenceType> {
        zip(shape().array(of: 1...max(1, maxSagas)), Gen.int(in: 0...60).optional(valueRate: 0.8)).map { input in
            SagaSchedule(sagas: input.0, crashAt: input.1)
        }
    }

    static func makeShape(groupSizes: [Int], pivot: Bool, retriables: Int, policyBits: Int, faults: [(Int, Int, Int)])
        -> SagaShape
    {
        var groups: [[SagaShape.Step]] = []
        var index = 0
        func step(_ kind: SagaStepKind) -> SagaShape.Step {
            defer { index += 1 }
            let compensates = kind == .compensatable && (policyBits >> index) & 1 == 1
            return SagaShape.Step(name: "s\(index)", kind: kind, compensatesUnknownOutcome: compensates)
        }
        for size in groupSizes where index + size <= 6 {
            groups.append((0..<size).map { _ in step(.compensatable) })
        }
        if pivot || (groups.isEmpty && retriables == 0) { groups.append([step(.pivot)]) }
        for _ in 0..<retriables where index < 8 { groups.append([step(.retriable)]) }
        let steps = groups.flatMap { $0 }
        let shapedFaults = faults.compactMap { gene -> SagaShape.Fault? in
            guard gene.0 < steps.count else { return nil }
            let target = steps[gene.0]
            let fault: ParticipantFault
            switch gene.1 {
            case 0: fault = .fail(call: gene.2)
            // A business failure comes first or not at all: an idempotent participant that applied a key
            // answers a repeat with its result, not with a refusal.
            case 1: fault = .fail(call: 1, retryable: false)
            case 2: fault = .loseReply(call: gene.2)
            case 3: fault = .duplicate(call: gene.2)
            default:
                guard target.kind == .compensatable else { return nil }
                fault = gene.2 == 1 ? .failCompensation(times: 2) : .failCompensationForGood
            }
            return SagaShape.Fault(step: target.name, fault: fault)
        }
        return SagaShape(groups: groups, faults: shapedFaults)
    }
}
