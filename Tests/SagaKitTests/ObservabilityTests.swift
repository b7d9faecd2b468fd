import InMemoryLogging
import InMemoryTracing
import Logging
import MetricsTestKit
import SagaKit
import SagaKitTesting
import Testing
import Tracing

@Suite("Logs, metrics and traces", .tags(.observability), .timeLimit(.minutes(1)))
struct ObservabilityTests {
    let participant = Participant()
    let store = InMemorySagaStore()

    @Test func everySagaLogLineCarriesSagaMetadataAndNeedsAttentionLogsOneError() async throws {
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "sagakit", factory: { _ in handler })
        logger.logLevel = .debug
        participant.script("ship", [.failForGood])
        participant.script("undo-charge", [], then: .failForGood)
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: logger)
        let outcome = try await withRunningSagaEngine(engine) { engine in
            try await engine.execute(threeStepSaga(participant), id: "log-1", input: Order(id: 1))
        }
        #expect(outcome.status == .needsAttention)
        let sagaLines = handler.entries.filter { $0.metadata["saga.id"] != nil }
        #expect(sagaLines.count >= 6)
        for entry in sagaLines {
            #expect(entry.metadata["saga.id"] == "log-1")
            #expect(entry.metadata["saga.name"] == "three")
        }
        let stepLines = sagaLines.filter { $0.message.description.hasPrefix("step") }
        #expect(!stepLines.isEmpty)
        for entry in stepLines {
            #expect(entry.metadata["saga.step"] != nil)
            #expect(entry.metadata["saga.step.attempt"] != nil)
        }
        let errors = handler.entries.filter { $0.level == .error }
        #expect(errors.count == 1)
        #expect(errors.first?.message.description == "saga needs attention")
        #expect(errors.first?.metadata["saga.step"] == "charge")
    }

    @Test func metricsUseBoundedLabels() async throws {
        let metrics = TestMetrics()
        var configuration = testConfiguration()
        configuration.metricsFactory = metrics
        let clock = ManualSagaClock()
        configuration.clock = clock
        participant.script("charge", [.fail])
        let options = StepOptions(
            retry: .exponential(maxAttempts: 3, initialBackoff: .seconds(1), maxBackoff: .seconds(1)))
        let engine = SagaEngine(store: store, configuration: configuration, logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            let handle = try await engine.start(
                threeStepSaga(participant, options: options), id: "m-1", input: Order(id: 2))
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(1))
            _ = try await handle.outcome()
            participant.script("ship", [.failForGood])
            _ = try await engine.execute(threeStepSaga(participant, options: options), id: "m-2", input: Order(id: 3))
        }
        #expect(metrics.counterTotal(label: "sagakit_sagas_started_total", dimensions: [("saga", "three")]) == 2)
        #expect(
            metrics.counterTotal(
                label: "sagakit_sagas_finished_total", dimensions: [("saga", "three"), ("outcome", "completed")]) == 1)
        #expect(
            metrics.counterTotal(
                label: "sagakit_sagas_finished_total", dimensions: [("saga", "three"), ("outcome", "compensated")]) == 1
        )
        #expect(
            metrics.counterTotal(
                label: "sagakit_step_retries_total", dimensions: [("saga", "three"), ("step", "charge")]) == 1)
        let chargeTimers = metrics.timers(
            label: "sagakit_step_duration_seconds",
            dimensions: [("saga", "three"), ("step", "charge"), ("outcome", "succeeded")])
        #expect(chargeTimers.first?.values.count == 2)
        let undo = metrics.timers(
            label: "sagakit_compensation_duration_seconds",
            dimensions: [("saga", "three"), ("step", "reserve"), ("outcome", "succeeded")])
        #expect(undo.first?.values.count == 1)
        // No label ever carries a saga id.
        let labels =
            metrics.counters.flatMap { $0.dimensions.map(\.1) } + metrics.timers.flatMap { $0.dimensions.map(\.1) }
        #expect(!labels.contains { $0.hasPrefix("m-") })
    }

    @Test func spansNestStepsUnderTheSagaAndRecoveryContinuesTheOriginalTrace() async throws {
        let tracer = InMemoryTracer()
        var configuration = testConfiguration()
        configuration.tracer = tracer
        let saga = threeStepSaga(participant)
        let plan = CrashPlan(write: 2, moment: .afterWrite)
        let first = SagaEngine(store: store, configuration: plan.configure(configuration), logger: quietLogger)
        let requestSpan = tracer.startSpan("POST /orders")
        _ = try? await withRunningSagaEngine(first) { engine in
            try await ServiceContext.withValue(requestSpan.context) {
                try await engine.execute(saga, id: "t-1", input: Order(id: 4))
            }
        }
        requestSpan.end()
        let second = SagaEngine(store: store, configuration: configuration, logger: quietLogger)
        let outcome = try await withRunningSagaEngine(second) { engine in
            try engine.register(saga)
            return try await engine.handle(for: "t-1", output: Receipt.self).outcome()
        }
        #expect(outcome.status == .completed)
        let spans = tracer.finishedSpans
        let request = try #require(spans.first { $0.operationName == "POST /orders" })
        let sagaSpans = spans.filter { $0.operationName == "saga three" }
        #expect(sagaSpans.count == 2, "one span per run: the original and the recovered one")
        for span in sagaSpans {
            #expect(span.traceID == request.traceID, "the trace context is restored from the log")
            #expect(span.parentSpanID == request.spanID)
            #expect(span.attributes["saga.id"]?.toSpanAttribute() == "t-1")
        }
        let recovered = try #require(sagaSpans.first { $0.attributes["saga.recovered"] != nil })
        let ship = try #require(spans.first { $0.operationName == "step ship" })
        #expect(ship.parentSpanID == recovered.spanID)
        #expect(ship.traceID == request.traceID)
    }
}
