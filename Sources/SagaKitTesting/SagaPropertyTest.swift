import Foundation
import Logging
public import PropertyBased
public import SagaKit
import Synchronization

/// Property-based failure injection for your own saga: generated fault plans and concurrent load
/// over your definition, run in fresh worlds, checked against the built-in invariants and yours.
///
/// Each case is a ``SagaFaultPlan``: one to ``maxSagas`` sagas of your definition started at once
/// over one world (so they compete for the participants' shared state), with inputs from your
/// generator, faults from the ``ParticipantFault`` vocabulary in their participant calls, and
/// perhaps a crash at one saga's durable point. ``check(_:)`` builds a fresh world with your
/// closure, runs the sagas on an engine that dies at the crash, recovers them with a new engine on
/// the same log, waits for every saga to finish, and returns every invariant that did not hold.
///
/// ```swift
/// @Test func placeOrderKeepsItsInvariants() async throws {
///     let test = try await SagaPropertyTest { try await shopWorld() }
///     let orders = Gen.int(in: 1...4).map { PlaceOrder(user: 1, product: "tea", quantity: $0) }
///     await propertyCheck(count: test.count, input: test.plans(inputs: orders)) { plan in
///         let violations = try await test.check(plan)
///         #expect(violations.isEmpty, "\(plan)\n\(violations)")
///     }
/// }
/// ```
///
/// A failing property is shrunk by `propertyCheck` to the smallest failing plan it finds, which it
/// prints with the `.fixedSeed(…)` trait that replays it as a one-line change to the test. The same
/// seed always gives the same plans. With one saga the run is deterministic too (the clock is an
/// ``ImmediateSagaClock``); several sagas interleave as the runtime schedules them, so a failure that
/// needs a rare interleaving may take more than one replay.
public struct SagaPropertyTest<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// A step as plans see it: read from the definition.
    public struct Step: Hashable, Sendable {
        /// The step's name.
        public var name: String
        /// Whether it has a compensation (only then are compensation faults generated).
        public var isCompensatable: Bool
    }

    /// Builds a fresh world for one case.
    public var makeWorld: @Sendable () async throws -> SagaWorld<Input, Output>
    /// The steps of the definition, in order (parallel groups flattened).
    public let steps: [Step]
    /// The most sagas a plan runs at once. Default 3.
    public var maxSagas: Int = 3
    /// The latest durable point a generated crash is placed at. Default 24.
    public var maxCrashPoint: Int = 24
    /// Opens the log for case `index`; called twice per case (before and after the crash), it must
    /// open the same log both times. `nil` (the default): an in-memory log.
    public var makeStore: (@Sendable (_ index: Int) throws -> any SagaStore)?
    /// Closes a log opened by ``makeStore`` before it is opened again. Default: nothing.
    public var closeStore: @Sendable (any SagaStore) async throws -> Void = { _ in }
    /// The engine configuration; the test adds its hooks. Default: an ``ImmediateSagaClock``
    /// (backoff costs nothing), seeded jitter, no log-write retries.
    public var configuration: SagaEngine.Configuration
    /// The invariants every saga must satisfy, besides the world's. Default ``SagaInvariant/builtIn``.
    public var invariants: [SagaInvariant] = SagaInvariant.builtIn
    /// How long one plan may take, on the wall clock, before ``check(_:)`` stops it and reports that
    /// it hangs (with the plan, so the hang can be replayed). Default 60 seconds: a plan takes
    /// milliseconds, so only a saga or engine that never finishes reaches it.
    public var planTimeLimit: Duration = .seconds(60)
    /// Simpler versions of an input, tried by ``shrunk(_:attempts:)``. Default: none.
    ///
    /// ```swift
    /// test.simplerInputs = { order in order.quantity > 1 ? [PlaceOrder(user: order.user, product: order.product, quantity: 1)] : [] }
    /// ```
    public var simplerInputs: @Sendable (Input) -> [Input] = { _ in [] }

    /// Numbers the cases, so that each opens its own log.
    private let cases = CaseCounter()

    /// How many cases a property should run: `SAGAKIT_PROPERTY_CASES` from the environment (for a
    /// soak), else 1,000.
    public static var defaultCount: Int {
        ProcessInfo.processInfo.environment["SAGAKIT_PROPERTY_CASES"].flatMap(Int.init) ?? 1_000
    }

    /// The number of cases to pass to `propertyCheck`. Default ``defaultCount``.
    public var count: Int = Self.defaultCount

    /// Creates a test over the worlds `makeWorld` builds; builds one to read the definition's steps.
    ///
    /// - Throws: What `makeWorld` throws.
    public init(makeWorld: @escaping @Sendable () async throws -> SagaWorld<Input, Output>) async throws {
        self.makeWorld = makeWorld
        let definition = try await makeWorld().definition
        self.steps = Self.steps(of: definition)
        var configuration = SagaEngine.Configuration(clock: ImmediateSagaClock(), jitterSeed: 11)
        configuration.logWriteRetry = .noRetries
        self.configuration = configuration
    }

    static func steps(of definition: SagaDefinition<Input, Output>) -> [Step] {
        definition.elements.flatMap(\.steps).map { Step(name: $0.name, isCompensatable: $0.isCompensatable) }
    }

    // MARK: Generating plans

    /// Plans of 1 to ``maxSagas`` concurrent sagas with inputs from `inputs`, for `propertyCheck`.
    ///
    /// Each step of each saga gets an action fault or none (a retryable failure of call 1 or 2, a
    /// business refusal of call 1, a lost reply, a duplicated delivery) and, if it is compensatable,
    /// a compensation fault or none (failing once or twice, or for good); half the plans crash at a
    /// durable point of one saga. Everything shrinks towards fewer sagas, no faults and no crash.
    public func plans<Shrinks: SendableSequenceType>(inputs: Generator<Input, Shrinks>) -> Generator<
        SagaFaultPlan<Input>, some SendableSequenceType
    > {
        let steps = self.steps
        let gene = zip(
            zip(Gen.int(in: 1...4), Gen.int(in: 1...2)).optional(valueRate: 0.35),
            Gen.int(in: 1...3).optional(valueRate: 0.15))
        let saga = zip(inputs, gene.array(of: steps.count))
        return zip(
            saga.array(of: 1...max(1, maxSagas)),
            zip(Gen.int(in: 0...max(0, maxSagas - 1)), Gen.int(in: 0...max(0, maxCrashPoint))).optional(
                valueRate: 0.5)
        ).map { input in
            let sagas = input.0.map { input, genes in
                SagaFaultPlan.Saga(input: input, faults: Self.faults(steps: steps, genes: genes))
            }
            let crash = input.1.map { SagaFaultPlan<Input>.Crash(saga: $0.0 % sagas.count, point: $0.1) }
            return SagaFaultPlan(sagas: sagas, crash: crash)
        }
    }

    static func faults(steps: [Step], genes: [((Int, Int)?, Int?)]) -> [SagaFaultPlan<Input>.Fault] {
        var faults: [SagaFaultPlan<Input>.Fault] = []
        for (step, gene) in zip(steps, genes) {
            if let (kind, call) = gene.0 {
                let fault: ParticipantFault
                switch kind {
                case 1: fault = .fail(call: call)
                // A business refusal comes first or not at all: an idempotent participant that applied
                // a key answers a repeat with its result, not with a refusal.
                case 2: fault = .fail(call: 1, retryable: false)
                case 3: fault = .loseReply(call: call)
                default: fault = .duplicate(call: call)
                }
                faults.append(SagaFaultPlan.Fault(step: step.name, fault: fault))
            }
            if step.isCompensatable, let kind = gene.1 {
                let fault: ParticipantFault = kind == 3 ? .failCompensationForGood : .failCompensation(times: kind)
                faults.append(SagaFaultPlan.Fault(step: step.name, fault: fault))
            }
        }
        return faults
    }

    // MARK: Shrinking

    /// The smallest plan, step by step smaller than `plan`, that still breaks an invariant: fewer
    /// sagas, fewer faults, simpler inputs (``simplerInputs``), an earlier crash or none.
    ///
    /// `propertyCheck` shrinks through the generator, which cannot keep a crash on the same saga when
    /// a saga before it is removed; this walks ``SagaFaultPlan/smallerCandidates(simplerInputs:crashPoints:)``
    /// and keeps the first smaller plan that fails, until none does. A candidate counts as failing
    /// when any of `attempts` runs of it fails (several sagas interleave differently from run to run).
    ///
    /// ```swift
    /// let smallest = try await test.shrunk(failingPlan)
    /// print(smallest)  // saga 0: … with faults {create-order: fail call 1 for good}; crash: saga 0, at its durable point 12
    /// ```
    public func shrunk(_ plan: SagaFaultPlan<Input>, attempts: Int = 2) async throws -> SagaFaultPlan<Input> {
        var current = plan
        search: while true {
            for candidate in current.smallerCandidates(simplerInputs: simplerInputs, crashPoints: maxCrashPoint) {
                for _ in 0..<max(1, attempts) where try await !check(candidate).isEmpty {
                    current = candidate
                    continue search
                }
            }
            return current
        }
    }

    // MARK: Checking a plan

    /// Runs one plan in a fresh world and returns every invariant that did not hold.
    ///
    /// - Throws: ``ParticipantFaultsError`` when the plan names a step the world's definition does not
    ///   have; errors of `makeWorld`, ``makeStore`` and ``closeStore``.
    public func check(_ plan: SagaFaultPlan<Input>) async throws -> [InvariantViolation] {
        // The plan runs in a task of its own, so that even a hang that ignores cancellation is
        // reported (and left behind) rather than hanging the property.
        let answer = OneShot<[InvariantViolation]?>()
        let work = Task {
            do {
                answer.set(.success(try await self.checkWithoutLimit(plan)))
            } catch {
                answer.set(.failure(error))
            }
        }
        let limit = planTimeLimit
        let watchdog = Task {
            try? await Task.sleep(for: limit)
            answer.set(.success(nil))
        }
        let violations = try await answer.value()
        watchdog.cancel()
        guard let violations else {
            work.cancel()
            return [
                InvariantViolation(
                    sagaID: "(plan)", invariant: "finishes within planTimeLimit",
                    message: "the plan did not finish within \(limit): a saga or the engine hangs", crashPoint: nil)
            ]
        }
        return violations
    }

    func checkWithoutLimit(_ plan: SagaFaultPlan<Input>) async throws -> [InvariantViolation] {
        let world = try await makeWorld()
        let definition = world.definition
        let ids = plan.sagas.indices.map { "property-saga-\($0)" }
        let faults = try PlannedFaults(plan, ids: ids, definition: definition)
        let index = cases.next()
        let memory = makeStore == nil ? InMemorySagaStore() : nil
        func open() throws -> any SagaStore { try memory ?? makeStore!(index) }
        let trace = SagaTrace()
        let logger = Logger(label: "sagakit.property", factory: { _ in SwiftLogNoOpLogHandler() })

        let crashing = FaultPointRecorder(
            trace: trace, crashAt: plan.crash?.point, inSaga: plan.crash.map { ids[$0.saga] })
        let first = try open()
        let dying = SagaEngine(
            store: first, configuration: crashing.configure(faults.configure(configuration)), logger: logger)
        try await withRunningSagaEngine(dying) { engine in
            await withTaskGroup(of: Void.self) { group in
                for (saga, id) in zip(plan.sagas, ids) {
                    group.addTask { _ = try? await engine.execute(definition, id: id, input: saga.input) }
                }
            }
        }
        if memory == nil { try await closeStore(first) }

        // After the crash: a fresh engine that records but never crashes, and callers that retry.
        let second = try open()
        let observer = FaultPointRecorder(trace: trace)
        let recovering = SagaEngine(
            store: second, configuration: observer.configure(faults.configure(configuration)), logger: logger)
        var outcomes: [SagaPropertyOutcome<Input, Output>]
        var violations: [InvariantViolation] = []
        do {
            let finished = try await withRunningSagaEngine(recovering) { engine in
                try engine.register(definition)
                return await withTaskGroup(of: (Int, Result<SagaOutcome<Output>, any Error>).self) { group in
                    for (index, (saga, id)) in zip(plan.sagas, ids).enumerated() {
                        group.addTask {
                            do {
                                return (
                                    index, .success(try await engine.execute(definition, id: id, input: saga.input))
                                )
                            } catch {
                                return (index, .failure(error))
                            }
                        }
                    }
                    var finished: [Int: Result<SagaOutcome<Output>, any Error>] = [:]
                    for await (index, result) in group { finished[index] = result }
                    return finished
                }
            }
            outcomes = plan.sagas.enumerated().map { index, saga in
                SagaPropertyOutcome(sagaID: ids[index], input: saga.input, outcome: try? finished[index]?.get())
            }
            for (index, result) in finished.sorted(by: { $0.key < $1.key }) {
                if case .failure(let error) = result {
                    violations.append(
                        InvariantViolation(
                            sagaID: ids[index], invariant: "runs to the end after recovery", message: "\(error)",
                            crashPoint: crashing.crashed))
                }
            }
        } catch {
            if memory == nil { try? await closeStore(second) }
            throw error
        }
        let store = second
        let compensatable = Set(steps.filter(\.isCompensatable).map(\.name))
        let compensatingUnknown = Set(
            definition.elements.flatMap(\.steps).filter { $0.options.onUnknownOutcome == .compensate }.map(\.name))
        for index in outcomes.indices {
            let id = ids[index]
            let summary = try await store.summary(of: id)
            outcomes[index].status = summary?.status
            let report = SagaRunReport(
                sagaID: id, summary: summary, records: try await store.records(of: id), events: trace.events(of: id),
                compensatableSteps: compensatable, stepsCompensatingUnknownOutcomes: compensatingUnknown,
                crashPoint: crashing.crashed, plan: definition.plan)
            for invariant in invariants {
                if let message = try await invariant.evaluate(report) {
                    violations.append(
                        InvariantViolation(
                            sagaID: id, invariant: invariant.name, message: message, crashPoint: crashing.crashed))
                }
            }
        }
        if memory == nil { try await closeStore(second) }
        for invariant in world.invariants {
            if let message = try await invariant.check(outcomes) {
                violations.append(
                    InvariantViolation(
                        sagaID: "(world)", invariant: invariant.name, message: message, crashPoint: crashing.crashed))
            }
        }
        return violations
    }
}

extension SagaPropertyOutcome {
    init(sagaID: String, input: Input, outcome: SagaOutcome<Output>?) {
        self.init(sagaID: sagaID, input: input, outcome: outcome, status: nil)
    }
}

/// A plan's faults, counted per saga: each saga's calls meet only its own faults.
struct PlannedFaults: Sendable {
    let bySaga: [String: ParticipantFaults]

    init<Input, Output>(_ plan: SagaFaultPlan<Input>, ids: [String], definition: SagaDefinition<Input, Output>)
        throws(ParticipantFaultsError)
    {
        var bySaga: [String: ParticipantFaults] = [:]
        for (saga, id) in zip(plan.sagas, ids) {
            let faults = ParticipantFaults()
            for fault in saga.faults { faults.inject(fault.fault, into: fault.step) }
            try faults.verify(against: definition)
            bySaga[id] = faults
        }
        self.bySaga = bySaga
    }

    func configure(_ configuration: SagaEngine.Configuration) -> SagaEngine.Configuration {
        var configuration = configuration
        let previous = configuration.interceptor
        let bySaga = self.bySaga
        configuration.interceptor = { call, body in
            guard let faults = bySaga[call.sagaID] else {
                if let previous { return try await previous(call, body) }
                return try await body()
            }
            return try await faults.intercept(call) {
                if let previous { return try await previous(call, body) }
                return try await body()
            }
        }
        return configuration
    }
}

/// Numbers the cases of a test.
final class CaseCounter: Sendable {
    private let count = Atomic<Int>(0)

    func next() -> Int { count.add(1, ordering: .relaxed).newValue }
}
