import CoreMetrics
import Metrics
import Synchronization

/// The engine's metrics. Names and labels are API: see the Observability article.
///
/// Labels are bounded: saga and step names come from registered definitions, outcomes from a fixed
/// set. A saga id is never a label.
final class SagaMetrics: Sendable {
    private struct Key: Hashable {
        var label: String
        var dimensions: [String]
    }

    private let counters = Mutex<[Key: Counter]>([:])
    private let timers = Mutex<[Key: Metrics.Timer]>([:])
    private let active: Meter
    private let factory: any MetricsFactory

    /// Uses `factory`, or the current (task-local or bootstrapped) factory at creation.
    init(factory: (any MetricsFactory)?) {
        let factory = factory ?? MetricsSystem.factory
        self.factory = factory
        active = Meter(label: "sagakit_active_sagas", factory: factory)
    }

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        let key = Key(label: label, dimensions: dimensions.flatMap { [$0.0, $0.1] })
        return counters.withLock { cache in
            if let counter = cache[key] { return counter }
            let counter = Counter(label: label, dimensions: dimensions, factory: factory)
            cache[key] = counter
            return counter
        }
    }

    private func timer(_ label: String, _ dimensions: [(String, String)]) -> Metrics.Timer {
        let key = Key(label: label, dimensions: dimensions.flatMap { [$0.0, $0.1] })
        return timers.withLock { cache in
            if let timer = cache[key] { return timer }
            let timer = Metrics.Timer(label: label, dimensions: dimensions, factory: factory)
            cache[key] = timer
            return timer
        }
    }

    func sagaStarted(_ saga: String) {
        counter("sagakit_sagas_started_total", [("saga", saga)]).increment()
    }

    func sagaFinished(_ saga: String, outcome: String) {
        counter("sagakit_sagas_finished_total", [("saga", saga), ("outcome", outcome)]).increment()
    }

    func step(_ saga: String, _ step: String, outcome: String, nanoseconds: Int64) {
        timer("sagakit_step_duration_seconds", [("saga", saga), ("step", step), ("outcome", outcome)])
            .recordNanoseconds(nanoseconds)
    }

    func compensation(_ saga: String, _ step: String, outcome: String, nanoseconds: Int64) {
        timer("sagakit_compensation_duration_seconds", [("saga", saga), ("step", step), ("outcome", outcome)])
            .recordNanoseconds(nanoseconds)
    }

    func retry(_ saga: String, _ step: String) {
        counter("sagakit_step_retries_total", [("saga", saga), ("step", step)]).increment()
    }

    func compensationRetry(_ saga: String, _ step: String) {
        counter("sagakit_compensation_retries_total", [("saga", saga), ("step", step)]).increment()
    }

    func recovered(_ saga: String) {
        counter("sagakit_recovered_total", [("saga", saga)]).increment()
    }

    func sagaLost(_ saga: String) {
        counter("sagakit_sagas_lost_total", [("saga", saga)]).increment()
    }

    func logWriteFailure() {
        counter("sagakit_log_write_failures_total", []).increment()
    }

    func activeChanged(by delta: Int) {
        if delta > 0 { active.increment(by: Double(delta)) } else { active.decrement(by: Double(-delta)) }
    }
}
