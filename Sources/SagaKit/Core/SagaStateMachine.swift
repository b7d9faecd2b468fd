package import Foundation

/// The pure core of SagaKit: a saga's state, folded from its log records, and the decision of what to
/// do next. No I/O, no `async`: the engine writes records and performs the actions this returns.
///
/// ``apply(_:)`` is the checked table of legal transitions (a record the table does not allow is a
/// corrupt log), used alike for records the engine is about to write and for records recovery reads.
package struct SagaStateMachine: Sendable {
    package enum Phase: Sendable, Equatable {
        case notStarted, forward, compensating, completed, compensated, needsAttention, resolved
    }

    package enum StepStatus: Sendable, Equatable {
        /// Never started.
        case pending
        /// An attempt's intent is logged and its outcome is not (in flight, or unknown after a crash).
        case started
        /// The last attempt failed; another may follow.
        case attemptFailed
        case succeeded
        case failed
    }

    package struct StepState: Sendable, Equatable {
        package var status: StepStatus = .pending
        /// The highest attempt number logged as started.
        package var attempts = 0
        /// Attempts made before the last operator retry; retry budgets count from here.
        package var retryBase = 0
        package var output: Data?
        package var lastError: RecordedError?
        package var compensation: StepStatus = .pending
        package var compensationAttempts = 0
        package var compensationRetryBase = 0
    }

    /// What the engine should do next.
    package enum Action: Sendable, Equatable {
        /// Run the not-yet-succeeded steps of forward group `group`.
        case advance(group: Int, steps: [String])
        /// A step was logged as started with no outcome and its policy says compensate: log it failed.
        case abandonUnknownOutcome(step: String)
        /// Compensate these started steps of group `group`, in parallel.
        case compensate(group: Int, steps: [String])
        /// A step after the pivot, or a compensation, failed for good, or a step cannot go on: log
        /// that the saga needs attention because of `cause` (`step` is `nil` for the saga's input).
        case raiseAttention(step: String?, cause: RecordedError?)
        /// An operator's cancellation is pending and the saga can still be cancelled: log it.
        case logCancellation(reason: String)
        /// An operator's cancellation is pending but the saga moved on first: answer the operator.
        /// `compensating`: a step failed for good, so the saga undoes its steps anyway (the request
        /// is met); otherwise it passed its point of no return (the request is refused).
        case answerMootCancellation(compensating: Bool)
        /// Every step succeeded: log the saga completed.
        case complete
        /// Every started compensatable step is compensated: log the saga compensated.
        case finishCompensation
        /// Nothing to do: the saga is final or needs a person.
        case none
    }

    package let plan: SagaPlan
    package let sagaID: String
    package private(set) var phase: Phase = .notStarted
    package private(set) var steps: [String: StepState] = [:]
    package private(set) var input: Data?
    package private(set) var metadata: [String: String] = [:]
    package private(set) var output: Data?
    /// Why the saga is compensating or needs attention, folded by the same rule that rebuilds an
    /// outcome from the log.
    package private(set) var causeOfOutcome = SagaCause()
    /// Why the saga is compensating or needs attention.
    package var cause: RecordedError? { causeOfOutcome.error }
    /// The step whose failure is the cause, if a step's.
    package var causeStep: String? { causeOfOutcome.step }
    package private(set) var resolutionNote: String?
    /// The phase an operator retry returns to.
    package private(set) var phaseBeforeAttention: Phase = .forward
    package private(set) var nextSequence = 1
    /// What the execution has been asked to do that is not in the log yet (see ``Requests``).
    package internal(set) var requests = Requests()

    package init(plan: SagaPlan, sagaID: String) {
        self.plan = plan
        self.sagaID = sagaID
    }

    /// Folds a saga's records (ordered by sequence) into its state.
    package init(plan: SagaPlan, sagaID: String, records: [SagaLogRecord]) throws(SagaError) {
        self.init(plan: plan, sagaID: sagaID)
        for record in records { try apply(record) }
    }

    package var status: SagaStatus {
        switch phase {
        case .notStarted, .forward: .running
        case .compensating: .compensating
        case .completed: .completed
        case .compensated: .compensated
        case .needsAttention: .needsAttention
        case .resolved: .resolved
        }
    }

    /// Whether a step that cannot be compensated (the pivot, or a retryable step) has started:
    /// past this point of no return the saga can only go forward.
    package var pastPointOfNoReturn: Bool {
        plan.groups.lazy.flatMap(\.steps).contains { $0.kind != .compensatable && (steps[$0.name]?.attempts ?? 0) > 0 }
    }

    package var outputs: StepOutputs {
        StepOutputs(steps.compactMapValues { $0.status == .succeeded ? $0.output : nil })
    }

    package func step(_ name: String) -> StepState { steps[name] ?? StepState() }

    // MARK: Transitions

    /// Applies one record, or throws ``SagaError/Code/corruptLog`` if the transition is not legal.
    package mutating func apply(_ record: SagaLogRecord) throws(SagaError) {
        func illegal(_ why: String) -> SagaError {
            SagaError(
                .corruptLog, sagaID: sagaID, step: record.step,
                message: "record \(record.sequence) (\(record.kind)) is not allowed here: \(why)")
        }
        guard record.sagaID == sagaID else { throw illegal("it belongs to saga '\(record.sagaID)'") }
        guard record.sequence >= nextSequence else {
            throw illegal("sequence \(record.sequence) is not after \(nextSequence - 1)")
        }
        if phase == .notStarted, record.kind != .sagaStarted { throw illegal("the saga has not started") }

        func stepName() throws(SagaError) -> String {
            guard let name = record.step, plan.stepsByName[name] != nil else {
                throw illegal("step '\(record.step ?? "")' is not in saga '\(plan.name)'")
            }
            return name
        }

        switch record.kind {
        case .sagaStarted:
            guard phase == .notStarted else { throw illegal("the saga already started") }
            phase = .forward
            input = record.payload ?? Data()
            metadata = record.metadata

        case .stepStarted:
            let name = try stepName()
            var state = step(name)
            guard phase == .forward else { throw illegal("steps only start while the saga runs forward") }
            guard state.status != .succeeded, state.status != .failed else {
                throw illegal("step '\(name)' already ended")
            }
            let attempt = record.attempt ?? (state.attempts + 1)
            guard attempt > state.attempts else {
                throw illegal("attempt \(attempt) of '\(name)' is not after \(state.attempts)")
            }
            state.status = .started
            state.attempts = attempt
            steps[name] = state

        case .stepSucceeded, .stepAttemptFailed, .stepFailed:
            let name = try stepName()
            var state = step(name)
            guard phase == .forward || phase == .compensating else { throw illegal("the saga is \(status)") }
            let allowed: Bool =
                record.kind == .stepFailed
                ? (state.status == .started || state.status == .attemptFailed || state.status == .pending)
                : state.status == .started
            guard allowed else { throw illegal("step '\(name)' is \(state.status), not in flight") }
            state.lastError = record.error
            switch record.kind {
            case .stepSucceeded:
                state.status = .succeeded
                state.output = record.payload ?? Data()
            case .stepAttemptFailed:
                state.status = .attemptFailed
            default:
                state.status = .failed
                if plan.stepsByName[name]?.kind != .retryable, phase == .forward {
                    phase = .compensating
                }
            }
            steps[name] = state

        case .compensationStarted:
            let name = try stepName()
            var state = step(name)
            guard phase == .compensating else { throw illegal("compensations only run while compensating") }
            guard plan.stepsByName[name]?.isCompensatable == true, state.attempts > 0 else {
                throw illegal("step '\(name)' is not a started compensatable step")
            }
            guard state.compensation != .succeeded, state.compensation != .failed else {
                throw illegal("compensation of '\(name)' already ended")
            }
            let attempt = record.attempt ?? (state.compensationAttempts + 1)
            guard attempt > state.compensationAttempts else {
                throw illegal("compensation attempt \(attempt) of '\(name)' is not new")
            }
            state.compensation = .started
            state.compensationAttempts = attempt
            steps[name] = state

        case .compensationSucceeded, .compensationAttemptFailed, .compensationFailed:
            let name = try stepName()
            var state = step(name)
            guard phase == .compensating else { throw illegal("the saga is \(status)") }
            let allowed: Bool =
                record.kind == .compensationFailed
                ? (state.compensation == .started || state.compensation == .attemptFailed)
                : state.compensation == .started
            guard allowed else { throw illegal("compensation of '\(name)' is \(state.compensation), not in flight") }
            switch record.kind {
            case .compensationSucceeded: state.compensation = .succeeded
            case .compensationAttemptFailed: state.compensation = .attemptFailed
            default: state.compensation = .failed
            }
            state.lastError = record.error ?? state.lastError
            steps[name] = state

        case .sagaCompleted:
            guard phase == .forward else { throw illegal("only a saga running forward completes") }
            let unfinished = plan.groups.flatMap(\.steps).filter { step($0.name).status != .succeeded }
            guard unfinished.isEmpty else { throw illegal("step '\(unfinished[0].name)' has not succeeded") }
            phase = .completed
            output = record.payload ?? Data()

        case .sagaCompensated:
            guard phase == .compensating else { throw illegal("only a compensating saga ends compensated") }
            if let left = stepsNeedingCompensation(in: plan.groups.indices).first {
                throw illegal("step '\(left)' is not compensated")
            }
            phase = .compensated

        case .sagaNeedsAttention:
            guard phase == .forward || phase == .compensating else { throw illegal("the saga is \(status)") }
            phaseBeforeAttention = phase
            phase = .needsAttention

        case .operatorRetried:
            guard phase == .needsAttention else { throw illegal("only a saga that needs attention can be retried") }
            phase = phaseBeforeAttention
            for (name, var state) in steps {
                if state.status == .failed, phase == .forward {
                    state.status = .attemptFailed
                }
                if state.status == .attemptFailed || state.status == .started { state.retryBase = state.attempts }
                if state.compensation == .failed { state.compensation = .attemptFailed }
                if state.compensation == .attemptFailed || state.compensation == .started {
                    state.compensationRetryBase = state.compensationAttempts
                }
                steps[name] = state
            }

        case .operatorResolved:
            guard phase == .needsAttention else { throw illegal("only a saga that needs attention can be resolved") }
            phase = .resolved
            resolutionNote = record.note

        case .operatorCancelled:
            guard phase == .forward, !pastPointOfNoReturn else {
                throw illegal("only a saga before its pivot can be cancelled")
            }
            phase = .compensating

        default:
            throw illegal("unknown record kind '\(record.kind)'")
        }
        causeOfOutcome.apply(record)
        settleRequests(after: record)
        nextSequence = record.sequence + 1
    }

    // MARK: Decisions

    /// What the engine should do next, given everything logged so far and the pending requests.
    package func nextAction() -> Action {
        if let requested = nextRequestedAction() { return requested }
        switch phase {
        case .forward:
            for (index, group) in plan.groups.enumerated() {
                let pending = group.steps.filter { step($0.name).status != .succeeded }
                if pending.isEmpty { continue }
                if let failed = pending.first(where: { step($0.name).status == .failed }) {
                    return .raiseAttention(step: failed.name, cause: step(failed.name).lastError)
                }
                if let unknown = pending.first(where: {
                    step($0.name).status == .started && $0.options.onUnknownOutcome == .compensate
                }) {
                    return .abandonUnknownOutcome(step: unknown.name)
                }
                return .advance(group: index, steps: pending.map(\.name))
            }
            return .complete
        case .compensating:
            if let failed = plan.groups.flatMap(\.steps).first(where: { step($0.name).compensation == .failed }) {
                return .raiseAttention(step: failed.name, cause: step(failed.name).lastError)
            }
            for index in plan.groups.indices.reversed() {
                let need = stepsNeedingCompensation(in: index..<(index + 1))
                if !need.isEmpty { return .compensate(group: index, steps: need) }
            }
            return .finishCompensation
        default:
            return .none
        }
    }

    /// Compensatable steps in these groups that started and are not yet compensated.
    package func stepsNeedingCompensation(in groups: Range<Int>) -> [String] {
        groups.flatMap { plan.groups[$0].steps }.filter { definition in
            let state = step(definition.name)
            return definition.isCompensatable && state.attempts > 0 && state.compensation != .succeeded
        }.map(\.name)
    }
}

/// A saga's one cause: why it compensated or needs attention, folded from its records.
///
/// The rule needs no definition, so an outcome rebuilt from the log (by an engine that does not know
/// the definition, or after a restart) names the same cause as the live run: the first step that
/// failed for good (or the operator's cancellation) since the saga last ran forward is the cause of
/// its compensation; a later sibling's failure is not. A needs-attention record names its own cause.
package struct SagaCause: Sendable, Equatable {
    package private(set) var error: RecordedError?
    package private(set) var step: String?
    /// A cause is fixed: the saga is undoing (or deciding) because of it.
    private var fixed = false
    private var fixedBeforeAttention = false

    package init() {}

    /// Folds one record, already checked by the state machine.
    package mutating func apply(_ record: SagaLogRecord) {
        switch record.kind {
        case .stepFailed where !fixed:
            error = record.error
            step = record.step
            fixed = true
        case .operatorCancelled:
            error = RecordedError(
                type: "SagaKit.Cancelled", message: record.note ?? "cancelled by an operator", isRetryable: false)
            step = nil
            fixed = true
        case .sagaNeedsAttention:
            fixedBeforeAttention = fixed
            error = record.error
            step = record.step
            fixed = true
        case .operatorRetried:
            fixed = fixedBeforeAttention
        default:
            break
        }
    }

    /// The cause after these records (ordered by sequence).
    package static func folding(_ records: [SagaLogRecord]) -> SagaCause {
        var cause = SagaCause()
        for record in records { cause.apply(record) }
        return cause
    }
}
