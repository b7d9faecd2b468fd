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
///
/// `snapshot` reads the world the most recent `makeScenario` built, so keep a reference to it where
/// both closures see it, and return what must not change when a call is delivered twice:
///
/// ```swift
/// let latest = Mutex<Products?>(nil)  // the world the last scenario built
/// let check = IdempotenceCheck(snapshot: { await latest.withLock { $0! }.stock }, sagaID: "order-7") {
///     let products = Products()
///     latest.withLock { $0 = products }
///     return SagaScenario(definition: placeOrder(products, Orders()), input: order)
/// }
/// if let mismatch = try await check.run() { Issue.record("\(mismatch)") }
/// ```
///
/// Before each run the check verifies the scenario's faults against its definition
/// (``ParticipantFaults/verify(against:)``), so a fault injected into a step the saga does not have
/// fails the check with a ``ParticipantFaultsError``.
public struct IdempotenceCheck<Input: Codable & Sendable, Output: Codable & Sendable, State: Equatable & Sendable>:
    Sendable
{
    /// Builds a fresh world; called twice.
    public var makeScenario: @Sendable () async throws -> SagaScenario<Input, Output>
    /// Reads the world's state after a run.
    public var snapshot: @Sendable () async throws -> State
    /// The id of the saga in both runs. Default `"idempotence-check"`.
    ///
    /// Participants see it in every idempotency key (`<saga id>/<step name>`). Set it when a
    /// participant depends on the id, for example one that accepts only keys of its own orders:
    ///
    /// ```swift
    /// var check = IdempotenceCheck(snapshot: snapshot, makeScenario: makeScenario)
    /// check.sagaID = "order-7"  // keys are "order-7/deduct-stock", "order-7/create-order"
    /// ```
    public var sagaID: String

    /// Creates a check. `snapshot` reads the world the most recent `makeScenario` built.
    ///
    /// - Parameters:
    ///   - snapshot: Reads the state to compare after each run.
    ///   - sagaID: The id of the saga in both runs; see ``sagaID``.
    ///   - makeScenario: Builds a fresh world, definition and faults; called once per run.
    ///
    /// ```swift
    /// let check = IdempotenceCheck(snapshot: { await latest.withLock { $0! }.stock }, sagaID: "order-7") {
    ///     try await makeWorld()  // fresh participants, kept in `latest`, and their SagaScenario
    /// }
    /// ```
    public init(
        snapshot: @escaping @Sendable () async throws -> State,
        sagaID: String = "idempotence-check",
        makeScenario: @escaping @Sendable () async throws -> SagaScenario<Input, Output>
    ) {
        self.snapshot = snapshot
        self.sagaID = sagaID
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
    ///
    /// ```swift
    /// #expect(try await check.run() == nil)
    /// ```
    ///
    /// - Throws: ``ParticipantFaultsError`` when the scenario's faults name a step its definition does
    ///   not have; errors of the saga run, `makeScenario` and `snapshot`.
    public func run() async throws -> Mismatch? {
        let (singleStatus, single) = try await runOnce(twice: false)
        let (doubleStatus, double) = try await runOnce(twice: true)
        if single == double, singleStatus == doubleStatus { return nil }
        return Mismatch(single: single, double: double, outcomes: (singleStatus, doubleStatus))
    }

    private func runOnce(twice: Bool) async throws -> (SagaStatus, State) {
        let scenario = try await makeScenario()
        try scenario.faults.verify(against: scenario.definition)
        if twice { scenario.faults.deliverEveryCallTwice() }
        var configuration = SagaEngine.Configuration(clock: ImmediateSagaClock(), jitterSeed: 3)
        configuration = scenario.faults.configure(configuration)
        let engine = SagaEngine(
            store: InMemorySagaStore(), configuration: configuration,
            logger: Logger(label: "sagakit.idempotence", factory: { _ in SwiftLogNoOpLogHandler() }))
        let outcome = try await withRunningSagaEngine(engine) { engine in
            try await engine.execute(scenario.definition, id: sagaID, input: scenario.input)
        }
        return (outcome.status, try await snapshot())
    }
}
