import Foundation
import Logging
import Synchronization

extension SagaEngine {
    /// Resumes every saga the log shows as running or compensating.
    func recover() async throws {
        let sagas = try await store.activeSagaRecords()
        var resumed = 0
        for saga in sagas {
            if try prepareResumption(saga) { resumed += 1 }
        }
        let stranded = runtime.withLock { $0.stranded.count }
        if !sagas.isEmpty || stranded > 0 {
            logger.info("saga recovery", metadata: ["resumed": "\(resumed)", "stranded": "\(stranded)"])
        }
    }

    /// Builds a run for a logged active saga and queues it; strands it when its definition is missing
    /// or its history does not fold. Returns whether it was queued.
    @discardableResult
    func prepareResumption(_ saga: SagaLogRecords) throws -> Bool {
        let summary = saga.summary
        guard summary.status.isActive, activeRun(summary.id) == nil else { return false }
        guard let definition = registeredDefinition(name: summary.name, fingerprint: summary.fingerprint) else {
            let (code, message) = definitionMismatchReason(name: summary.name, fingerprint: summary.fingerprint)
            strand(summary, code: code, message: message)
            return false
        }
        let machine: SagaStateMachine
        do {
            machine = try SagaStateMachine(plan: definition.plan, sagaID: summary.id, records: saga.records)
        } catch {
            strand(
                summary, code: .corruptLog,
                message: "the history of saga '\(summary.id)' does not replay: \(error.message)")
            return false
        }
        let run = SagaExecution(engine: self, definition: definition, machine: machine)
        let inserted = runtime.withLock { runtime -> Bool in
            guard runtime.active[summary.id] == nil else { return false }
            runtime.active[summary.id] = run
            runtime.stranded[summary.id] = nil
            return true
        }
        guard inserted else { return false }
        metrics.recovered(summary.name)
        run.logger.info("resuming saga from the log", metadata: ["status": "\(summary.status)"])
        enqueue(.execute(run))
        return true
    }

    func strand(_ summary: SagaSummary, code: SagaError.Code, message: String) {
        runtime.withLock {
            $0.stranded[summary.id] = StrandedSaga(
                id: summary.id, name: summary.name, fingerprint: summary.fingerprint, code: code, message: message)
        }
        logger.error(
            "saga left untouched by recovery",
            metadata: ["saga.id": "\(summary.id)", "saga.name": "\(summary.name)", "reason": "\(message)"])
    }

    func resumeStranded(matching definition: ErasedDefinition) {
        let ids = runtime.withLock { runtime -> [String] in
            guard runtime.isRunning else { return [] }
            return runtime.stranded.values.filter {
                $0.name == definition.plan.name && $0.fingerprint == definition.plan.fingerprint
            }.map(\.id)
        }
        for id in ids { enqueue(.load(id)) }
    }

    /// Loads a saga from the log and runs it (a job of the run loop).
    func load(_ sagaID: String) async {
        do {
            guard let summary = try await store.summary(of: sagaID) else { return }
            let records = try await store.records(of: sagaID)
            try prepareResumption(SagaLogRecords(summary: summary, records: records))
        } catch {
            logger.error("could not load saga to resume", metadata: ["saga.id": "\(sagaID)", "error": "\(error)"])
        }
    }

    // MARK: Sagas whose log writes failed (shared logs)

    /// After a run has ended: in a shared log, keeps a saga whose run stopped because the log could
    /// not be written among ``strandedSagas``, with ``SagaError/Code/logWriteFailed``, for the next
    /// sweep to resume from the log (``resumeSagasWhoseLogWritesFailed()``).
    ///
    /// That is a run whose log-write retries ran out (the database was unreachable for longer than
    /// ``Configuration/logWriteRetry`` lasts), and a run whose retried write found its sequence already
    /// taken: in a fenced log, that is this engine's own earlier write, committed although its
    /// connection was lost before the commit was acknowledged. A saga another engine took over
    /// (``SagaError/Code/ownershipLost``) is not kept, nor one whose run was stopped by shutdown or
    /// cancellation (recovery at the next start resumes it).
    func holdForSweepIfLogWritesFailed(_ run: SagaExecution) {
        guard sharedStore != nil, case .failure(let error)? = run.settled.result else { return }
        let cause: SagaError
        switch error {
        case let failure as SagaError where failure.code == .logWriteFailed:
            cause = failure
        case let superseded as RunSuperseded:
            guard let fallback = superseded.fallback, fallback.code == .logWriteFailed else { return }
            cause = fallback
        default:
            return
        }
        let held = runtime.withLock { runtime -> Bool in
            // A caller or an operator may have resumed the saga meanwhile: that run takes care of it.
            guard runtime.isRunning, !runtime.isShuttingDown, runtime.active[run.id] == nil else { return false }
            runtime.stranded[run.id] = StrandedSaga(
                id: run.id, name: run.plan.name, fingerprint: run.plan.fingerprint, code: .logWriteFailed,
                message: "\(cause.message); the next sweep of the shared log resumes it from the log")
            return true
        }
        if held {
            run.logger.warning(
                "saga stopped because the log could not be written; the next sweep resumes it from the log",
                metadata: ["error": "\(cause.message)"])
        }
    }

    /// Resumes, from the log, this engine's sagas that ``holdForSweepIfLogWritesFailed(_:)`` kept:
    /// called by every sweep of a shared log, so that sagas stopped by a database outage finish once
    /// the database is back, without an operator's ``resume(sagaID:)``.
    ///
    /// Each saga is read again (summary and records) after its run ended, so the run starts from what
    /// the log holds, including a write whose commit was not acknowledged; nothing is written twice. A
    /// saga the log shows finished (or gone) is dropped; one running here again is left to that run; when
    /// the log cannot be read, the rest wait for the next sweep.
    func resumeSagasWhoseLogWritesFailed() async {
        let held = runtime.withLock { runtime in
            runtime.stranded.values.filter { $0.code == .logWriteFailed }.map(\.id).sorted()
        }
        var resumed = 0
        for id in held where activeRun(id) == nil {
            do {
                guard let summary = try await store.summary(of: id), summary.status.isActive else {
                    runtime.withLock { runtime in
                        if runtime.stranded[id]?.code == .logWriteFailed { runtime.stranded[id] = nil }
                    }
                    continue
                }
                let records = try await store.records(of: id)
                if try prepareResumption(SagaLogRecords(summary: summary, records: records)) { resumed += 1 }
            } catch {
                logger.warning(
                    "could not read a saga whose log writes failed; trying again at the next sweep",
                    metadata: ["saga.id": "\(id)", "error": "\(error)"])
                break
            }
        }
        if resumed > 0 {
            logger.info("resumed sagas whose log writes had failed", metadata: ["resumed": "\(resumed)"])
        }
    }

    /// Sagas recovery left untouched because their definition is missing or differs, or their
    /// history does not replay. They stay in the log as they were.
    ///
    /// With a shared store (``SharedSagaStore``) this also lists, with ``SagaError/Code/logWriteFailed``,
    /// this engine's sagas whose run stopped because the log could not be written (the database was
    /// unreachable, or a commit's outcome was lost with its connection); the next sweep resumes them
    /// from the log, and they leave this list when resumed.
    public var strandedSagas: [StrandedSaga] {
        runtime.withLock { Array($0.stranded.values).sorted { $0.id < $1.id } }
    }
}
