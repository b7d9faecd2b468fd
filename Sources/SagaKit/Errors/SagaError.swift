/// An error from the saga engine, with a bounded code and the saga it concerns.
///
/// ```swift
/// do { try await engine.cancel(sagaID: "order-42", reason: "customer asked") }
/// catch let error as SagaError where error.code == .cannotCancel { print(error.message) }
/// ```
public struct SagaError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The bounded kind of error; usable as a metric label.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Sendable {
            case shuttingDown, unknownSaga, sagaIDConflict, definitionNotRegistered, definitionMismatch
            case invalidOperatorAction, cannotCancel, logWriteFailed, interrupted, undecodablePayload
            case outputUnavailable, invalidSagaID, corruptLog, ownershipLost
        }

        let base: Base

        /// The engine is shutting down and accepts no new sagas.
        public static let shuttingDown = Code(base: .shuttingDown)
        /// No saga with that id is in the log.
        public static let unknownSaga = Code(base: .unknownSaga)
        /// A saga with that id exists but is another saga (another name).
        public static let sagaIDConflict = Code(base: .sagaIDConflict)
        /// The saga's definition is not registered with this engine.
        public static let definitionNotRegistered = Code(base: .definitionNotRegistered)
        /// The registered definition's fingerprint differs from the one the saga was started with.
        public static let definitionMismatch = Code(base: .definitionMismatch)
        /// The operator action does not apply to the saga in its current state.
        public static let invalidOperatorAction = Code(base: .invalidOperatorAction)
        /// The saga is past its pivot (or finished) and can no longer be cancelled.
        public static let cannotCancel = Code(base: .cannotCancel)
        /// The saga log could not be written; the saga stays as last logged and resumes on recovery.
        public static let logWriteFailed = Code(base: .logWriteFailed)
        /// The engine stopped before the saga finished; it resumes from the log on the next start.
        public static let interrupted = Code(base: .interrupted)
        /// A logged payload no longer decodes as the type the code expects.
        public static let undecodablePayload = Code(base: .undecodablePayload)
        /// A step asked for the output of a step that has not succeeded before it.
        public static let outputUnavailable = Code(base: .outputUnavailable)
        /// The saga id is empty, too long, or holds control characters.
        public static let invalidSagaID = Code(base: .invalidSagaID)
        /// The log holds a sequence of records the state machine does not allow.
        public static let corruptLog = Code(base: .corruptLog)
        /// Another engine sharing the log (a ``SharedSagaStore``) took the saga over after this
        /// engine's lease ran out: this engine stopped running it, and the saga goes on there.
        public static let ownershipLost = Code(base: .ownershipLost)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// The saga concerned, if any.
    public var sagaID: String?
    /// The step concerned, if any.
    public var step: String?
    /// A sentence naming the problem.
    public let message: String

    package init(_ code: Code, sagaID: String? = nil, step: String? = nil, message: String) {
        self.code = code
        self.sagaID = sagaID
        self.step = step
        self.message = message
    }

    public var description: String {
        var text = "saga error (\(code))"
        if let sagaID { text += " [saga \(sagaID)]" }
        return text + ": " + message
    }
}

/// An error a step can throw to say whether retrying could help.
///
/// Every error is retryable unless it conforms to this protocol and says otherwise. Throw
/// ``NonRetryableError`` for business failures (insufficient stock) that should go straight to
/// compensation.
public protocol SagaRetryClassifying: Error {
    /// Whether another attempt could succeed.
    var isRetryable: Bool { get }
    /// The stable name recorded in the log as ``RecordedError/type``. Default: the type's name,
    /// which changes if you rename the type; give your errors names of their own.
    var sagaErrorType: String { get }
}

extension SagaRetryClassifying {
    public var sagaErrorType: String { String(reflecting: Self.self) }
}

/// A failure that no retry can fix: the step fails for good at once.
///
/// ```swift
/// guard stock >= quantity else { throw NonRetryableError("insufficient stock", type: "OutOfStock") }
/// ```
public struct NonRetryableError: SagaRetryClassifying, Hashable, CustomStringConvertible {
    /// A stable name for the kind of failure, recorded in the log.
    public let type: String
    /// What happened.
    public let message: String
    public var isRetryable: Bool { false }
    public var sagaErrorType: String { type }

    /// Creates a non-retryable error.
    public init(_ message: String, type: String = "NonRetryableError") {
        self.message = message
        self.type = type
    }

    public var description: String { "\(type): \(message)" }
}

extension SagaError {
    /// Two errors are equal when their codes are: the code is what callers branch on; the message
    /// and context describe one occurrence.
    ///
    /// ```swift
    /// #expect(first == second)  // both saga errors have the same code
    /// ```
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    /// Hashes the code only, consistently with `==`.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
