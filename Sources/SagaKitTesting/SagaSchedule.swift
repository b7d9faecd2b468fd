public import PropertyBased
public import SagaKit

/// A randomly shaped saga for property tests: compensatable groups (a group of more than one step
/// runs in parallel), an optional pivot, retryable steps, per-step unknown-outcome policies and
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

        /// Creates a step.
        public init(name: String, kind: SagaStepKind, compensatesUnknownOutcome: Bool = false) {
            self.name = name
            self.kind = kind
            self.compensatesUnknownOutcome = compensatesUnknownOutcome
        }
    }

    /// A fault on one step's calls.
    public struct Fault: Hashable, Sendable {
        /// The step's name.
        public var step: String
        /// The fault.
        public var fault: ParticipantFault

        /// Creates a fault on a step.
        public init(step: String, fault: ParticipantFault) {
            self.step = step
            self.fault = fault
        }
    }

    /// The elements in order; an element of more than one step is a parallel group.
    public var groups: [[Step]]
    /// Faults injected into the steps' calls.
    public var faults: [Fault]

    /// All steps, in order.
    public var steps: [Step] { groups.flatMap { $0 } }

    /// Creates a shape.
    public init(groups: [[Step]], faults: [Fault] = []) {
        self.groups = groups
        self.faults = faults
    }

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
    /// Where the first engine dies: at a durable point of one saga, counted from 0 over that saga's
    /// points only, so the crash falls at the same place whatever the other sagas do.
    public struct Crash: Hashable, Sendable {
        /// The saga (index into ``SagaSchedule/sagas``).
        public var saga: Int
        /// The durable point of that saga.
        public var point: Int

        /// Creates a crash point.
        public init(saga: Int, point: Int) {
            self.saga = saga
            self.point = point
        }
    }

    /// An operator action, racing the saga it names on the first engine.
    public struct Operation: Hashable, Sendable, CustomStringConvertible {
        /// What the operator does.
        public struct Action: Hashable, Sendable, CustomStringConvertible {
            enum Base: String, Hashable, Sendable, CaseIterable { case retry, resolve, cancel, resume }
            let base: Base

            /// `SagaEngine.retry(sagaID:note:)`.
            public static let retry = Action(base: .retry)
            /// `SagaEngine.resolve(sagaID:note:)`.
            public static let resolve = Action(base: .resolve)
            /// `SagaEngine.cancel(sagaID:reason:)`.
            public static let cancel = Action(base: .cancel)
            /// `SagaEngine.resume(sagaID:)`.
            public static let resume = Action(base: .resume)

            public var description: String { base.rawValue }
        }

        /// The saga (index into ``SagaSchedule/sagas``).
        public var saga: Int
        /// The action.
        public var action: Action
        /// Fire once the saga has passed this many of its durable points; `nil` (or a point the saga
        /// never reaches) fires when the saga's first caller gets its answer.
        public var afterPoint: Int?

        /// Creates an operation.
        public init(saga: Int, action: Action, afterPoint: Int? = nil) {
            self.saga = saga
            self.action = action
            self.afterPoint = afterPoint
        }

        public var description: String {
            "\(action) saga \(saga) " + (afterPoint.map { "after its durable point \($0)" } ?? "once it answered")
        }
    }

    /// Creates a schedule.
    public init(sagas: [SagaShape], crash: Crash? = nil, operations: [Operation] = []) {
        self.sagas = sagas
        self.crash = crash
        self.operations = operations
    }

    /// The sagas, started at once.
    public var sagas: [SagaShape]
    /// Where the first engine dies; `nil` for no crash.
    public var crash: Crash?
    /// Operator actions fired concurrently with the sagas on the first engine. Each may be refused
    /// (the saga is not in a state that allows it); what it must never do is break an invariant.
    public var operations: [Operation]

    /// The number of steps, faults and operations over all sagas: a measure of how small a
    /// counterexample is.
    public var size: Int {
        sagas.reduce(0) { $0 + $1.steps.count } + sagas.reduce(0) { $0 + $1.faults.count } + operations.count
    }

    public var description: String {
        sagas.enumerated().map { "saga \($0.offset): \($0.element)" }.joined(separator: "\n")
            + "\ncrash: " + (crash.map { "saga \($0.saga), at its durable point \($0.point)" } ?? "none")
            + (operations.isEmpty ? "" : "\noperator: " + operations.map(\.description).joined(separator: "; "))
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
    /// One step's genes: compensates its unknown outcome, fault kind (0 = none), call number. A step
    /// carries its own genes, so removing it while shrinking removes them too.
    static func stepGene() -> Generator<(Bool, Int, Int), some SendableSequenceType> {
        zip(Gen.bool(0.3), Gen.int(in: 0...5), Gen.int(in: 1...2))
    }

    /// A saga shape of 1 to 8 steps: 0–3 compensatable groups of 1–3 steps, an optional pivot,
    /// 0–2 retryable steps, random unknown-outcome policies and at most one fault per step.
    public static func shape() -> Generator<SagaShape, some SendableSequenceType> {
        zip(stepGene().array(of: 1...3).array(of: 0...3), Gen.bool, stepGene().array(of: 0...2), stepGene()).map {
            input in
            makeShape(groups: input.0, pivot: input.1 ? input.3 : nil, retryables: input.2)
        }
    }

    /// A schedule of 1 to 3 concurrent sagas, an optional crash point, and up to `maxOperations`
    /// operator actions (retry, resolve, cancel, resume) racing them.
    public static func schedule(maxSagas: Int = 3, maxOperations: Int = 3) -> Generator<
        SagaSchedule, some SendableSequenceType
    > {
        zip(
            shape().array(of: 1...max(1, maxSagas)),
            zip(Gen.int(in: 0...max(0, maxSagas - 1)), Gen.int(in: 0...30)).optional(valueRate: 0.8),
            operation(maxSagas: maxSagas).array(of: 0...max(0, maxOperations))
        ).map { input in
            let crash = input.1.map { SagaSchedule.Crash(saga: $0.0 % input.0.count, point: $0.1) }
            let operations = input.2.map { operation in
                var operation = operation
                operation.saga %= input.0.count
                return operation
            }
            return SagaSchedule(sagas: input.0, crash: crash, operations: operations)
        }
    }

    /// One operator action on one of `maxSagas` sagas, fired at a durable point or once the saga answered.
    static func operation(maxSagas: Int) -> Generator<SagaSchedule.Operation, some SendableSequenceType> {
        zip(
            Gen.int(in: 0...max(0, maxSagas - 1)),
            Gen.int(in: 0...(SagaSchedule.Operation.Action.Base.allCases.count - 1)),
            Gen.int(in: 0...20).optional(valueRate: 0.5)
        ).map { input in
            SagaSchedule.Operation(
                saga: input.0, action: SagaSchedule.Operation.Action(base: .allCases[input.1]), afterPoint: input.2)
        }
    }

    static func makeShape(groups genes: [[(Bool, Int, Int)]], pivot: (Bool, Int, Int)?, retryables: [(Bool, Int, Int)])
        -> SagaShape
    {
        var groups: [[SagaShape.Step]] = []
        var faults: [SagaShape.Fault] = []
        var index = 0
        func step(_ kind: SagaStepKind, _ gene: (Bool, Int, Int)) -> SagaShape.Step {
            defer { index += 1 }
            let step = SagaShape.Step(
                name: "s\(index)", kind: kind, compensatesUnknownOutcome: kind == .compensatable && gene.0)
            let call = gene.2
            let fault: ParticipantFault?
            switch gene.1 {
            case 1: fault = .fail(call: call)
            // A business failure comes first or not at all: an idempotent participant that applied a key
            // answers a repeat with its result, not with a refusal.
            case 2: fault = .fail(call: 1, retryable: false)
            case 3: fault = .loseReply(call: call)
            case 4: fault = .duplicate(call: call)
            case 5 where kind == .compensatable:
                fault = call == 1 ? .failCompensation(times: 2) : .failCompensationForGood
            default: fault = nil
            }
            if let fault { faults.append(SagaShape.Fault(step: step.name, fault: fault)) }
            return step
        }
        for group in genes where index + group.count <= 6 {
            groups.append(group.map { step(.compensatable, $0) })
        }
        if let pivot {
            groups.append([step(.pivot, pivot)])
        } else if groups.isEmpty && retryables.isEmpty {
            groups.append([step(.pivot, (false, 0, 1))])
        }
        for gene in retryables { groups.append([step(.retryable, gene)]) }
        return SagaShape(groups: groups, faults: faults)
    }
}
