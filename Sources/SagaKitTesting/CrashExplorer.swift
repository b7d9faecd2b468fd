import Foundation
import Logging
public import SagaKit

/// One fresh world to run a saga in: its definition (bound to fresh participants), its input, and
/// the invariants that check those participants.
///
/// ```swift
/// let scenario = SagaScenario(definition: placeOrder(products, orders), input: order, invariants: [stockAddsUp])
/// ```
public struct SagaScenario<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// The saga to run.
    public var definition: SagaDefinition<Input, Output>
    /// Its input.
    public var input: Input
    /// Checks of the participants' state, on top of the built-in invariants.
    public var invariants: [SagaInvariant]
    /// Faults injected into the participant calls.
    public var faults: ParticipantFaults

    /// Creates a scenario.
    public init(
        definition: SagaDefinition<Input, Output>,
        input: Input,
        invariants: [SagaInvariant] = [],
        faults: ParticipantFaults = ParticipantFaults()
    ) {
        self.definition = definition
        self.input = input
        self.invariants = invariants
        self.faults = faults
    }
}

/// What a crash exploration found.
public struct CrashExplorationReport: Sendable, CustomStringConvertible {
    /// Durable points in the uninterrupted run: log writes and participant calls, before and after.
    public var points: [String]
    /// Crash points explored (each in a fresh world and a fresh log).
    public var explored: Int
    /// Invariants that did not hold, with the crash point of their run.
    public var violations: [InvariantViolation]
    /// How each explored run ended, by status.
    public var outcomes: [SagaStatus: Int]

    public var description: String {
        "explored \(explored) crash points; outcomes \(outcomes.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")); \(violations.count) violations"
            + violations.map { "\n  - \($0)" }.joined()
    }
}

/// Crashes a saga at every durable point, recovers it with a fresh engine on the same log, runs it
/// to the end and checks invariants.
///
/// The points are those an uninterrupted run reaches: before and after each log write, and before
/// and after each participant call. For each point the explorer builds a fresh world with
/// `makeScenario`, opens a fresh log with `makeStore`, runs the saga with an engine that dies at the
/// point, closes the log, then starts a new engine on the same log and attaches to the saga with the
/// same id, as a caller retrying would. Participants keep their state across the crash; the engine
/// keeps nothing.
///
/// ```swift
/// let report = try await CrashExplorer(makeStore: { try SQLiteSagaStore(path: directory.path + "/\($0).sqlite") }) {
///     SagaScenario(definition: placeOrder(ProductService(), OrderService()), input: order)
/// }.explore()
/// #expect(report.violations.isEmpty, "\(report)")
/// ```
///
/// Every run checks the scenario's ``SagaScenario/faults`` against its definition first
/// (``ParticipantFaults/verify(against:)``): a fault injected into a step the saga does not have
/// makes ``explore()`` throw a ``ParticipantFaultsError`` naming it, rather than explore a saga the
/// fault never touches.
public struct CrashExplorer<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// Opens the log for exploration `index`; called twice per point (before and after the crash).
    public var makeStore: @Sendable (_ index: Int) throws -> any SagaStore
    /// Closes a log opened by `makeStore` before it is opened again. Default: nothing.
    public var closeStore: @Sendable (any SagaStore) async throws -> Void
    /// Builds a fresh world for one run.
    public var makeScenario: @Sendable () async throws -> SagaScenario<Input, Output>
    /// The engine configuration; the explorer adds its hooks. Default: an ``ImmediateSagaClock``
    /// (backoff costs nothing), seeded jitter, no log-write retries.
    public var configuration: SagaEngine.Configuration
    /// The invariants every run must satisfy besides the scenario's. Default ``SagaInvariant/builtIn``.
    public var invariants: [SagaInvariant]
    /// The saga id used for every run. Default `"explored-saga"`.
    ///
    /// Participants see it in every idempotency key (`<saga id>/<step name>`), and invariants in
    /// ``SagaRunReport/sagaID``. Set it when a participant or an invariant depends on the id, for
    /// example a service that derives an order number from the key:
    ///
    /// ```swift
    /// let explorer = CrashExplorer(makeStore: makeStore, closeStore: closeStore, sagaID: "order-42") {
    ///     SagaScenario(definition: placeOrder(products, orders), input: order)
    /// }
    /// // every key the participants see starts with "order-42/"
    /// ```
    public var sagaID: String

    /// Creates an explorer.
    ///
    /// - Parameters:
    ///   - makeStore: Opens the log for exploration `index`; called twice per point, so it must open
    ///     the same log both times (for example a file named after `index`).
    ///   - closeStore: Closes a log before it is opened again; a SQLite store must be closed before a
    ///     new store opens its file.
    ///   - sagaID: The id of the saga in every run; see ``sagaID``.
    ///   - makeScenario: Builds a fresh world, definition and faults for one run.
    ///
    /// ```swift
    /// let explorer = CrashExplorer<PlaceOrderInput, NoOutput>(
    ///     makeStore: { try SQLiteSagaStore(path: directory.appendingPathComponent("\($0).sqlite").path) },
    ///     closeStore: { try await ($0 as? SQLiteSagaStore)?.close() },
    ///     sagaID: "order-42"
    /// ) {
    ///     SagaScenario(definition: placeOrder(Products(), Orders()), input: PlaceOrderInput(product: "tea", quantity: 2))
    /// }
    /// ```
    public init(
        makeStore: @escaping @Sendable (_ index: Int) throws -> any SagaStore,
        closeStore: @escaping @Sendable (any SagaStore) async throws -> Void = { _ in },
        sagaID: String = "explored-saga",
        makeScenario: @escaping @Sendable () async throws -> SagaScenario<Input, Output>
    ) {
        self.makeStore = makeStore
        self.closeStore = closeStore
        self.makeScenario = makeScenario
        self.sagaID = sagaID
        var configuration = SagaEngine.Configuration(clock: ImmediateSagaClock(), jitterSeed: 1)
        configuration.logWriteRetry = .noRetries
        self.configuration = configuration
        self.invariants = SagaInvariant.builtIn
    }

    /// Runs the uninterrupted saga once to find its durable points, then crashes at each.
    ///
    /// ```swift
    /// let report = try await explorer.explore()
    /// #expect(report.violations.isEmpty, "\(report)")
    /// ```
    ///
    /// - Throws: ``ParticipantFaultsError`` when the scenario's faults name a step its definition does
    ///   not have; ``InvariantViolation`` when the saga does not finish without a crash; errors of
    ///   `makeStore`, `closeStore` and `makeScenario`.
    public func explore() async throws -> CrashExplorationReport {
        let dry = try await run(index: 0, crashAt: nil)
        guard dry.uninterrupted else {
            throw InvariantViolation(
                sagaID: sagaID, invariant: "the uninterrupted run finishes",
                message:
                    "without a crash the saga did not settle in its first engine (\(dry.violations.map(\.message)))",
                crashPoint: nil)
        }
        var report = CrashExplorationReport(points: dry.points, explored: 0, violations: dry.violations, outcomes: [:])
        for point in dry.points.indices {
            let result = try await run(index: point + 1, crashAt: point)
            report.explored += 1
            report.violations += result.violations
            if let status = result.status { report.outcomes[status, default: 0] += 1 }
        }
        return report
    }

    struct RunResult {
        var points: [String]
        var violations: [InvariantViolation]
        var status: SagaStatus?
        /// Whether the first engine settled the saga itself.
        var uninterrupted = false
    }

    func run(index: Int, crashAt: Int?) async throws -> RunResult {
        let scenario = try await makeScenario()
        try scenario.faults.verify(against: scenario.definition)
        let trace = SagaTrace()
        let logger = Logger(label: "sagakit.crash-explorer", factory: { _ in SwiftLogNoOpLogHandler() })
        let recorder = FaultPointRecorder(trace: trace, crashAt: crashAt)
        let first = try makeStore(index)
        let dying = SagaEngine(
            store: first, configuration: recorder.configure(scenario.faults.configure(configuration)), logger: logger)
        let firstOutcome = try? await withRunningSagaEngine(dying) { engine in
            try await engine.execute(scenario.definition, id: sagaID, input: scenario.input)
        }
        try await closeStore(first)

        // After the crash: a fresh engine that records but never crashes, and a caller that retries.
        let second = try makeStore(index)
        let observer = FaultPointRecorder(trace: trace)
        let recovering = SagaEngine(
            store: second, configuration: observer.configure(scenario.faults.configure(configuration)), logger: logger)
        let summary: SagaSummary?
        let records: [SagaLogRecord]
        do {
            (summary, records) = try await withRunningSagaEngine(recovering) { engine in
                try engine.register(scenario.definition)
                _ = try await engine.execute(scenario.definition, id: sagaID, input: scenario.input)
                return (try await engine.summary(of: sagaID), try await engine.history(of: sagaID))
            }
        } catch {
            try await closeStore(second)
            let violation = InvariantViolation(
                sagaID: sagaID, invariant: "runs to the end after recovery", message: "\(error)",
                crashPoint: recorder.crashed)
            return RunResult(points: recorder.points, violations: [violation], status: nil)
        }
        try await closeStore(second)
        let report = SagaRunReport(
            sagaID: sagaID, summary: summary, records: records, events: trace.events(of: sagaID),
            compensatableSteps: Set(
                scenario.definition.elements.flatMap(\.steps).filter(\.isCompensatable).map(\.name)),
            stepsCompensatingUnknownOutcomes: Set(
                scenario.definition.elements.flatMap(\.steps).filter { $0.options.onUnknownOutcome == .compensate }.map(
                    \.name)),
            crashPoint: recorder.crashed)
        var violations: [InvariantViolation] = []
        for invariant in invariants + scenario.invariants {
            if let message = try await invariant.evaluate(report) {
                violations.append(
                    InvariantViolation(
                        sagaID: sagaID, invariant: invariant.name, message: message, crashPoint: recorder.crashed))
            }
        }
        return RunResult(
            points: recorder.points, violations: violations, status: summary?.status, uninterrupted: firstOutcome != nil
        )
    }
}
