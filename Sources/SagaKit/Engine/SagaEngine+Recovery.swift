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

    /// Sagas recovery left untouched because their definition is missing or differs, or their
    /// history does not replay. They stay in the log as they were.
    public var strandedSagas: [StrandedSaga] {
        runtime.withLock { Array($0.stranded.values).sorted { $0.id < $1.id } }
    }
}
