import Foundation
import Logging

/// How a cancellation stands when ``SagaEngine/cancel(sagaID:reason:waitingForOwner:)`` returns.
///
/// ```swift
/// let cancellation = try await engine.cancel(sagaID: "order-43", reason: "customer", waitingForOwner: .seconds(10))
/// if !cancellation.isLogged { print("the owner has not answered yet:", cancellation.request?.id ?? "") }
/// ```
public struct SagaCancellation: Hashable, Sendable {
    /// Whether `operator.cancelled` is durable in the saga's log: the saga compensates every step that
    /// started, then ends ``SagaStatus/compensated``.
    public var isLogged: Bool
    /// The request this engine recorded for the engine that runs the saga, as last read; `nil` when this
    /// engine logged the cancellation itself.
    public var request: SagaOperatorRequest?

    /// Creates a cancellation's standing.
    public init(isLogged: Bool, request: SagaOperatorRequest? = nil) {
        self.isLogged = isLogged
        self.request = request
    }
}

/// Operator actions from any engine sharing a log: cancellations of sagas that another engine runs
/// travel as ``SagaOperatorRequest``s, recorded beside the log and carried out by the saga's owner at
/// its sweep. Only the owner appends to the saga; the requester writes the request alone.
extension SagaEngine {
    // MARK: Cancelling through the owner

    /// Cancels a saga as ``cancel(sagaID:reason:)`` does, and, when another engine runs it, waits up to
    /// `wait` for that engine's answer.
    ///
    /// When this engine runs the saga (or the store is not shared), the call returns once
    /// `operator.cancelled` is durable, whatever `wait` says. When another live engine sharing the log
    /// runs it, this engine records a ``SagaOperatorRequest`` and then reads it (and the saga's log)
    /// again every fifth of ``SharedSagaStore/sweepInterval``, sleeping on the engine's
    /// ``SagaEngine/Configuration/clock``, until the owner answers, the log shows the cancellation, `wait`
    /// has passed, or the engine shuts down.
    ///
    /// ```swift
    /// let cancellation = try await engine.cancel(sagaID: "order-43", reason: "customer", waitingForOwner: .seconds(10))
    /// ```
    ///
    /// - Parameters:
    ///   - sagaID: The saga to cancel.
    ///   - reason: Why, logged with `operator.cancelled` and recorded as the saga's cause.
    ///   - wait: How long to wait for the owning engine; `.zero` returns once the request is durable.
    /// - Returns: Whether the cancellation is in the log, and the request, when one was made (still
    ///   ``SagaOperatorRequest/State/pending`` if the owner did not answer within `wait`).
    /// - Throws: What ``cancel(sagaID:reason:)`` throws, and ``SagaError/Code/cannotCancel`` with the
    ///   owner's reason when the owner refused within `wait`.
    @discardableResult
    public func cancel(sagaID: String, reason: String, waitingForOwner wait: Duration) async throws
        -> SagaCancellation
    {
        if activeRun(sagaID) == nil, let shared = sharedStore, try await runsElsewhere(sagaID, shared) {
            return try await forwardCancellation(sagaID, reason: reason, shared, wait: wait, refusal: nil)
        }
        do {
            try await cancelHere(sagaID, reason: reason)
            return SagaCancellation(isLogged: true)
        } catch let error as SagaError where error.code == .ownershipLost {
            // This store thought it owned the saga, but another engine claimed it: the fence refused the
            // cancellation record. That engine carries the request out instead.
            guard let shared = sharedStore else { throw error }
            return try await forwardCancellation(sagaID, reason: reason, shared, wait: wait, refusal: error)
        }
    }

    /// Every operator request recorded for a saga, answered or not, oldest first; empty when the store
    /// is not shared.
    ///
    /// ```swift
    /// for request in try await engine.operatorRequests(of: "order-43") {
    ///     print(request.requestedAt, request.kind, request.state, request.answer?.message ?? "")
    /// }
    /// ```
    public func operatorRequests(of sagaID: String) async throws -> [SagaOperatorRequest] {
        guard let shared = sharedStore else { return [] }
        return try await shared.requests(of: sagaID)
    }

    /// Whether a saga is running forward under another engine: the log says running, and this store
    /// does not own it.
    private func runsElsewhere(_ sagaID: String, _ shared: any SharedSagaStore) async throws -> Bool {
        guard let summary = try await store.summary(of: sagaID), summary.status == .running else { return false }
        return !shared.holdsOwnership(of: sagaID)
    }

    /// Records a cancellation request for the saga's owner and waits up to `wait` for its answer.
    private func forwardCancellation(
        _ sagaID: String, reason: String, _ shared: any SharedSagaStore, wait: Duration, refusal: SagaError?
    ) async throws -> SagaCancellation {
        let request: SagaOperatorRequest
        do {
            request = try await shared.recordRequest(id: UUID(), kind: .cancel, sagaID: sagaID, reason: reason)
        } catch let error as SagaStoreError where error.code == .unsupported {
            throw refusal
                ?? SagaError(
                    .ownershipLost, sagaID: sagaID,
                    message:
                        "saga '\(sagaID)' is running in another engine sharing the log, and the store has no request channel to reach it; cancel it through that engine"
                )
        }
        logger.info(
            "recorded a cancellation for the engine that runs the saga; it applies it at its next sweep",
            metadata: ["saga.id": "\(sagaID)", "request.id": "\(request.id)", "reason": "\(reason)"])
        return try await awaitAnswer(to: request, shared, wait: wait)
    }

    /// Reads the request and the saga's log again, on the engine's clock, until the owner answers, the
    /// cancellation is logged, or `wait` has passed.
    private func awaitAnswer(
        to recorded: SagaOperatorRequest, _ shared: any SharedSagaStore, wait: Duration
    ) async throws -> SagaCancellation {
        var request = recorded
        var waited = Duration.zero
        let poll = max(.milliseconds(10), shared.sweepInterval / 5)
        while request.state == .pending, waited < wait {
            let step = min(poll, wait - waited)
            guard await sleep(for: step) else { break }
            waited += step
            if let current = try await shared.requests(of: request.sagaID).first(where: { $0.id == request.id }) {
                request = current
            }
            if request.state == .pending,
                try await store.records(of: request.sagaID).contains(where: { $0.kind == .operatorCancelled })
            {
                return SagaCancellation(isLogged: true, request: request)
            }
        }
        if let answer = request.answer, answer.state == .refused {
            throw SagaError(.cannotCancel, sagaID: request.sagaID, message: answer.message)
        }
        return SagaCancellation(isLogged: request.state == .applied, request: request)
    }

    // MARK: Answering as the owner

    /// Answers the operator requests this engine must answer (``SharedSagaStore/pendingRequests(limit:)``):
    /// each is carried out through this engine's own ``cancel(sagaID:reason:)`` path, and answered once
    /// its outcome is known. Called by every sweep; a failure is logged and retried at the next one.
    ///
    /// A cancellation is answered ``SagaOperatorRequest/State/applied`` when the saga's log holds
    /// `operator.cancelled`, and ``SagaOperatorRequest/State/refused`` when the saga finished first, has
    /// passed its pivot, is not running forward, or cannot be run by this engine. A cancellation that is
    /// in place but waits for the step in flight (it is logged at the saga's next boundary) stays pending
    /// and is answered at a later sweep, so a long step never holds up the sweep.
    func answerOperatorRequests(_ shared: any SharedSagaStore) async {
        let requests: [SagaOperatorRequest]
        do {
            requests = try await shared.pendingRequests(limit: 100)
        } catch {
            logger.warning(
                "could not read operator requests; trying again at the next sweep", metadata: ["error": "\(error)"])
            return
        }
        for request in requests {
            let metadata: Logger.Metadata = [
                "saga.id": "\(request.sagaID)", "request.id": "\(request.id)", "request.kind": "\(request.kind)",
            ]
            do {
                guard let answer = try await answer(request) else { continue }
                guard try await shared.answerRequest(request.id, with: answer) else { continue }
                logger.info(
                    "answered an operator request made through another engine",
                    metadata: metadata.merging(
                        ["request.state": "\(answer.state)", "answer": "\(answer.message)"], uniquingKeysWith: { $1 }))
            } catch {
                logger.warning(
                    "could not answer an operator request; trying again at the next sweep",
                    metadata: metadata.merging(["error": "\(error)"], uniquingKeysWith: { $1 }))
            }
        }
    }

    /// The answer to one request, or `nil` to answer it at a later sweep.
    private func answer(_ request: SagaOperatorRequest) async throws -> SagaOperatorRequest.Answer? {
        guard request.kind == .cancel else {
            return .refused("this engine does not carry out requests of kind '\(request.kind)'")
        }
        let id = request.sagaID
        guard let summary = try await store.summary(of: id) else {
            return .refused("no saga with id '\(id)' is in the log")
        }
        let records = try await store.records(of: id)
        if let cancelled = records.first(where: { $0.kind == .operatorCancelled }) {
            return .applied(
                "saga '\(id)' is cancelled: record \(cancelled.sequence) of its log is operator.cancelled, and it compensates every step that started"
            )
        }
        if summary.status.isFinal {
            return .refused("saga '\(id)' ended \(summary.status) before the cancellation could be applied")
        }
        switch await placeCancellation(id, reason: request.reason) {
        case .logged:
            return .applied("saga '\(id)' is cancelled: operator.cancelled is in its log")
        case .placed:
            return nil
        case .failed(let error as SagaError) where Self.refusedForGood.contains(error.code):
            return .refused(error.message)
        case .failed(let error as SagaError) where error.code == .ownershipLost || error.code == .shuttingDown:
            // Another engine took the saga (its sweep answers the request), or this one is stopping.
            logger.debug(
                "left an operator request for another sweep", metadata: ["saga.id": "\(id)", "error": "\(error)"])
            return nil
        case .failed(let error):
            throw error
        }
    }

    /// The errors of the local cancel path that no later sweep would change.
    private static let refusedForGood: Set<SagaError.Code> = [
        .cannotCancel, .unknownSaga, .definitionNotRegistered, .definitionMismatch, .corruptLog,
    ]

    private enum Placement {
        /// `operator.cancelled` is durable.
        case logged
        /// The cancellation is in place in the run; it is logged at the saga's next boundary.
        case placed
        case failed(any Error)
    }

    /// Cancels the saga through the local path, but waits for the cancellation to be logged only while
    /// it is not yet in place: a run whose step is in flight logs it when the step has finished, and the
    /// sweep does not wait for that.
    private func placeCancellation(_ sagaID: String, reason: String) async -> Placement {
        let inPlace = OneShot<Void>()
        return await withTaskGroup(of: Placement?.self) { group in
            group.addTask {
                do {
                    try await self.cancelHere(sagaID, reason: reason) { inPlace.succeed() }
                    return .logged
                } catch is CancellationError {
                    // Stopped waiting once the cancellation was in place: the run still logs it.
                    return .placed
                } catch {
                    return .failed(error)
                }
            }
            group.addTask {
                do {
                    try await inPlace.value()
                    return .placed
                } catch {
                    return nil
                }
            }
            var outcome = await group.next() ?? nil
            group.cancelAll()
            for await other in group {
                // A definite outcome that arrived meanwhile wins over "in place".
                if case .placed = outcome, let other, !Self.isPlaced(other) { outcome = other }
            }
            return outcome ?? .placed
        }
    }

    private static func isPlaced(_ placement: Placement) -> Bool {
        if case .placed = placement { return true }
        return false
    }
}
