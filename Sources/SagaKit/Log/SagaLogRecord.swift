public import Foundation

/// One entry of a saga's history in the saga log.
///
/// Records are what stores persist and what recovery folds back into a saga's state; their
/// ``Kind`` names are part of the log format. Read them with ``SagaEngine/history(of:)``.
public struct SagaLogRecord: Hashable, Sendable {
    /// What a record says happened. The raw values are written to the log and never change.
    public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The name written to the log.
        public let rawValue: String
        /// A kind from its logged name.
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The saga was accepted: payload is its input; metadata holds its deadline and trace context.
        public static let sagaStarted = Kind(rawValue: "saga.started")
        /// An attempt of a step's action is about to be made (the write-ahead intent).
        public static let stepStarted = Kind(rawValue: "step.started")
        /// The step's action succeeded; payload is its output.
        public static let stepSucceeded = Kind(rawValue: "step.succeeded")
        /// One attempt failed and another will be made.
        public static let stepAttemptFailed = Kind(rawValue: "step.attempt_failed")
        /// The step failed for good.
        public static let stepFailed = Kind(rawValue: "step.failed")
        /// An attempt of a step's compensation is about to be made.
        public static let compensationStarted = Kind(rawValue: "compensation.started")
        /// The compensation succeeded.
        public static let compensationSucceeded = Kind(rawValue: "compensation.succeeded")
        /// One compensation attempt failed and another will be made.
        public static let compensationAttemptFailed = Kind(rawValue: "compensation.attempt_failed")
        /// The compensation failed for good.
        public static let compensationFailed = Kind(rawValue: "compensation.failed")
        /// Every step succeeded; payload is the saga's output.
        public static let sagaCompleted = Kind(rawValue: "saga.completed")
        /// Every started compensatable step was compensated; error is the cause.
        public static let sagaCompensated = Kind(rawValue: "saga.compensated")
        /// The saga cannot go on without a person; error is the cause.
        public static let sagaNeedsAttention = Kind(rawValue: "saga.needs_attention")
        /// An operator asked to retry a saga that needed attention; note says why.
        public static let operatorRetried = Kind(rawValue: "operator.retried")
        /// An operator marked a saga that needed attention as resolved; note says how.
        public static let operatorResolved = Kind(rawValue: "operator.resolved")
        /// An operator cancelled a running saga, which then compensates; note says why.
        public static let operatorCancelled = Kind(rawValue: "operator.cancelled")

        public var description: String { rawValue }
    }

    /// The saga the record belongs to.
    public var sagaID: String
    /// The record's position in its saga's history, from 1.
    public var sequence: Int
    /// When the record was written (from the engine's clock).
    public var timestamp: Date
    /// What happened.
    public var kind: Kind
    /// The step concerned, for step and compensation records.
    public var step: String?
    /// The attempt concerned, for step and compensation records.
    public var attempt: Int?
    /// Encoded input or output, for the kinds that carry one.
    public var payload: Data?
    /// The failure, for failure kinds.
    public var error: RecordedError?
    /// A person's note, for operator kinds.
    public var note: String?
    /// Small string values: deadline and trace context on `saga.started`.
    public var metadata: [String: String]

    /// Creates a record.
    public init(
        sagaID: String,
        sequence: Int,
        timestamp: Date,
        kind: Kind,
        step: String? = nil,
        attempt: Int? = nil,
        payload: Data? = nil,
        error: RecordedError? = nil,
        note: String? = nil,
        metadata: [String: String] = [:]
    ) {
        self.sagaID = sagaID
        self.sequence = sequence
        self.timestamp = timestamp
        self.kind = kind
        self.step = step
        self.attempt = attempt
        self.payload = payload
        self.error = error
        self.note = note
        self.metadata = metadata
    }

    /// The step's idempotency key, `<saga id>/<step name>`, for step and compensation records.
    public var idempotencyKey: String? { step.map { "\(sagaID)/\($0)" } }

    /// Decodes the payload (a saga's input on `saga.started`, a step's output on `step.succeeded`,
    /// the saga's output on `saga.completed`) as the type the code expects.
    ///
    /// - Throws: ``SagaError`` with ``SagaError/Code/undecodablePayload`` when there is no payload
    ///   or it does not decode as `T`.
    public func decodePayload<T: Decodable>(as type: T.Type = T.self) throws -> T {
        guard let payload else {
            throw SagaError(
                .undecodablePayload, sagaID: sagaID, step: step, message: "record \(sequence) (\(kind)) has no payload")
        }
        return try PayloadCodec.decode(T.self, from: payload, what: "payload of record \(sequence) (\(kind))")
    }
}

/// A failure as the log records it: data, not an `Error` value, because after a crash only what was
/// written survives.
public struct RecordedError: Codable, Hashable, Sendable, CustomStringConvertible {
    /// The error's type name, or a stable type chosen by the thrower (``NonRetryableError/type``).
    public var type: String
    /// The error's description.
    public var message: String
    /// Whether another attempt could have helped.
    public var isRetryable: Bool

    /// Creates a recorded error.
    public init(type: String, message: String, isRetryable: Bool) {
        self.type = type
        self.message = message
        self.isRetryable = isRetryable
    }

    /// Records any error, honouring ``SagaRetryClassifying`` and ``NonRetryableError``.
    public init(_ error: any Error) {
        switch error {
        case let error as NonRetryableError:
            self.init(type: error.type, message: error.message, isRetryable: false)
        case let error as SagaError:
            self.init(type: "SagaError.\(error.code)", message: error.message, isRetryable: false)
        case let error as any SagaRetryClassifying:
            self.init(type: error.sagaErrorType, message: String(describing: error), isRetryable: error.isRetryable)
        default:
            self.init(
                type: String(reflecting: Swift.type(of: error)), message: String(describing: error), isRetryable: true)
        }
    }

    public var description: String { "\(type): \(message)" }
}

/// Where a saga stands. Stored with every saga and used to list sagas.
public struct SagaStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The name stored with the saga.
    public let rawValue: String
    /// A status from its stored name.
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Running its steps forward.
    public static let running = SagaStatus(rawValue: "running")
    /// Compensating the steps that started, in reverse order.
    public static let compensating = SagaStatus(rawValue: "compensating")
    /// Every step succeeded.
    public static let completed = SagaStatus(rawValue: "completed")
    /// A step failed for good (or the saga was cancelled) and every started step was compensated.
    public static let compensated = SagaStatus(rawValue: "compensated")
    /// A compensation, or a step after the pivot, failed for good: a person must retry or resolve it.
    public static let needsAttention = SagaStatus(rawValue: "needs_attention")
    /// A person marked a saga that needed attention as resolved.
    public static let resolved = SagaStatus(rawValue: "resolved")

    /// Whether the saga will never change again (completed, compensated or resolved).
    public var isFinal: Bool { self == .completed || self == .compensated || self == .resolved }
    /// Whether the engine still has work to do on it (running or compensating).
    public var isActive: Bool { self == .running || self == .compensating }

    public var description: String { rawValue }
}
