import Foundation
import Logging
import Synchronization
import Tracing

/// Callers waiting on a saga (its acceptance, its settlement) and the operators waiting on a
/// cancellation, which the state machine holds as a request until the execution logs or answers it.
extension SagaExecution {
    // MARK: Waiting

    func waitUntilAccepted() async throws {
        try await acceptance.value()
    }

    func settlement() async throws -> SagaSettlement {
        try await settled.value()
    }

    func resolveAcceptance(_ result: Result<Void, any Error>) {
        acceptance.set(result)
    }

    /// Settles every wait on the saga; operators still waiting on a cancellation are refused.
    func resolve(_ result: Result<SagaSettlement, any Error>) {
        guard settled.set(result) else { return }
        // The settlement is set before the lock is taken, so a cancellation registered after this
        // sees it and is refused at once (see `requestCancel`).
        let (cancellation, status) = state.withLock { state -> (OneShot<Void>?, SagaStatus) in
            defer {
                state.cancellation = nil
                state.machine.dropCancellation()
            }
            return (state.cancellation, state.machine.status)
        }
        guard let cancellation else { return }
        let refusal: any Error
        switch result {
        case .failure(let superseded as RunSuperseded):
            refusal =
                superseded.fallback
                ?? SagaError(
                    .cannotCancel, sagaID: id, message: "saga '\(id)' was taken over before it could be cancelled")
        case .failure(let error): refusal = error
        case .success:
            refusal = SagaError(
                .cannotCancel, sagaID: id, message: "saga '\(id)' ended \(status) before it could be cancelled")
        }
        cancellation.set(.failure(refusal))
    }

    /// Ends every wait with an error; the saga stays as last logged.
    func interrupt(_ error: any Error) {
        resolveAcceptance(.failure(error))
        resolve(.failure(error))
    }

    // MARK: Cancelling

    /// Asks the execution to cancel the saga; returns once `operator.cancelled` is durable.
    ///
    /// `registered` runs once the request is in place (the caller queues an execution that is not
    /// running).
    func requestCancel(reason: String, registered: () -> Void = {}) async throws {
        let answer = state.withLock { state -> Result<OneShot<Void>, SagaError> in
            if settled.isSet {
                return .failure(
                    SagaError(
                        .cannotCancel, sagaID: id,
                        message: "saga '\(id)' is \(state.machine.status); it can no longer be cancelled"))
            }
            switch state.machine.requestCancellation(reason: reason) {
            case .refused(let message):
                return .failure(SagaError(.cannotCancel, sagaID: id, message: message))
            case .pending:
                let cancellation = state.cancellation ?? OneShot<Void>()
                state.cancellation = cancellation
                return .success(cancellation)
            }
        }
        let cancellation = try answer.get()
        registered()
        try await cancellation.value()
    }

    /// Logs the machine's pending cancellation and answers the operators waiting on it.
    func logCancellation(reason: String) async throws {
        let wrote: Bool
        do {
            wrote = try await write([Draft(kind: .operatorCancelled, note: reason)]) { state in
                state.machine.phase == .forward && !state.machine.pastPointOfNoReturn
            }
        } catch {
            let failure: any Error =
                (error as? RunStop).flatMap {
                    if case .failed(let error) = $0.kind { return error }
                    return nil
                }
                ?? SagaError(.interrupted, sagaID: id, message: "the engine stopped before the cancellation was logged")
            takeCancellation()?.set(.failure(failure))
            throw error
        }
        guard wrote else {
            answerMootCancellation(compensating: state.withLock { $0.machine.phase == .compensating })
            return
        }
        logger.info("operator cancelled saga", metadata: ["reason": "\(reason)"])
        takeCancellation()?.succeed()
    }

    /// Answers a cancellation that the saga moved past before it could be logged.
    func answerMootCancellation(compensating: Bool) {
        let cancellation = takeCancellation()
        if compensating {
            // A step failed for good first: the saga is compensating anyway.
            cancellation?.succeed()
        } else {
            cancellation?.set(
                .failure(
                    SagaError(
                        .cannotCancel, sagaID: id,
                        message: "saga '\(id)' moved past its pivot before it could be cancelled")))
        }
    }

    /// Ends the machine's cancellation request and returns its waiters.
    private func takeCancellation() -> OneShot<Void>? {
        state.withLock { state in
            defer {
                state.cancellation = nil
                state.machine.dropCancellation()
            }
            return state.cancellation
        }
    }
}
