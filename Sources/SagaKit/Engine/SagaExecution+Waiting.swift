import Foundation
import Logging
import Synchronization
import Tracing

/// Callers waiting on a saga (its acceptance, its settlement) and the requests an operator makes of
/// a running saga (cancellation), handled at the run's boundaries.
extension SagaExecution {
    // MARK: Waiting

    func waitUntilAccepted() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let ready = state.withLock { state -> Result<Void, any Error>? in
                if let accepted = state.accepted { return accepted }
                state.acceptWaiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    func settlement() async throws -> SagaSettlement {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<SagaSettlement, any Error>) in
            let ready = state.withLock { state -> Result<SagaSettlement, any Error>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    func resolveAcceptance(_ result: Result<Void, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            guard state.accepted == nil else { return [] }
            state.accepted = result
            defer { state.acceptWaiters = [] }
            return state.acceptWaiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    func resolve(_ result: Result<SagaSettlement, any Error>) {
        let (waiters, cancellers, status) = state.withLock {
            state -> (
                [CheckedContinuation<SagaSettlement, any Error>], [CheckedContinuation<Void, any Error>], SagaStatus
            ) in
            guard state.result == nil else { return ([], [], state.machine.status) }
            state.result = result
            defer {
                state.waiters = []
                state.cancelRequest = nil
            }
            return (state.waiters, state.cancelRequest?.waiters ?? [], state.machine.status)
        }
        for waiter in waiters { waiter.resume(with: result) }
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
        for canceller in cancellers { canceller.resume(throwing: refusal) }
    }

    /// Ends every wait with an error; the saga stays as last logged.
    func interrupt(_ error: any Error) {
        resolveAcceptance(.failure(error))
        resolve(.failure(error))
    }

    /// Asks the run to cancel the saga; returns once `operator.cancelled` is durable.
    ///
    /// `registered` runs once the request is in place (the caller queues a run that is not executing).
    func requestCancel(reason: String, registered: () -> Void = {}) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let refusal = state.withLock { state -> SagaError? in
                if state.result != nil || state.machine.phase != .forward || state.machine.pivotStarted {
                    return SagaError(
                        .cannotCancel, sagaID: id,
                        message:
                            "saga '\(id)' is \(state.machine.status) and past the start of its pivot; it can no longer be cancelled"
                    )
                }
                if state.cancelRequest == nil {
                    state.cancelRequest = (reason, [continuation])
                } else {
                    state.cancelRequest?.waiters.append(continuation)
                }
                return nil
            }
            if let refusal {
                continuation.resume(throwing: refusal)
            } else {
                registered()
            }
        }
    }

    /// Logs a requested cancellation, or a pending needs-attention, at a boundary of the run.
    func handleRequests() async throws {
        let (cancel, attention) = state.withLock { state in
            (state.cancelRequest, state.attention)
        }
        if let cancel {
            let wrote: Bool
            do {
                wrote = try await write([Draft(kind: .operatorCancelled, note: cancel.reason)]) { state in
                    state.machine.phase == .forward && !state.machine.pivotStarted
                }
            } catch {
                let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
                    defer { state.cancelRequest = nil }
                    return state.cancelRequest?.waiters ?? []
                }
                let failure: any Error =
                    (error as? RunStop).flatMap {
                        if case .failed(let error) = $0.kind { return error }
                        return nil
                    }
                    ?? SagaError(
                        .interrupted, sagaID: id, message: "the engine stopped before the cancellation was logged")
                for waiter in waiters { waiter.resume(throwing: failure) }
                throw error
            }
            let (waiters, phase) = state.withLock {
                state -> ([CheckedContinuation<Void, any Error>], SagaStateMachine.Phase) in
                defer { state.cancelRequest = nil }
                return (state.cancelRequest?.waiters ?? [], state.machine.phase)
            }
            if wrote {
                logger.info("operator cancelled saga", metadata: ["reason": "\(cancel.reason)"])
                for waiter in waiters { waiter.resume() }
            } else if phase == .compensating {
                // A step failed for good first: the saga is compensating anyway.
                for waiter in waiters { waiter.resume() }
            } else {
                let refusal = SagaError(
                    .cannotCancel, sagaID: id, message: "saga '\(id)' moved past its pivot before it could be cancelled"
                )
                for waiter in waiters { waiter.resume(throwing: refusal) }
            }
        }
        if let attention {
            state.withLock { $0.attention = nil }
            try await write([Draft(kind: .sagaNeedsAttention, step: attention.step, error: attention.cause)])
        }
    }
}
