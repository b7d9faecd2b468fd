import Foundation

/// How failed attempts are retried: exponential backoff with full jitter and a cap.
///
/// The delay before attempt *n + 1* is a uniform random value in
/// `0 ... min(maxBackoff, initialBackoff × multiplier^(n−1))` ("full jitter"), which spreads retries
/// of many sagas so they do not hit a recovering service together.
///
/// ```swift
/// let policy = RetryPolicy.exponential(maxAttempts: 5, initialBackoff: .milliseconds(50), maxBackoff: .seconds(5))
/// ```
public struct RetryPolicy: Hashable, Sendable {
    /// The most attempts in all, the first included; `nil` for no limit.
    public var maxAttempts: Int?
    /// The backoff cap for the second attempt.
    public var initialBackoff: Duration
    /// The largest backoff cap.
    public var maxBackoff: Duration
    /// The factor the cap grows by with each attempt.
    public var multiplier: Double

    /// Creates a policy; see the properties for the meaning of each value.
    public init(maxAttempts: Int?, initialBackoff: Duration, maxBackoff: Duration, multiplier: Double = 2) {
        self.maxAttempts = maxAttempts.map { max(1, $0) }
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.multiplier = max(1, multiplier)
    }

    /// Exponential backoff with full jitter.
    public static func exponential(
        maxAttempts: Int?,
        initialBackoff: Duration = .milliseconds(100),
        maxBackoff: Duration = .seconds(10),
        multiplier: Double = 2
    ) -> RetryPolicy {
        RetryPolicy(
            maxAttempts: maxAttempts, initialBackoff: initialBackoff, maxBackoff: maxBackoff, multiplier: multiplier)
    }

    /// Five attempts, 100 ms initial cap, 10 s maximum cap: the default for compensatable and pivot steps.
    public static let `default` = RetryPolicy.exponential(maxAttempts: 5)
    /// No limit on attempts, 100 ms initial cap, 30 s maximum cap: the default for retryable steps.
    public static let forever = RetryPolicy.exponential(maxAttempts: nil, maxBackoff: .seconds(30))
    /// One attempt, no retries.
    public static let noRetries = RetryPolicy(maxAttempts: 1, initialBackoff: .zero, maxBackoff: .zero)

    /// Whether another attempt may follow attempt number `attempt`.
    public func allowsAttempt(after attempt: Int) -> Bool {
        maxAttempts.map { attempt < $0 } ?? true
    }

    /// The backoff cap before the attempt after `attempt` (1-based): `min(maxBackoff, initial × multiplier^(attempt−1))`.
    public func backoffCap(after attempt: Int) -> Duration {
        let initial = initialBackoff.seconds
        let cap = maxBackoff.seconds
        let exponent = Double(max(0, attempt - 1))
        let grown = initial * pow(multiplier, exponent)
        return .seconds(min(cap, grown.isFinite ? grown : cap))
    }

    /// The jittered delay before the attempt after `attempt`, drawn with `generator`.
    public func backoff(after attempt: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let cap = backoffCap(after: attempt).seconds
        guard cap > 0 else { return .zero }
        return .seconds(Double.random(in: 0...cap, using: &generator))
    }
}
