public import Foundation
public import SagaKit
import Synchronization

/// A clock whose sleeps end at once, advancing its reading by the time slept: backoff costs nothing
/// and runs are reproducible.
///
/// Use it where time only paces retries. For tests that must control *when* a timeout fires, use
/// ``ManualSagaClock``: with this clock a step's timeout races its call.
public final class ImmediateSagaClock: SagaClock {
    private let origin: Date
    private let slept = Mutex(Duration.zero)

    /// Creates a clock reading `start` until something sleeps.
    public init(start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        self.origin = start
    }

    public func now() -> Date {
        origin.addingTimeInterval(slept.withLock { $0 }.seconds)
    }

    public func sleep(for duration: Duration) async throws {
        await Task.yield()
        try Task.checkCancellation()
        if duration > .zero { slept.withLock { $0 += duration } }
    }
}
