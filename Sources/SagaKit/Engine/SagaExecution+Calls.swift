import Foundation
import Logging
import Synchronization
import Tracing

/// Participant invocation: the step context, the time limit, the testing kit's hooks, and local steps
/// that commit in the log's own transaction.
extension SagaExecution {
    // MARK: Calling participants

    /// Calls an action or compensation with its context, timeout and fault points. A `RunStop` in
    /// the failure means stop the run; any other error is the participant's.
    func call(
        name: String,
        attempt: Int,
        logger: Logger,
        timeout: Duration?,
        local: (any Sendable)?,
        loggedOutput: Data?,
        isCompensation: Bool,
        trace: ServiceContext,
        _ body: @escaping @Sendable (ErasedStepContext) async throws -> Data
    ) async -> Result<Data, any Error> {
        let (input, outputs) = state.withLock { ($0.input ?? Data(), $0.machine.outputs) }
        let key = "\(id)/\(name)"
        let context = ErasedStepContext(
            sagaID: id, stepName: name, input: input, idempotencyKey: key, attempt: attempt, logger: logger,
            outputs: outputs)
        do {
            let point = FaultPoint(sagaID: id, moment: .beforeCall, step: name, isCompensation: isCompensation)
            try engine.configuration.faultPoint?(point)
            let output: Data
            if let local {
                output = try await runLocal(
                    local, isCompensation: isCompensation, name: name, attempt: attempt, key: key, input: input,
                    loggedOutput: loggedOutput)
            } else {
                // The step's span is the current context while the participant runs, so its own
                // spans (an HTTP or gRPC client's) become children of the step.
                output = try await ServiceContext.withValue(trace) {
                    try await withTimeout(timeout) {
                        guard let interceptor = self.engine.configuration.interceptor else {
                            return try await body(context)
                        }
                        let call = ParticipantCall(
                            sagaID: self.id, step: name, isCompensation: isCompensation, attempt: attempt,
                            idempotencyKey: key)
                        return try await interceptor(call) { try await body(context) }
                    }
                }
            }
            var after = point
            after.moment = .afterCall
            try engine.configuration.faultPoint?(after)
            return .success(output)
        } catch is SimulatedCrash {
            return .failure(RunStop(kind: .crashed))
        } catch {
            if !Task.isCancelled {
                try? engine.configuration.faultPoint?(
                    FaultPoint(sagaID: id, moment: .callFailed, step: name, isCompensation: isCompensation))
            }
            return .failure(error)
        }
    }

    /// Runs a local step's work and its outcome record in one store transaction.
    func runLocal(
        _ body: any Sendable, isCompensation compensating: Bool, name: String, attempt: Int, key: String,
        input: any Sendable, loggedOutput: Data?
    ) async throws -> Data {
        let outputs = state.withLock { $0.machine.outputs }
        let work = LocalStepWork(
            body: body, sagaID: id, stepName: name, idempotencyKey: key, loggedOutput: loggedOutput, input: input,
            attempt: attempt, outputs: outputs)
        let applied = Mutex(false)
        let kinds = [
            compensating ? SagaLogRecord.Kind.compensationSucceeded.rawValue : SagaLogRecord.Kind.stepSucceeded.rawValue
        ]
        // The outcome record takes its sequence inside the store's transaction: hold the saga's append
        // gate so that no sibling's append is prepared or written meanwhile (see `write`).
        await appendGate.acquireIgnoringCancellation()
        defer { appendGate.release() }
        do {
            try engine.configuration.faultPoint?(FaultPoint(sagaID: id, moment: .beforeAppend, records: kinds))
            let output = try await engine.store.appendAfterLocalWork(work) { output in
                let kind: SagaLogRecord.Kind = compensating ? .compensationSucceeded : .stepSucceeded
                let draft = Draft(kind: kind, step: name, attempt: attempt, payload: compensating ? nil : output)
                guard
                    case .some(.some(let append)) = try self.prepare(
                        [draft], deferring: false, condition: { _ in true })
                else {
                    throw SagaError(
                        .corruptLog, sagaID: self.id, step: name,
                        message: "no outcome record could be prepared for local step '\(name)'")
                }
                applied.withLock { $0 = true }
                return append
            }
            markDurable()
            try engine.configuration.faultPoint?(FaultPoint(sagaID: id, moment: .afterAppend, records: kinds))
            return output
        } catch let error as SagaStoreError where error.code == .ownershipLost {
            // A shared log's fence refused the outcome record, and the work was rolled back with it.
            throw ownershipLost(error)
        } catch {
            if applied.withLock({ $0 }) {
                // The outcome was applied in memory but its transaction did not commit: stop, and let
                // recovery read the truth from the log.
                throw RunStop(
                    kind: .failed(
                        SagaError(
                            .logWriteFailed, sagaID: id, step: name,
                            message: "the local step's transaction did not commit: \(error)")))
            }
            throw error
        }
    }

    func withTimeout(_ timeout: Duration?, _ body: @escaping @Sendable () async throws -> Data) async throws
        -> Data
    {
        guard let timeout else { return try await body() }
        let clock = engine.configuration.clock
        return try await withThrowingTaskGroup(of: Data?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await clock.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let output = first else {
                throw StepTimeoutError(timeout: timeout)
            }
            return output
        }
    }

    static func nanoseconds(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = ContinuousClock.now - start
        let (seconds, attoseconds) = elapsed.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
