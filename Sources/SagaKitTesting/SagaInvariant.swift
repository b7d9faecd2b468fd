public import SagaKit

/// What an invariant sees of one saga after it ran to the end (through any crash and recovery).
public struct SagaRunReport: Sendable {
    /// The saga's id.
    public var sagaID: String
    /// Its row in the log, `nil` if it was never created.
    public var summary: SagaSummary?
    /// Its full history.
    public var records: [SagaLogRecord]
    /// Every participant call and durable write observed for it, in order.
    public var events: [SagaTrace.Event]
    /// The compensatable steps of its definition.
    public var compensatableSteps: Set<String>
    /// The steps whose unknown outcomes are compensated rather than retried.
    public var stepsCompensatingUnknownOutcomes: Set<String>
    /// Where the run was crashed, if it was.
    public var crashPoint: String?
    /// The saga's structure, when the checker knows it: the history must replay through it.
    package var plan: SagaPlan?

    package init(
        sagaID: String, summary: SagaSummary?, records: [SagaLogRecord], events: [SagaTrace.Event],
        compensatableSteps: Set<String>, stepsCompensatingUnknownOutcomes: Set<String>, crashPoint: String?,
        plan: SagaPlan? = nil
    ) {
        self.sagaID = sagaID
        self.summary = summary
        self.records = records
        self.events = events
        self.compensatableSteps = compensatableSteps
        self.stepsCompensatingUnknownOutcomes = stepsCompensatingUnknownOutcomes
        self.crashPoint = crashPoint
        self.plan = plan
    }
}

/// A property every saga run must have. Returns a description of the violation, or `nil`.
///
/// ```swift
/// let stockIsConserved = SagaInvariant("stock is conserved") { report in
///     let stock = try await products.stock("tea")
///     return stock + (try await orders.quantity("tea")) == 10 ? nil : "stock \(stock) does not add up"
/// }
/// ```
public struct SagaInvariant: Sendable {
    /// The invariant's name, printed with violations.
    public let name: String
    let check: @Sendable (SagaRunReport) async throws -> String?

    /// Creates an invariant from a check that returns a violation message, or `nil` when it holds.
    public init(_ name: String, check: @escaping @Sendable (SagaRunReport) async throws -> String?) {
        self.name = name
        self.check = check
    }

    /// Evaluates the invariant.
    public func evaluate(_ report: SagaRunReport) async throws -> String? {
        try await check(report)
    }

    /// The invariants every saga must satisfy, whatever its participants.
    public static let builtIn: [SagaInvariant] = [
        endsSettled, historyReplays, compensatesOnlyStartedSteps, netEffectMatchesOutcome, nothingRunsAfterTheEnd,
        unknownOutcomesAreNotRetriedWhenPolicyCompensates,
    ]

    /// The saga's history is one the state machine accepts, record by record, and folds to the status
    /// its summary shows: no record was appended beside a run that was still writing (checked when
    /// the report carries the definition's structure).
    public static let historyReplays = SagaInvariant("the history replays to the logged status") { report in
        guard let plan = report.plan, let summary = report.summary else { return nil }
        do {
            let machine = try SagaStateMachine(plan: plan, sagaID: report.sagaID, records: report.records)
            if machine.status != summary.status {
                return "the records fold to \(machine.status) but the summary says \(summary.status)"
            }
            return nil
        } catch let error as SagaError {
            return "the history does not replay: \(error.message)"
        } catch {
            return "the history does not replay: \(error)"
        }
    }

    /// A step whose policy compensates unknown outcomes is never called again after a call whose
    /// outcome the engine did not learn (a crash during or after it): the write-ahead intent told
    /// recovery the call may have happened.
    public static let unknownOutcomesAreNotRetriedWhenPolicyCompensates = SagaInvariant(
        "an unknown outcome is not retried when the policy compensates"
    ) { report in
        for step in report.stepsCompensatingUnknownOutcomes.sorted() {
            var outcomeKnown = true
            for event in report.events where event.step == step && !event.isCompensation {
                switch event.kind {
                case .callStarted:
                    if !outcomeKnown { return "step '\(step)' was called again after a call with an unknown outcome" }
                    outcomeKnown = false
                case .callSucceeded, .callFailed:
                    outcomeKnown = true
                case .appended:
                    break
                }
            }
        }
        return nil
    }

    /// Every saga ends completed, compensated, needing attention with a recorded cause, or resolved
    /// by an operator.
    public static let endsSettled = SagaInvariant("ends completed, compensated or needs attention with a cause") {
        report in
        guard let summary = report.summary else { return "the saga is not in the log" }
        switch summary.status {
        case .completed, .compensated: return nil
        case .needsAttention: return summary.lastError == nil ? "needs attention without a recorded cause" : nil
        case .resolved:
            // Only an operator ends a saga resolved, and only one that needed attention.
            return report.records.last?.kind == .operatorResolved ? nil : "resolved without an operator's record"
        default: return "the saga ended \(summary.status)"
        }
    }

    /// A compensation runs only for a step that started: one whose intent was logged (and so whose
    /// action may have been called) before the compensation's own intent.
    public static let compensatesOnlyStartedSteps = SagaInvariant("compensates only steps that started") { report in
        var started = Set<String>()
        for record in report.records {
            guard let step = record.step else { continue }
            if record.kind == .stepStarted { started.insert(step) }
            if record.kind == .compensationStarted, !started.contains(step) {
                return "compensation of '\(step)' started (record \(record.sequence)) but the step never did"
            }
        }
        let compensated = Set(report.events.filter { $0.kind == .callStarted && $0.isCompensation }.compactMap(\.step))
        if let stray = compensated.subtracting(started).sorted().first {
            return "compensation of '\(stray)' was called but the step never started"
        }
        return nil
    }

    /// A compensatable step's effect is kept only if the saga completed: a completed saga undid
    /// nothing, and a compensated saga undid (successfully, after its last call) every step it called.
    public static let netEffectMatchesOutcome = SagaInvariant("net effect kept only if completed") { report in
        guard let status = report.summary?.status else { return nil }
        let calls = report.events.filter { $0.kind != .appended }
        for step in report.compensatableSteps.sorted() {
            guard
                let lastAction = calls.lastIndex(where: {
                    $0.step == step && !$0.isCompensation && $0.kind == .callStarted
                })
            else { continue }
            let undone = calls[lastAction...].contains {
                $0.step == step && $0.isCompensation && $0.kind == .callSucceeded
            }
            if status == .completed,
                calls.contains(where: { $0.step == step && $0.isCompensation && $0.kind == .callSucceeded })
            {
                return "the saga completed but step '\(step)' was compensated"
            }
            if status == .compensated, !undone {
                return "the saga compensated but step '\(step)', which was called, was not undone after its last call"
            }
        }
        return nil
    }

    /// Nothing runs for a saga after its final record is durable.
    public static let nothingRunsAfterTheEnd = SagaInvariant("nothing runs after the saga finished") { report in
        guard
            let end = report.events.firstIndex(where: {
                $0.kind == .appended
                    && ($0.records.contains("saga.completed") || $0.records.contains("saga.compensated")
                        || $0.records.contains("operator.resolved"))
            })
        else { return nil }
        if let late = report.events[(end + 1)...].first(where: { $0.kind == .callStarted }) {
            return "\(late) after the saga finished"
        }
        return nil
    }
}

/// An invariant that did not hold.
public struct InvariantViolation: Error, Hashable, Sendable, CustomStringConvertible {
    /// The saga concerned.
    public var sagaID: String
    /// The invariant's name.
    public var invariant: String
    /// What was wrong.
    public var message: String
    /// The crash point of the run, if one was injected.
    public var crashPoint: String?

    public var description: String {
        "[\(sagaID)] \(invariant): \(message)" + (crashPoint.map { " (crash at \($0))" } ?? "")
    }
}
