import Foundation
public import SagaKit
import Synchronization

/// A fault to inject into the calls of one step, counted per step across retries and recovery.
///
/// ```swift
/// let faults = ParticipantFaults()
/// faults.inject(.loseReply(call: 1), into: "deduct-stock")
/// faults.inject(.failCompensation(times: 2), into: "deduct-stock")
/// ```
public struct ParticipantFault: Hashable, Sendable, CustomStringConvertible {
    enum Base: Hashable, Sendable {
        case fail(call: Int, retryable: Bool)
        case hang(call: Int)
        case loseReply(call: Int)
        case duplicate(call: Int)
        case failCompensation(times: Int)
        case failCompensationForGood
    }

    let base: Base

    /// The `call`-th call of the action (from 1) fails before it reaches the participant.
    public static func fail(call: Int, retryable: Bool = true) -> Self {
        Self(base: .fail(call: call, retryable: retryable))
    }
    /// The `call`-th call of the action never returns until cancelled (give the step a timeout).
    public static func hang(call: Int) -> Self { Self(base: .hang(call: call)) }
    /// The `call`-th call of the action applies its effect, then the reply is lost (a retryable error).
    public static func loseReply(call: Int) -> Self { Self(base: .loseReply(call: call)) }
    /// The `call`-th call of the action is delivered twice; the engine sees the second reply.
    public static func duplicate(call: Int) -> Self { Self(base: .duplicate(call: call)) }
    /// The compensation fails `times` times (retryably), then succeeds.
    public static func failCompensation(times: Int) -> Self { Self(base: .failCompensation(times: times)) }
    /// Every call of the compensation fails, without retry helping: the saga needs attention.
    public static let failCompensationForGood = Self(base: .failCompensationForGood)

    public var description: String {
        switch base {
        case .fail(let call, let retryable): "fail call \(call)\(retryable ? "" : " for good")"
        case .hang(let call): "hang call \(call)"
        case .loseReply(let call): "lose reply of call \(call)"
        case .duplicate(let call): "deliver call \(call) twice"
        case .failCompensation(let times): "fail compensation \(times)×"
        case .failCompensationForGood: "fail compensation for good"
        }
    }
}

/// The error an injected fault throws.
public struct InjectedFault: SagaRetryClassifying, CustomStringConvertible {
    /// The step whose call failed.
    public var step: String
    /// What was injected.
    public var fault: String
    public var isRetryable: Bool
    public var description: String { "injected fault in '\(step)': \(fault)" }
}

/// A fault schedule that does not fit the sagas it is used with.
///
/// Thrown by ``ParticipantFaults/verify(against:)``, and so by ``CrashExplorer/explore()`` and
/// ``IdempotenceCheck/run()`` before they run anything.
///
/// ```swift
/// do {
///     try faults.verify(against: placeOrder)
/// } catch {
///     print(error.unknownSteps)  // ["deduct-stok"]
/// }
/// ```
public struct ParticipantFaultsError: Error, CustomStringConvertible {
    /// What is wrong with the schedule; bounded, usable as a label.
    ///
    /// ```swift
    /// #expect(error.code == .unknownStep)
    /// ```
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unknownStep
        }

        private let base: Base

        /// A fault was injected into a step name that none of the definitions has.
        public static let unknownStep = Self(base: .unknownStep)

        public var description: String { base.rawValue }
    }

    /// What is wrong.
    public var code: Code
    /// The injected step names the definitions do not have, sorted.
    public var unknownSteps: [String]
    /// The names of the sagas checked against, in the order given.
    public var sagas: [String]
    /// Their step names, in definition order.
    public var knownSteps: [String]

    public var description: String {
        func quoted(_ names: [String]) -> String { names.map { "'\($0)'" }.joined(separator: ", ") }
        let stepWord = unknownSteps.count == 1 ? "step" : "steps"
        let sagaWord =
            switch sagas.count {
            case 0: "no definition checked against does"
            case 1: "saga \(quoted(sagas)) does"
            default: "sagas \(quoted(sagas)) do"
            }
        let their = sagas.count == 1 ? "its" : "their"
        return "faults were injected into \(stepWord) \(quoted(unknownSteps)), which \(sagaWord) not have; "
            + "\(their) steps are \(knownSteps.isEmpty ? "none" : quoted(knownSteps)) "
            + "(a fault on a step the saga does not have never fires)"
    }
}

/// Faults injected into participant calls, installed into an engine's configuration.
///
/// The engine calls each action and compensation through these faults, so a test exercises the
/// saga's real participants under failure without changing its definition. Faults are keyed by step
/// name; the engine's calls carry only the step's name, so a fault injected into a name the saga does
/// not have never fires. ``CrashExplorer`` and ``IdempotenceCheck`` therefore check the faults against
/// their scenario's definition before they run, and throw a ``ParticipantFaultsError`` naming the
/// unknown step; when you install the faults into an engine yourself, call
/// ``verify(against:)`` with the definitions you run, or inject into the step value
/// (``inject(_:into:)-(_,SagaStep<Input,Output>)``) so that a misspelling does not compile.
///
/// ```swift
/// let faults = ParticipantFaults()
/// faults.inject(.fail(call: 1, retryable: false), into: createOrder)  // the step value: checked by the compiler
/// faults.inject(.failCompensation(times: 2), into: "deduct-stock")    // a name: checked by verify(against:)
/// try faults.verify(against: placeOrder)
/// let engine = SagaEngine(store: InMemorySagaStore(), configuration: faults.configure(.init()), logger: logger)
/// ```
///
/// - Important: Calls are counted per step name across every saga the engine runs, retries and
///   recovery included: `.fail(call: 2)` fails the second call of that step, whichever saga makes it.
public final class ParticipantFaults: Sendable {
    struct State {
        var faults: [String: [ParticipantFault]] = [:]
        var actionCalls: [String: Int] = [:]
        var compensationCalls: [String: Int] = [:]
        var everyCallTwice = false
    }

    private let state = Mutex(State())

    /// Creates an empty fault schedule.
    public init() {}

    /// Injects `fault` into the calls of the step named `step`.
    ///
    /// The name must be one of the definition's step names, spelled exactly: a name the saga does
    /// not have matches no call. ``verify(against:)`` (which ``CrashExplorer`` and
    /// ``IdempotenceCheck`` call for you) reports such a name as an error.
    ///
    /// ```swift
    /// faults.inject(.loseReply(call: 1), into: "deduct-stock")
    /// ```
    public func inject(_ fault: ParticipantFault, into step: String) {
        state.withLock { $0.faults[step, default: []].append(fault) }
    }

    /// Injects `fault` into the calls of `step`, by the step's name.
    ///
    /// Passing the step value rather than its name means a misspelled step cannot compile.
    ///
    /// ```swift
    /// let deductStock = SagaStep<PlaceOrder, NoOutput>.compensatable("deduct-stock") { context in
    ///     try await products.deduct(context.input.product, context.input.quantity, key: context.idempotencyKey)
    ///     return NoOutput()
    /// } compensation: { _, context in
    ///     await products.refund(key: context.idempotencyKey)
    /// }
    /// faults.inject(.failCompensation(times: 2), into: deductStock)  // into "deduct-stock"
    /// ```
    public func inject<Input, Output>(_ fault: ParticipantFault, into step: SagaStep<Input, Output>) {
        inject(fault, into: step.name)
    }

    /// Delivers every action and compensation twice, for double-run checks of idempotency.
    public func deliverEveryCallTwice() {
        state.withLock { $0.everyCallTwice = true }
    }

    /// The faults injected so far, by step.
    public var schedule: [String: [ParticipantFault]] { state.withLock { $0.faults } }

    /// Checks that every step a fault was injected into is a step of one of `definitions`.
    ///
    /// A fault keyed by a name no definition has never fires, so a test built on it would pass while
    /// testing nothing. Call this with every definition the faults are used with (one or several, of
    /// any input and output types) before running them. ``CrashExplorer`` and ``IdempotenceCheck``
    /// call it with their scenario's definition before every run.
    ///
    /// ```swift
    /// faults.inject(.fail(call: 1), into: "deduct-stok")
    /// try faults.verify(against: placeOrder)
    /// // throws: faults were injected into step 'deduct-stok', which saga 'place-order' does not have;
    /// // its steps are 'deduct-stock', 'create-order' (…)
    /// ```
    ///
    /// - Throws: ``ParticipantFaultsError`` with code ``ParticipantFaultsError/Code/unknownStep``,
    ///   naming the unknown steps and listing the definitions' steps.
    public func verify<each Input, each Output>(
        against definitions: repeat SagaDefinition<each Input, each Output>
    ) throws(ParticipantFaultsError) {
        var sagas: [String] = []
        var steps: [String] = []
        for definition in repeat each definitions {
            sagas.append(definition.name)
            steps += Self.stepNames(of: definition)
        }
        let known = Set(steps)
        let unknown = schedule.keys.filter { !known.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw ParticipantFaultsError(code: .unknownStep, unknownSteps: unknown, sagas: sagas, knownSteps: steps)
        }
    }

    /// The names of a definition's steps, in order (parallel groups flattened).
    private static func stepNames<Input, Output>(of definition: SagaDefinition<Input, Output>) -> [String] {
        definition.elements.flatMap(\.steps).map(\.name)
    }

    /// Returns `configuration` with these faults wrapped around every participant call.
    ///
    /// Faults installed this way are not checked against any definition: call
    /// ``verify(against:)`` with the definitions the engine runs.
    ///
    /// ```swift
    /// try faults.verify(against: placeOrder)
    /// let engine = SagaEngine(store: store, configuration: faults.configure(SagaEngine.Configuration()), logger: logger)
    /// ```
    public func configure(_ configuration: SagaEngine.Configuration) -> SagaEngine.Configuration {
        var configuration = configuration
        let previous = configuration.interceptor
        configuration.interceptor = { [self] call, body in
            try await self.intercept(call) {
                if let previous { return try await previous(call, body) }
                return try await body()
            }
        }
        return configuration
    }

    func intercept(_ call: ParticipantCall, _ body: @Sendable () async throws -> Data) async throws -> Data {
        let (number, faults, twice) = state.withLock { state -> (Int, [ParticipantFault], Bool) in
            let faults = state.faults[call.step] ?? []
            if call.isCompensation {
                state.compensationCalls[call.step, default: 0] += 1
                return (state.compensationCalls[call.step]!, faults, state.everyCallTwice)
            }
            state.actionCalls[call.step, default: 0] += 1
            return (state.actionCalls[call.step]!, faults, state.everyCallTwice)
        }
        for fault in faults {
            switch (fault.base, call.isCompensation) {
            case (.fail(let n, let retryable), false) where n == number:
                throw InjectedFault(step: call.step, fault: fault.description, isRetryable: retryable)
            case (.hang(let n), false) where n == number:
                try await hangUntilCancelled()
            case (.loseReply(let n), false) where n == number:
                _ = try await body()
                throw InjectedFault(step: call.step, fault: fault.description, isRetryable: true)
            case (.duplicate(let n), false) where n == number:
                _ = try await body()
                return try await body()
            case (.failCompensation(let times), true) where number <= times:
                throw InjectedFault(step: call.step, fault: fault.description, isRetryable: true)
            case (.failCompensationForGood, true):
                throw InjectedFault(step: call.step, fault: fault.description, isRetryable: false)
            default:
                continue
            }
        }
        if twice { _ = try await body() }
        return try await body()
    }

    private func hangUntilCancelled() async throws {
        // Never set: the wait ends only when the task is cancelled, with CancellationError.
        try await OneShot<Void>().value()
    }
}
