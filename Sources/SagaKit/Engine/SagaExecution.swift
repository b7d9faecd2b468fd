import Foundation
import Logging
import Synchronization
import Tracing

/// Why a saga's execution stopped before it settled.
struct RunStop: Error {
    enum Kind { case crashed, cancelled, shutdown, alreadyExists, failed(SagaError) }
    var kind: Kind
    /// The log refused a record because another writer took its sequence.
    var isConflict = false
}

/// What waiters of a run get when the log has moved past the run: it duplicated a saga already in
/// the log, or it was loaded from records that another execution has since written after. They
/// look the saga up again; `fallback` is the error to answer if that finds no newer answer.
struct RunSuperseded: Error {
    var fallback: SagaError?
}

/// A timeout of one attempt: its outcome is unknown, so it is retried with the same key.
struct StepTimeoutError: Error, CustomStringConvertible {
    var timeout: Duration
    var description: String { "the attempt did not finish within \(timeout)" }
}

/// One saga's execution in this engine: its state machine, the records waiting to be written with
/// the next intent, and the callers waiting for its outcome.
final class SagaExecution: Sendable {
    static let deadlineKey = "sagakit.deadline"

    let id: String
    let engine: SagaEngine
    let definition: ErasedDefinition
    let logger: Logger
    let deadline: Date?

    struct State {
        /// The saga's state and the requests made of this execution (stop, cancel, attention).
        var machine: SagaStateMachine
        /// Outcome records deferred so they commit together with the next intent.
        var pending: [SagaLogRecord] = []
        /// Set until the saga's first append is durable.
        var creation: SagaCreation?
        var input: (any Sendable)?
        /// The operators waiting for the machine's pending cancellation to be logged or answered.
        var cancellation: OneShot<Void>?
        var recovered = false
    }

    let state: Mutex<State>
    /// Settles once the saga's first record is durable (or it cannot be written).
    let acceptance = OneShot<Void>()
    /// Settles with the saga's outcome, or with why this execution stopped before it.
    let settled = OneShot<SagaSettlement>()
    /// Held from preparing an append's records until the store has answered, so that the saga's
    /// appends are written one at a time, in sequence order.
    let appendGate = AsyncLimiter(limit: 1)

    var plan: SagaPlan { definition.plan }

    /// A new saga: its `saga.started` record is applied and waits to commit with the first intent.
    init(
        engine: SagaEngine, definition: ErasedDefinition, newSagaID id: String, input: any Sendable, inputData: Data,
        metadata: [String: String], at now: Date
    ) {
        self.id = id
        self.engine = engine
        self.definition = definition
        self.logger = Self.logger(engine.logger, id: id, name: definition.plan.name)
        self.deadline = metadata[Self.deadlineKey].flatMap(Double.init).map(Date.init(timeIntervalSince1970:))
        var machine = SagaStateMachine(plan: definition.plan, sagaID: id)
        let record = SagaLogRecord(
            sagaID: id, sequence: 1, timestamp: now, kind: .sagaStarted, payload: inputData, metadata: metadata)
        // A fresh machine always accepts saga.started.
        try? machine.apply(record)
        var state = State(machine: machine)
        state.pending = [record]
        state.creation = SagaCreation(
            name: definition.plan.name, fingerprint: definition.plan.fingerprint, createdAt: now)
        state.input = input
        self.state = Mutex(state)
    }

    /// A saga resumed from its logged state.
    init(engine: SagaEngine, definition: ErasedDefinition, machine: SagaStateMachine) {
        self.id = machine.sagaID
        self.engine = engine
        self.definition = definition
        self.logger = Self.logger(engine.logger, id: machine.sagaID, name: definition.plan.name)
        self.deadline = machine.metadata[Self.deadlineKey].flatMap(Double.init).map(Date.init(timeIntervalSince1970:))
        var state = State(machine: machine)
        state.recovered = true
        self.state = Mutex(state)
        acceptance.succeed()
    }

    static func logger(_ base: Logger, id: String, name: String) -> Logger {
        var logger = base
        logger[metadataKey: "saga.id"] = "\(id)"
        logger[metadataKey: "saga.name"] = "\(name)"
        return logger
    }

    // MARK: Executing

    func drive() async {
        let tracer = engine.tracer
        let parent = TraceCarrier.extract(state.withLock { $0.machine.metadata }, using: tracer)
        let span = tracer.startSpan("saga \(plan.name)", context: parent)
        span.attributes["saga.id"] = id
        span.attributes["saga.name"] = plan.name
        if state.withLock({ $0.recovered }) { span.attributes["saga.recovered"] = true }
        defer { span.end() }
        engine.metrics.activeChanged(by: 1)
        defer { engine.metrics.activeChanged(by: -1) }
        do {
            try await prepareInput()
            try await loop(span: span)
        } catch let stop as RunStop {
            switch stop.kind {
            case .crashed:
                interrupt(
                    SagaError(
                        .interrupted, sagaID: id,
                        message: "the saga stopped at a simulated crash; a new engine resumes it from the log"))
            case .cancelled:
                interrupt(
                    SagaError(
                        .interrupted, sagaID: id,
                        message:
                            "the saga engine was cancelled before saga '\(id)' finished; it resumes from the log on the next start"
                    ))
            case .shutdown:
                interrupt(
                    SagaError(
                        .interrupted, sagaID: id,
                        message:
                            "the saga engine shut down before saga '\(id)' finished; it resumes from the log on the next start"
                    ))
            case .alreadyExists:
                // Callers who attached to this run look the existing saga up again.
                interrupt(RunSuperseded())
            case .failed(let error) where stop.isConflict:
                // The log refused a record at a sequence someone else took: this execution was built
                // from records that are no longer the latest. Its callers read the log again.
                span.recordError(error)
                interrupt(RunSuperseded(fallback: error))
            case .failed(let error):
                span.recordError(error)
                interrupt(error)
            }
        } catch {
            interrupt(SagaError(.interrupted, sagaID: id, message: "\(error)"))
        }
        engine.runEnded(self)
    }

    func prepareInput() async throws {
        let data: Data? = state.withLock { $0.input == nil ? ($0.machine.input ?? Data()) : nil }
        guard let data else { return }
        do {
            let input = try definition.decodeInput(data)
            state.withLock { $0.input = input }
        } catch {
            state.withLock { $0.machine.deferAttention(step: nil, cause: RecordedError(error)) }
        }
    }

    func checkStop() async throws {
        if Task.isCancelled { throw RunStop(kind: .cancelled) }
        if engine.isShuttingDown {
            try await flush()
            throw RunStop(kind: .shutdown)
        }
    }

    func loop(span: any Span) async throws {
        while true {
            try await checkStop()
            let action = state.withLock { $0.machine.nextAction() }
            switch action {
            case .advance(let group, let steps):
                try await runGroup(group: group, steps: steps, span: span, compensating: false)
            case .compensate(let group, let steps):
                try await runGroup(group: group, steps: steps, span: span, compensating: true)
            case .abandonUnknownOutcome(let step):
                let attempt = state.withLock { $0.machine.step(step).attempts }
                logger.info("compensating a step whose outcome is unknown", metadata: ["saga.step": "\(step)"])
                try await write([
                    Draft(
                        kind: .stepFailed, step: step, attempt: attempt,
                        error: RecordedError(
                            type: "SagaKit.UnknownOutcome",
                            message:
                                "step '\(step)' was logged as started with no outcome, and its policy is to compensate",
                            isRetryable: false))
                ])
            case .raiseAttention(let step, let cause):
                try await write([Draft(kind: .sagaNeedsAttention, step: step, error: cause)])
            case .logCancellation(let reason):
                try await logCancellation(reason: reason)
            case .answerMootCancellation(let compensating):
                answerMootCancellation(compensating: compensating)
            case .complete:
                let (input, outputs) = state.withLock { ($0.input, $0.machine.outputs) }
                do {
                    let output = try definition.makeOutput(id, input ?? Data(), outputs)
                    try await write([Draft(kind: .sagaCompleted, payload: output)])
                } catch let stop as RunStop {
                    throw stop
                } catch {
                    try await write([Draft(kind: .sagaNeedsAttention, error: RecordedError(error))])
                }
            case .finishCompensation:
                let cause = state.withLock { $0.machine.cause }
                try await write([Draft(kind: .sagaCompensated, error: cause)])
            case .none:
                settle(span: span)
                return
            }
        }
    }

    func settle(span: any Span) {
        let settlement = state.withLock { state in
            SagaSettlement(
                status: state.machine.status, output: state.machine.output, cause: state.machine.cause,
                causeStep: state.machine.causeStep, note: state.machine.resolutionNote
            )
        }
        engine.metrics.sagaFinished(plan.name, outcome: settlement.status.rawValue)
        span.attributes["saga.outcome"] = settlement.status.rawValue
        switch settlement.status {
        case .completed:
            logger.debug("saga completed")
        case .compensated:
            logger.info(
                "saga compensated", metadata: ["cause": "\(settlement.cause.map(String.init(describing:)) ?? "")"])
        case .needsAttention:
            logger.error(
                "saga needs attention",
                metadata: [
                    "saga.step": "\(settlement.causeStep ?? "")",
                    "cause": "\(settlement.cause.map(String.init(describing:)) ?? "")",
                ])
        default:
            logger.info("saga settled", metadata: ["status": "\(settlement.status)"])
        }
        engine.runEnded(self)
        resolve(.success(settlement))
    }

    func runGroup(group: Int, steps: [String], span: any Span, compensating: Bool) async throws {
        let parallel = plan.groups[group].isParallel && steps.count > 1
        state.withLock { $0.machine.beginGroup() }
        if !parallel, let step = steps.first, steps.count == 1 {
            try await runStep(step, deferOutcome: true, span: span, compensating: compensating)
            return
        }
        // Outcomes held back for the next intent must be durable before any sibling is called;
        // siblings' intents commit independently.
        try await flush()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for step in steps {
                group.addTask {
                    try await self.runStep(step, deferOutcome: false, span: span, compensating: compensating)
                }
            }
            try await group.waitForAll()
        }
    }

    func runStep(_ name: String, deferOutcome: Bool, span: any Span, compensating: Bool) async throws {
        try await runAttempts(
            name, side: compensating ? .compensation : .action, deferOutcome: deferOutcome, span: span)
    }
}
