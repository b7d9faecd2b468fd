public import SagaKit

/// One generated case of a ``SagaPropertyTest``: the sagas to run at once (each with its input and
/// the faults its participant calls meet) and where, if anywhere, the engine crashes.
///
/// Plans come from ``SagaPropertyTest/plans(inputs:)``, which reads the step names from your
/// definition, so a plan never names a step the saga does not have. When a property fails,
/// `propertyCheck` shrinks the plan (fewer sagas, fewer faults, an earlier crash or none, simpler
/// inputs) and prints it with the seed that replays it.
///
/// ```swift
/// let plan = SagaFaultPlan(
///     sagas: [.init(input: order, faults: [.init(step: "create-order", fault: .fail(call: 1, retryable: false))])],
///     crash: .init(saga: 0, point: 5))
/// let violations = try await test.check(plan)
/// ```
public struct SagaFaultPlan<Input: Codable & Sendable>: Sendable, CustomStringConvertible {
    /// A fault in the calls one saga makes to one step's participant.
    public struct Fault: Hashable, Sendable, CustomStringConvertible {
        /// The step's name, as the definition spells it.
        public var step: String
        /// What the step's calls (or its compensation's calls) meet.
        public var fault: ParticipantFault

        /// Creates a fault.
        public init(step: String, fault: ParticipantFault) {
            self.step = step
            self.fault = fault
        }

        public var description: String { "\(step): \(fault)" }
    }

    /// One saga of the plan.
    public struct Saga: Sendable {
        /// Its input.
        public var input: Input
        /// The faults its participant calls meet; counted per saga (its own calls only).
        public var faults: [Fault]

        /// Creates a saga of a plan.
        public init(input: Input, faults: [Fault] = []) {
            self.input = input
            self.faults = faults
        }
    }

    /// Where the engine crashes: at the `point`-th durable point (log write or participant call,
    /// before or after, counted from 0) of saga `saga`. Every saga stops there, as in a process that
    /// died; a new engine on the same log then recovers them.
    public struct Crash: Hashable, Sendable, CustomStringConvertible {
        /// The index of the saga whose durable points are counted.
        public var saga: Int
        /// The durable point; a point the saga never reaches means no crash.
        public var point: Int

        /// Creates a crash.
        public init(saga: Int, point: Int) {
            self.saga = saga
            self.point = point
        }

        public var description: String { "saga \(saga), at its durable point \(point)" }
    }

    /// The sagas, all started at once over one world.
    public var sagas: [Saga]
    /// The crash, if any.
    public var crash: Crash?

    /// Creates a plan.
    public init(sagas: [Saga], crash: Crash? = nil) {
        self.sagas = sagas
        self.crash = crash
    }

    /// The plan's size, ordered by sagas first, then faults, then how late the crash is: a plan with
    /// fewer sagas is smaller whatever its crash.
    public var size: Int {
        sagas.count * 10_000 + sagas.reduce(0) { $0 + $1.faults.count } * 100
            + (crash.map { 1 + min($0.point, 98) } ?? 0)
    }

    public var description: String {
        var lines = sagas.enumerated().map { index, saga in
            let faults =
                saga.faults.isEmpty ? "no faults" : "faults {\(saga.faults.map(\.description).joined(separator: "; "))}"
            return "saga \(index): \(saga.input) with \(faults)"
        }
        lines.append("crash: \(crash.map(\.description) ?? "none")")
        return lines.joined(separator: "\n")
    }
}

/// One saga of a checked plan, as your world invariants see it.
public struct SagaPropertyOutcome<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// The saga's id in the run (`property-saga-<index>`); its steps' keys are `<id>/<step name>`.
    public var sagaID: String
    /// The saga's input.
    public var input: Input
    /// How it ended, or `nil` when it did not finish after recovery (a built-in violation says why).
    public var outcome: SagaOutcome<Output>?
    /// Its final status in the log.
    public var status: SagaStatus?
}

/// A check over the whole world once every saga of a plan has finished: the participants' shared
/// state (which the closure captures) and every saga's outcome.
///
/// ```swift
/// let stockAddsUp = SagaWorldInvariant<PlaceOrder, OrderConfirmation>("stock adds up") { sagas in
///     let sold = sagas.compactMap(\.outcome?.output).reduce(0) { $0 + $1.quantity }
///     let stock = try await products.getStock("tea")
///     return stock + sold == 10 ? nil : "stock \(stock) + sold \(sold) is not the opening 10"
/// }
/// ```
public struct SagaWorldInvariant<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// The name reported with a violation.
    public let name: String
    let check: @Sendable ([SagaPropertyOutcome<Input, Output>]) async throws -> String?

    /// Creates an invariant: `check` returns a description of the violation, or `nil`.
    public init(
        _ name: String,
        check: @escaping @Sendable (_ sagas: [SagaPropertyOutcome<Input, Output>]) async throws -> String?
    ) {
        self.name = name
        self.check = check
    }
}

/// A fresh world for one case of a ``SagaPropertyTest``: the definition, bound to fresh
/// participants, and the invariants over those participants.
///
/// ```swift
/// SagaWorld(definition: PlaceOrderSaga(products: products, orders: orders).definition, invariants: [stockAddsUp])
/// ```
public struct SagaWorld<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// The saga, over this world's participants.
    public var definition: SagaDefinition<Input, Output>
    /// Checks of this world after every saga finished, on top of the built-in invariants.
    public var invariants: [SagaWorldInvariant<Input, Output>]

    /// Creates a world.
    public init(definition: SagaDefinition<Input, Output>, invariants: [SagaWorldInvariant<Input, Output>] = []) {
        self.definition = definition
        self.invariants = invariants
    }
}

extension SagaFaultPlan {
    /// Every plan one step smaller than this one: a saga or a fault removed, an input made simpler
    /// by `simplerInputs`, the crash removed or moved earlier. A change that shifts the durable points
    /// (a saga or fault removed) also comes with every earlier crash point. The crash stops every
    /// saga, so removing the saga it is counted in also comes with the crash counted in each other
    /// saga instead, at points up to `crashPoints`.
    public func smallerCandidates(simplerInputs: (Input) -> [Input] = { _ in [] }, crashPoints: Int = 24)
        -> [SagaFaultPlan]
    {
        var structural: [SagaFaultPlan] = []
        for (index, smaller) in sagaRemovals {
            if crash?.saga == index {
                for other in smaller.sagas.indices {
                    for point in 0...max(0, crashPoints) {
                        var moved = smaller
                        moved.crash = Crash(saga: other, point: point)
                        structural.append(moved)
                    }
                }
            }
            structural.append(smaller)
        }
        for (index, saga) in sagas.enumerated() {
            for fault in saga.faults.indices {
                var smaller = self
                smaller.sagas[index].faults.remove(at: fault)
                structural.append(smaller)
            }
            for input in simplerInputs(saga.input) {
                var simpler = self
                simpler.sagas[index].input = input
                structural.append(simpler)
            }
        }
        return crashShrinkingCandidates(structural: structural)
    }
}
