public import Foundation

/// The engine's source of time: wall-clock readings for deadlines and log timestamps, and sleeps for
/// backoff and timeouts.
///
/// Production code uses ``SystemSagaClock``; tests inject `ManualSagaClock` from `SagaKitTesting` so
/// that retries and timeouts never sleep for real.
public protocol SagaClock: Sendable {
    /// The current wall-clock time.
    func now() -> Date
    /// Suspends for `duration`, or throws `CancellationError` when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

/// The real clock: `Date()` and `Task.sleep`.
public struct SystemSagaClock: SagaClock {
    /// Creates the system clock.
    public init() {}

    public func now() -> Date { Date() }

    public func sleep(for duration: Duration) async throws {
        try await Task.sleep(for: duration)
    }
}
