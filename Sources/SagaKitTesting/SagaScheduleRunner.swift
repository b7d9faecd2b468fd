import Logging
public import SagaKit
import Synchronization

/// Runs a ``SagaSchedule`` against fake idempotent participants: its sagas concurrently on one
/// engine that dies at the schedule's crash point, then a new engine on the same log that recovers
/// them while callers attach by id. Returns every invariant that did not hold.
///
/// Besides the built-in invariants it checks the participants' ledger: a completed saga kept every
/// step's effect; a compensated saga kept none (compensatable steps undone, pivot and retryable
/// steps never applied).
///
/// The log is in memory unless ``makeLog`` opens one on a real store:
///
/// ```swift
/// var runner = SagaScheduleRunner()
/// runner.makeLog = {
///     let directory = try TemporaryDirectory(prefix: "schedules")
///     return SagaScheduleRunner.Log(
///         open: { try SQLiteSagaStore(path: directory.path(of: "sagas.sqlite")) },
///         close: { try await ($0 as? SQLiteSagaStore)?.close() },
///         remove: { try directory.remove() })
/// }
/// let violations = try await runner.run(schedule)
/// ```
public struct SagaScheduleRunner: Sendable {
    /// A saga log of one run on a real store: how to open it, as each engine of the run does, how to
    /// close a store opened on it, and how to remove it once the run is checked.
    ///
    /// ``SagaScheduleRunner/run(_:)`` opens the log for the engine that dies and closes that store when
    /// the engine has stopped, then opens it again for the engine that recovers, as a restarted process
    /// would; it reads the checks through that second store, closes it and removes the log. Both
    /// openings must reach the same log, and every ``SagaScheduleRunner/makeLog`` call a new one (the
    /// sagas of every run have the same ids).
    ///
    /// The runner wraps each opened store in one that yields before every call (as it does the
    /// in-memory log), so the engines see a store that is not a `SharedSagaStore`: they do not sweep
    /// (with the ``ImmediateSagaClock`` a sweep would never pause) and do not check a lease, while the
    /// store's own fencing still applies to every append.
    public struct Log: Sendable {
        /// Opens the log; called twice per run.
        public var open: @Sendable () async throws -> any SagaStore
        /// Closes a store ``open`` returned, after the engine using it has stopped. Default: nothing.
        public var close: @Sendable (any SagaStore) async throws -> Void
        /// Removes the log, after the run's checks (also when the run threw). Default: nothing.
        public var remove: @Sendable () async throws -> Void

        /// Creates a log from its three operations.
        ///
        /// ```swift
        /// let log = SagaScheduleRunner.Log(open: { store }, close: { _ in }, remove: {})
        /// ```
        public init(
            open: @escaping @Sendable () async throws -> any SagaStore,
            close: @escaping @Sendable (any SagaStore) async throws -> Void = { _ in },
            remove: @escaping @Sendable () async throws -> Void = {}
        ) {
            self.open = open
            self.close = close
            self.remove = remove
        }
    }

    /// The engine configuration. Default: an ``ImmediateSagaClock``, seeded jitter, no log-write retries.
    public var configuration: SagaEngine.Configuration
    /// Makes the log of one run on a real store (called once per ``run(_:)``); `nil` (the default): a
    /// new in-memory log per run. See ``Log``.
    public var makeLog: (@Sendable () async throws -> Log)?

    /// Creates a runner.
    public init() {
        var configuration = SagaEngine.Configuration(clock: ImmediateSagaClock(), jitterSeed: 7)
        configuration.logWriteRetry = .noRetries
        self.configuration = configuration
    }

    /// Whether to run the engine with a deliberately broken behaviour (tests of the kit only).
    package var plantedBug: PlantedBug? {
        get { configuration.plantedBug }
        set { configuration.plantedBug = newValue }
    }

    struct Input: Codable, Sendable {
        var saga: Int
    }

    /// Runs the schedule and checks every saga.
    ///
    /// - Throws: What the engines' registration throws, and the errors of ``makeLog`` and its ``Log``.
    public func run(_ schedule: SagaSchedule) async throws -> [InvariantViolation] {
        guard let makeLog else {
            // Yields around every store call, so that operator actions, callers and runs interleave in
            // more orders than an in-memory store that never suspends would allow.
            let store = InterleavingStore(InMemorySagaStore())
            return try await run(schedule, open: { store }, close: { _ in })
        }
        let log = try await makeLog()
        let violations: [InvariantViolation]
        do {
            violations = try await run(
                schedule, open: { InterleavingStore(try await log.open()) }, close: { try await log.close($0.base) })
        } catch {
            try? await log.remove()
            throw error
        }
        try await log.remove()
        return violations
    }

    /// Runs the schedule on the log `open` opens (once per engine) and checks every saga.
    private func run(
        _ schedule: SagaSchedule, open: () async throws -> InterleavingStore,
        close: (InterleavingStore) async throws -> Void
    ) async throws -> [InvariantViolation] {
        let ledger = EffectLedger()
        let trace = SagaTrace()
        let faults = ParticipantFaults()
        let logger = Logger(label: "sagakit.schedule", factory: { _ in SwiftLogNoOpLogHandler() })
        let definitions = schedule.sagas.enumerated().map { index, shape in
            for fault in shape.faults { faults.inject(fault.fault, into: "saga\(index).\(fault.step)") }
            return Self.definition(index: index, shape: shape, ledger: ledger)
        }
        let ids = definitions.indices.map { "schedule-saga-\($0)" }

        let crashing = FaultPointRecorder(
            trace: trace, crashAt: schedule.crash?.point, inSaga: schedule.crash.map { ids[$0.saga] })
        let triggers = OperationTriggers(schedule.operations, ids: ids)
        let dying = try await open()
        let first = SagaEngine(
            store: dying, configuration: triggers.configure(crashing.configure(faults.configure(configuration))),
            logger: logger)
        do {
            try await runFirst(first, schedule: schedule, definitions: definitions, ids: ids, triggers: triggers)
        } catch {
            try? await close(dying)
            throw error
        }
        try await close(dying)

        let store = try await open()
        do {
            let violations = try await recover(
                schedule, on: store, definitions: definitions, ids: ids, ledger: ledger, trace: trace,
                crashing: crashing, faults: faults, logger: logger)
            try await close(store)
            return violations
        } catch {
            try? await close(store)
            throw error
        }
    }

    /// The first half of a run: the schedule's sagas and operator actions, concurrently, on the engine
    /// that dies at the crash point.
    private func runFirst(
        _ first: SagaEngine, schedule: SagaSchedule, definitions: [SagaDefinition<Input, NoOutput>], ids: [String],
        triggers: OperationTriggers
    ) async throws {
        try await withRunningSagaEngine(first) { engine in
            await withTaskGroup(of: Void.self) { group in
                for (index, definition) in definitions.enumerated() {
                    group.addTask {
                        _ = try? await engine.execute(definition, id: ids[index], input: Input(saga: index))
                        triggers.answered(saga: index)
                    }
                }
                for (index, operation) in schedule.operations.enumerated() {
                    group.addTask {
                        try? await triggers.gate(index).value()
                        // Refusals are expected (the saga is not in a state that allows the action); an
                        // action must never break an invariant, which the checks below see.
                        try? await Self.perform(operation.action, on: ids[operation.saga], engine: engine)
                    }
                }
            }
        }
    }

    /// The second half of a run: a new engine on the log recovers the sagas while callers attach by
    /// id; then every saga is checked.
    private func recover(
        _ schedule: SagaSchedule, on store: InterleavingStore, definitions: [SagaDefinition<Input, NoOutput>],
        ids: [String], ledger: EffectLedger, trace: SagaTrace, crashing: FaultPointRecorder,
        faults: ParticipantFaults, logger: Logger
    ) async throws -> [InvariantViolation] {
        let observer = FaultPointRecorder(trace: trace)
        let second = SagaEngine(
            store: store, configuration: observer.configure(faults.configure(configuration)), logger: logger)
        var violations: [InvariantViolation] = []
        try await withRunningSagaEngine(second) { engine in
            for definition in definitions { try engine.register(definition) }
            let failures = await withTaskGroup(of: InvariantViolation?.self) { group in
                for (index, definition) in definitions.enumerated() {
                    group.addTask {
                        do {
                            _ = try await engine.execute(definition, id: ids[index], input: Input(saga: index))
                            return nil
                        } catch {
                            return InvariantViolation(
                                sagaID: ids[index], invariant: "runs to the end after recovery", message: "\(error)",
                                crashPoint: crashing.crashed)
                        }
                    }
                }
                var failures: [InvariantViolation] = []
                for await failure in group { if let failure { failures.append(failure) } }
                return failures
            }
            violations += failures
        }

        for (index, shape) in schedule.sagas.enumerated() {
            let id = ids[index]
            let summary = try await store.summary(of: id)
            let report = SagaRunReport(
                sagaID: id, summary: summary, records: try await store.records(of: id), events: trace.events(of: id),
                compensatableSteps: Set(
                    shape.steps.filter { $0.kind == .compensatable }.map { "saga\(index).\($0.name)" }),
                stepsCompensatingUnknownOutcomes: Set(
                    shape.steps.filter(\.compensatesUnknownOutcome).map { "saga\(index).\($0.name)" }),
                crashPoint: crashing.crashed, plan: definitions[index].plan)
            for invariant in SagaInvariant.builtIn {
                if let message = try await invariant.evaluate(report) {
                    violations.append(
                        InvariantViolation(
                            sagaID: id, invariant: invariant.name, message: message, crashPoint: crashing.crashed))
                }
            }
            if let message = ledger.check(saga: index, shape: shape, id: id, status: summary?.status) {
                violations.append(
                    InvariantViolation(
                        sagaID: id, invariant: "participants' net effect", message: message,
                        crashPoint: crashing.crashed))
            }
        }
        return violations
    }

    static func perform(_ action: SagaSchedule.Operation.Action, on id: String, engine: SagaEngine) async throws {
        switch action {
        case .retry: try await engine.retry(sagaID: id, note: "schedule retry")
        case .resolve: try await engine.resolve(sagaID: id, note: "schedule resolve")
        case .cancel: try await engine.cancel(sagaID: id, reason: "schedule cancel")
        default: try await engine.resume(sagaID: id)
        }
    }

    static func definition(index: Int, shape: SagaShape, ledger: EffectLedger) -> SagaDefinition<Input, NoOutput> {
        func step(_ spec: SagaShape.Step) -> SagaStep<Input, NoOutput> {
            let name = "saga\(index).\(spec.name)"
            let action: @Sendable (StepContext<Input>) async throws -> NoOutput = { context in
                ledger.apply(context.idempotencyKey)
                return NoOutput()
            }
            switch spec.kind {
            case .compensatable:
                return .compensatable(
                    name, options: StepOptions(onUnknownOutcome: spec.compensatesUnknownOutcome ? .compensate : .retry),
                    action: action, compensation: { _, context in ledger.undo(context.idempotencyKey) })
            case .pivot:
                return .pivot(name, action: action)
            default:
                return .retryable(name, options: StepOptions(retry: .exponential(maxAttempts: 20)), action: action)
            }
        }
        return SagaDefinition("schedule-saga-\(index)") {
            for group in shape.groups {
                if group.count > 1 {
                    Parallel {
                        for spec in group { step(spec) }
                    }
                } else {
                    step(group[0])
                }
            }
        }
    }
}

/// Idempotent fake participants: each key is applied at most once, and an undo of a key (even one
/// never applied) makes later applies of it no-ops.
final class EffectLedger: Sendable {
    enum Effect { case applied, undone }
    private let effects = Mutex<[String: Effect]>([:])

    func apply(_ key: String) {
        effects.withLock { effects in
            if effects[key] == nil { effects[key] = .applied }
        }
    }

    func undo(_ key: String) {
        effects.withLock { $0[key] = .undone }
    }

    func check(saga index: Int, shape: SagaShape, id: String, status: SagaStatus?) -> String? {
        let effects = self.effects.withLock { $0 }
        for spec in shape.steps {
            let key = "\(id)/saga\(index).\(spec.name)"
            let kept = effects[key] == .applied
            switch status {
            case .completed?:
                if !kept {
                    return
                        "the saga completed but step \(spec.name)'s effect is \(effects[key].map { "\($0)" } ?? "missing")"
                }
            case .compensated?:
                if kept { return "the saga compensated but step \(spec.name) (\(spec.kind)) kept its effect" }
            default:
                continue
            }
        }
        return nil
    }
}

/// Opens each operation's gate when its saga passes the operation's durable point, or when the
/// saga's first caller got its answer, whichever comes first.
final class OperationTriggers: Sendable {
    private struct State {
        var points: [String: Int] = [:]
        var opened: Set<Int> = []
    }

    private let operations: [SagaSchedule.Operation]
    private let ids: [String]
    private let gates: [OneShot<Void>]
    private let state = Mutex(State())

    init(_ operations: [SagaSchedule.Operation], ids: [String]) {
        self.operations = operations
        self.ids = ids
        self.gates = operations.map { _ in OneShot<Void>() }
    }

    func gate(_ index: Int) -> OneShot<Void> { gates[index] }

    func configure(_ configuration: SagaEngine.Configuration) -> SagaEngine.Configuration {
        guard !operations.isEmpty else { return configuration }
        var configuration = configuration
        let previous = configuration.faultPoint
        configuration.faultPoint = { [self] point in
            if point.moment != .callFailed { self.passed(point.sagaID) }
            try previous?(point)
        }
        return configuration
    }

    private func passed(_ sagaID: String) {
        let due = state.withLock { state -> [Int] in
            let count = state.points[sagaID, default: 0] + 1
            state.points[sagaID] = count
            let due = operations.indices.filter { index in
                let operation = operations[index]
                guard ids[operation.saga] == sagaID, let point = operation.afterPoint else { return false }
                return point < count && !state.opened.contains(index)
            }
            state.opened.formUnion(due)
            return due
        }
        for index in due { gates[index].succeed() }
    }

    func answered(saga: Int) {
        let due = state.withLock { state -> [Int] in
            let due = operations.indices.filter { operations[$0].saga == saga && !state.opened.contains($0) }
            state.opened.formUnion(due)
            return due
        }
        for index in due { gates[index].succeed() }
    }
}

/// A store that suspends (yields) a random number of times before each call: cheap scheduling noise
/// that widens the windows between an operation's reads and its write.
final class InterleavingStore: SagaStore {
    let base: any SagaStore
    private let random = Mutex(SystemRandomNumberGenerator())

    init(_ base: any SagaStore) { self.base = base }

    private func noise() async {
        let yields = random.withLock { Int.random(in: 0...3, using: &$0) }
        for _ in 0..<yields { await Task.yield() }
    }

    func append(_ append: SagaLogAppend) async throws {
        await noise()
        try await base.append(append)
    }

    func summary(of sagaID: String) async throws -> SagaSummary? {
        await noise()
        return try await base.summary(of: sagaID)
    }

    func records(of sagaID: String) async throws -> [SagaLogRecord] {
        await noise()
        return try await base.records(of: sagaID)
    }

    func sagas(matching query: SagaQuery) async throws -> [SagaSummary] {
        await noise()
        return try await base.sagas(matching: query)
    }

    func activeSagaRecords() async throws -> [SagaLogRecords] { try await base.activeSagaRecords() }
}
