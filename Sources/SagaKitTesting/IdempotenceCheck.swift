import Logging
public import SagaKit

/// Runs a saga twice in fresh worlds, once normally and once with every participant call (actions
/// and compensations) delivered twice, and compares the participants' state: idempotent
/// participants end the same.
///
/// ```swift
/// let mismatch = try await IdempotenceCheck(snapshot: { try await products.stock("tea") }) {
///     SagaScenario(definition: placeOrder(products, orders), input: order)
/// }.run()
/// #expect(mismatch == nil)
/// ```
public struct IdempotenceCheck<Input: Codable & Sendable, Output: Codable & Sendable, State: Equatable & Sendable>:
    Sendable
{
    /// Builds a fresh world; called twice.
    public var makeScenario: @Sendable () async throws -> SagaScenario<Input, Output>
    /// Reads the world's state after a run.
    public var snapshot: @Sendable () async throws -> State

    /// Creates a check. `snapshot` reads the world the most recent `makeScenario` built.
    public init(
        snapshot: @escaping @Sendable () async throws -> State,
        makeScenario: @escaping @Sendable () async throws -> SagaScenario<Input, Output>
    ) {
        self.snapshot = snapshot
        self.makeScenario = makeScenario
    }

    /// A difference between the single and the double run.
    public struct Mismatch: Sendable, CustomStringConvertible {
        /// State after each call was delivered once.
        public var single: State
        /// State after each call was delivered twice.
        public var double: State
        /// How the saga ended each time.
        public var outcomes: (single: SagaStatus, double: SagaStatus)
        public var description: String {
            "delivering every call twice changed the outcome or state: once \(outcomes.single) \(single), twice \(outcomes.double) \(double)"
        }
    }

    /// Runs both and returns the mismatch, or `nil` when the participants are idempotent.
    public func run() async throws -> Mismatch? {
        let (singleStatus, single) = try await runOnce(twice: false)
        let (doubleStatus, double) = try await runOnce(twice: true)
        if single == double, singleStatus == doubleStatus { return nil }
        return Mismatch(single: single, double: double, outcomes: (singleStatus, doubleStatus))
    }

    private func runOnce(twice: Bool) async throws -> (SagaStatus, State) {
        let scenario = try await makeScenario()
        if twice { scenario.faults.deliverEveryCallTwice() }
        var configuration = SagaEngine.Configuration(clock: ImmediateSagaClock(), jitterSeed: 3)
        configuration = scenario.faults.configure(configuration)
        let engine = SagaEngine(
            store: InMemorySagaStore(), configuration: configuration,
            logger: Logger(label: "sagakit.idempotence", factory: { _ in SwiftLogNoOpLogHandler() }))
        let outcome = try await withRunningSagaEngine(engine) { engine in
            try await engine.run(scenario.definition, id: "idempotence-check", input: scenario.input)
        }
        return (outcome.status, try await snapshot())
    }
}
