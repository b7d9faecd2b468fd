import Foundation
import Synchronization

/// Answers for callers awaiting a saga: from its live execution, or rebuilt from the log.
extension SagaEngine {
    // MARK: Outcomes

    func settlement(of sagaID: String) async throws -> SagaSettlement {
        if let run = activeRun(sagaID) {
            do {
                return try await run.settlement()
            } catch let superseded as RunSuperseded {
                // The log has moved past the run (it duplicated a logged saga, or was loaded from
                // records another execution has written after): make sure the saga runs, then look
                // it up again, once.
                // Another engine sharing the log owns the saga now: resuming here would be fenced too.
                if let lost = superseded.fallback, lost.code == .ownershipLost { throw lost }
                await waitForRecovery()
                if activeRun(sagaID) == nil, !isAnotherEnginesSaga(sagaID),
                    runtime.withLock({ $0.isRunning && !$0.isShuttingDown })
                {
                    try? await resume(sagaID: sagaID)
                }
                if let run = activeRun(sagaID) {
                    do {
                        return try await run.settlement()
                    } catch let again as RunSuperseded {
                        throw again.fallback ?? superseded.fallback
                            ?? SagaError(
                                .logWriteFailed, sagaID: sagaID,
                                message: "another engine is writing saga '\(sagaID)'; this engine stops running it")
                    }
                }
                if let fallback = superseded.fallback,
                    try await store.summary(of: sagaID).map({ $0.status.isActive }) ?? false
                {
                    throw fallback
                }
            }
        }
        guard let summary = try await store.summary(of: sagaID) else {
            throw SagaError(.unknownSaga, sagaID: sagaID, message: "no saga with id '\(sagaID)' is in the log")
        }
        if summary.status.isActive {
            await waitForRecovery()
            if let run = activeRun(sagaID) { return try await run.settlement() }
            if let stranded = runtime.withLock({ $0.stranded[sagaID] }) {
                throw SagaError(stranded.code, sagaID: sagaID, message: stranded.message)
            }
            let stopped = runtime.withLock { $0.hasRun && !$0.isRunning || $0.isShuttingDown }
            let how =
                stopped
                ? "this engine has stopped; it resumes when a new engine over this log runs (its run() recovers every unfinished saga)"
                : isAnotherEnginesSaga(sagaID)
                    ? "another engine sharing the log runs it, or will claim it once its owner's lease has run out"
                    : "it resumes when an engine recovers it, or with resume(sagaID:) on this engine"
            throw SagaError(
                .interrupted, sagaID: sagaID,
                message: "saga '\(sagaID)' is \(summary.status) in the log but not running in this engine; \(how)")
        }
        return Self.settlement(summary: summary, records: try await store.records(of: sagaID))
    }

    /// A settled saga's outcome rebuilt from its log, by the rule the live run follows (``SagaCause``),
    /// so the answer is the same live, later, and in another engine.
    static func settlement(summary: SagaSummary, records: [SagaLogRecord]) -> SagaSettlement {
        let cause = SagaCause.folding(records)
        var settlement = SagaSettlement(
            status: summary.status, cause: cause.error ?? summary.lastError, causeStep: cause.step)
        for record in records.reversed() {
            switch record.kind {
            case .sagaCompleted where settlement.output == nil: settlement.output = record.payload
            case .operatorResolved where settlement.note == nil: settlement.note = record.note
            default: break
            }
        }
        return settlement
    }

    func decodeOutcome<Output: Codable & Sendable>(_ settlement: SagaSettlement, as type: Output.Type) throws
        -> SagaOutcome<Output>
    {
        let failure = SagaFailure(
            step: settlement.causeStep,
            cause: settlement.cause
                ?? RecordedError(type: "SagaKit.Unknown", message: "no cause was recorded", isRetryable: false)
        )
        switch settlement.status {
        case .completed:
            return .completed(
                try PayloadCodec.decode(Output.self, from: settlement.output ?? Data(), what: "saga output"))
        case .compensated: return .compensated(failure)
        case .needsAttention: return .needsAttention(failure)
        case .resolved: return .resolved(note: settlement.note)
        default:
            throw SagaError(.interrupted, message: "the saga is still \(settlement.status)")
        }
    }
}
