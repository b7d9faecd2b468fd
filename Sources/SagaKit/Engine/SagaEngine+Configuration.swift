public import CoreMetrics
public import Tracing

extension SagaEngine {
    /// Settings for a ``SagaEngine``; every property states its default.
    ///
    /// ```swift
    /// var configuration = SagaEngine.Configuration()
    /// configuration.maxConcurrentSagas = 256
    /// let engine = SagaEngine(store: store, configuration: configuration, logger: logger)
    /// ```
    public struct Configuration: Sendable {
        /// Sagas executing at once; others wait their turn. Default 1024.
        public var maxConcurrentSagas: Int
        /// The clock for timestamps, deadlines, backoff and timeouts. Default ``SystemSagaClock``.
        public var clock: any SagaClock
        /// Retries for compensations. Default: 10 attempts, 100 ms initial cap, 30 s maximum cap.
        public var compensationRetry: RetryPolicy
        /// Retries for log writes that fail (a busy or briefly full disk). Default: 5 attempts,
        /// 10 ms initial cap, 1 s maximum cap. When they run out the saga stops as last logged and
        /// its caller gets ``SagaError/Code/logWriteFailed``.
        public var logWriteRetry: RetryPolicy
        /// The seed for backoff jitter; `nil` draws from the system generator. Default `nil`.
        public var jitterSeed: UInt64?
        /// The tracer for saga and step spans. Default `nil`: the bootstrapped `InstrumentationSystem.tracer`.
        public var tracer: (any Tracer)?
        /// The metrics factory. Default `nil`: the factory current when the engine is created
        /// (a task-local one from `withMetricsFactory`, else the bootstrapped one).
        public var metricsFactory: (any MetricsFactory)?
        /// Test hook called at every durable point; see `SagaKitTesting`. Default `nil`.
        package var faultPoint: (@Sendable (FaultPoint) throws -> Void)?

        /// Creates a configuration with the documented defaults.
        public init(
            maxConcurrentSagas: Int = 1024,
            clock: any SagaClock = SystemSagaClock(),
            compensationRetry: RetryPolicy = .exponential(maxAttempts: 10, maxBackoff: .seconds(30)),
            logWriteRetry: RetryPolicy = .exponential(
                maxAttempts: 5, initialBackoff: .milliseconds(10), maxBackoff: .seconds(1)),
            jitterSeed: UInt64? = nil,
            tracer: (any Tracer)? = nil,
            metricsFactory: (any MetricsFactory)? = nil
        ) {
            self.maxConcurrentSagas = max(1, maxConcurrentSagas)
            self.clock = clock
            self.compensationRetry = compensationRetry
            self.logWriteRetry = logWriteRetry
            self.jitterSeed = jitterSeed
            self.tracer = tracer
            self.metricsFactory = metricsFactory
        }
    }
}

/// A durable point in a saga's execution, where the testing kit can simulate a crash.
package struct FaultPoint: Sendable, Hashable, CustomStringConvertible {
    package enum Moment: String, Sendable { case beforeAppend, afterAppend, beforeCall, afterCall }
    package var sagaID: String
    package var moment: Moment
    /// The record kinds being appended, or the step being called.
    package var detail: String

    package var description: String { "\(moment.rawValue)(\(detail))" }
}

/// Thrown by a fault hook (or a fault-injecting store) to stop a saga as if its process died:
/// the engine writes nothing more for it.
package struct SimulatedCrash: Error, Sendable {
    package init() {}
}
