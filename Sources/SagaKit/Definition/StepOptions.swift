/// Per-step execution settings: retries, timeout and what recovery does with an unknown outcome.
///
/// ```swift
/// let options = StepOptions(retry: .exponential(maxAttempts: 5), timeout: .seconds(2))
/// ```
public struct StepOptions: Sendable {
    /// How failed attempts are retried. Defaults to ``RetryPolicy/default`` for compensatable and pivot
    /// steps, and to ``RetryPolicy/forever`` for retryable steps when left `nil`.
    public var retry: RetryPolicy?
    /// How long one attempt may run before it counts as failed with an unknown outcome.
    /// Default `nil`: no per-attempt limit (the saga deadline still applies).
    public var timeout: Duration?
    /// What recovery does with an attempt that was logged as started but has no logged outcome.
    /// Default ``UnknownOutcomePolicy/retry``.
    public var onUnknownOutcome: UnknownOutcomePolicy

    /// Creates step options; every parameter defaults as its property documents.
    public init(
        retry: RetryPolicy? = nil,
        timeout: Duration? = nil,
        onUnknownOutcome: UnknownOutcomePolicy = .retry
    ) {
        self.retry = retry
        self.timeout = timeout
        self.onUnknownOutcome = onUnknownOutcome
    }
}

/// What recovery does with a step that was logged as started but whose outcome was never logged.
///
/// The process may have died before the call, during it, or after the participant applied it. Either
/// the action runs again with the same idempotency key (``retry``, the default), or the saga treats the
/// step as failed and compensates (``compensate``), which only compensatable steps may choose.
public struct UnknownOutcomePolicy: Hashable, Sendable, CustomStringConvertible {
    package enum Base: String, Sendable {
        case retry
        case compensate
    }

    package let base: Base

    /// Call the action again with the same idempotency key.
    public static let retry = UnknownOutcomePolicy(base: .retry)
    /// Treat the step as failed and compensate it and every earlier step.
    public static let compensate = UnknownOutcomePolicy(base: .compensate)

    public var description: String { base.rawValue }
}
