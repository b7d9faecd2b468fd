import Logging
public import SagaKit
import Synchronization

/// Runs a ``SagaSchedule`` against fake idempotent participants: its sagas concurrently on one
/// engine that dies at the schedule's crash point, then a new engine on the same log that recovers
/// them while callers attach by id. Returns every invariant that did not hold.
///
/// Besides the built-in invariants it checks the participants' ledger: a completed saga kept every
/// step's effect; a compensated saga kept none (compensatable steps undone, pivot and retriable
/// steps never applied).
public struct SagaScheduleRunner: Sendable {
    /// The engine configuration. Default: an ``ImmediateSagaClock``, seeded jitter, no log-write retries.
    public var configuration: SagaEngine.Configuration

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
    public func run(_ schedule: SagaSchedule) async throws -> [InvariantViolation] {
        let store = InMemorySagaStore()
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
        let first = SagaEngine(
            store: store, configuration: crashing.configure(faults.configure(configuration)), logger: logger)
        try await withRunningSagaEngine(first) { engine in
            await withTaskGroup(of: Void.self) { group in
                for (index, definition) in definitions.enumerated() {
                    group.addTask { _ = try? await engine.run(definition, id: ids[index], input: Input(saga: index)) }
                }
            }
        }

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
                            _ = try await engine.run(definition, id: ids[index], input: Input(saga: index))
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
                crashPoint: crashing.crashed)
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
                return .retriable(name, options: StepOptions(retry: .exponential(maxAttempts: 20)), action: action)
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
