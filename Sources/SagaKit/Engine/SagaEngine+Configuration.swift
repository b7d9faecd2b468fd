public import CoreMetrics
package import Foundation
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
        ///
        /// - Precondition: At least 1, checked whenever it is set: with 0 no saga would ever run.
        public var maxConcurrentSagas: Int {
            get { concurrencyLimit }
            set {
                Self.checkConcurrency(newValue)
                concurrencyLimit = newValue
            }
        }
        private var concurrencyLimit: Int
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
        /// Test hook wrapping every participant call (action or compensation); see `SagaKitTesting`.
        package var interceptor: (@Sendable (ParticipantCall, @Sendable () async throws -> Data) async throws -> Data)?
        /// A deliberately broken behaviour, for tests of the testing kit only. Default `nil`.
        package var plantedBug: PlantedBug?

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
            Self.checkConcurrency(maxConcurrentSagas)
            self.concurrencyLimit = maxConcurrentSagas
            self.clock = clock
            self.compensationRetry = compensationRetry
            self.logWriteRetry = logWriteRetry
            self.jitterSeed = jitterSeed
            self.tracer = tracer
            self.metricsFactory = metricsFactory
        }

        private static func checkConcurrency(_ value: Int) {
            precondition(value >= 1, "SagaEngine.Configuration.maxConcurrentSagas must be at least 1, not \(value)")
        }
    }
}

/// A durable point in a saga's execution, where the testing kit can simulate a crash.
package struct FaultPoint: Sendable, Hashable, CustomStringConvertible {
    package enum Moment: String, Sendable {
        case beforeAppend, afterAppend, beforeCall, afterCall
        /// A participant call failed (not a durable point: the engine learned the outcome).
        case callFailed
    }
    package var sagaID: String
    package var moment: Moment
    /// The step called, for call moments.
    package var step: String?
    /// Whether the call is a compensation, for call moments.
    package var isCompensation: Bool
    /// The record kinds appended, for append moments.
    package var records: [String]

    package init(
        sagaID: String, moment: Moment, step: String? = nil, isCompensation: Bool = false, records: [String] = []
    ) {
        self.sagaID = sagaID
        self.moment = moment
        self.step = step
        self.isCompensation = isCompensation
        self.records = records
    }

    /// The record kinds being appended, or the step being called.
    package var detail: String {
        switch moment {
        case .beforeAppend, .afterAppend: records.joined(separator: "+")
        case .beforeCall, .afterCall, .callFailed: (isCompensation ? "compensate " : "") + (step ?? "")
        }
    }

    package var description: String { "\(moment.rawValue)(\(detail))" }
}

/// A participant call as the engine is about to make it, for the testing kit's interceptor.
package struct ParticipantCall: Sendable, Hashable {
    package var sagaID: String
    package var step: String
    package var isCompensation: Bool
    package var attempt: Int
    package var idempotencyKey: String
}

/// Deliberately broken engine behaviour, for proving that the testing kit catches bugs.
package struct PlantedBug: Hashable, Sendable {
    package enum Base: Sendable { case skipWriteAheadIntent, resolveWithoutCompareAndSet }
    package let base: Base
    /// A step's intent is written after its participant call, with its outcome, instead of before.
    package static let skipWriteAheadIntent = PlantedBug(base: .skipWriteAheadIntent)
    /// `resolve(sagaID:note:)` checks the saga's status and reads its records in two separate steps
    /// and appends after whatever it read, so a retry that runs in between is ended under its feet.
    package static let resolveWithoutCompareAndSet = PlantedBug(base: .resolveWithoutCompareAndSet)
}

/// Thrown by a fault hook (or a fault-injecting store) to stop a saga as if its process died:
/// the engine writes nothing more for it.
package struct SimulatedCrash: Error, Sendable {
    package init() {}
}
