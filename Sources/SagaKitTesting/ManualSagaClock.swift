public import Foundation
public import SagaKit
import Synchronization

/// A clock that moves only when a test says so, so retries, backoff and timeouts never sleep.
///
/// Sleepers suspend until ``advance(by:)`` moves the clock past their wake-up time. Use
/// ``waitForSleepers(count:)`` to know the engine has reached a sleep before advancing.
///
/// ```swift
/// let clock = ManualSagaClock()
/// var configuration = SagaEngine.Configuration(clock: clock)
/// // … start a saga whose step fails once …
/// await clock.waitForSleepers(count: 1)   // the engine is backing off
/// clock.advance(by: .seconds(10))         // the retry happens now
/// ```
public final class ManualSagaClock: SagaClock {
    struct Sleeper {
        var id: Int
        var wake: Duration
        var continuation: CheckedContinuation<Void, any Error>
    }

    struct State {
        var elapsed: Duration = .zero
        var sleepers: [Sleeper] = []
        var nextID = 0
        var countWaiters: [(id: Int, count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let origin: Date
    private let state = Mutex(State())

    /// Creates a clock that reads `start` until advanced.
    public init(start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        self.origin = start
    }

    /// The time since the clock was created, as advanced so far.
    public var elapsed: Duration { state.withLock { $0.elapsed } }

    /// How many sleeps are waiting for the clock to advance.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    public func now() -> Date {
        origin.addingTimeInterval(state.withLock { $0.elapsed }.seconds)
    }

    public func sleep(for duration: Duration) async throws {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (immediate, waiters) = state.withLock {
                    state -> (Result<Void, any Error>?, [CheckedContinuation<Void, Never>]) in
                    if Task.isCancelled { return (.failure(CancellationError()), []) }
                    if duration <= .zero { return (.success(()), []) }
                    state.sleepers.append(Sleeper(id: id, wake: state.elapsed + duration, continuation: continuation))
                    return (nil, Self.takeSatisfiedWaiters(&state))
                }
                if let immediate { continuation.resume(with: immediate) }
                for waiter in waiters { waiter.resume() }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock forward and wakes every sleeper whose time has come, earliest first.
    public func advance(by duration: Duration) {
        let due = state.withLock { state -> [Sleeper] in
            state.elapsed += duration
            let now = state.elapsed
            let due = state.sleepers.filter { $0.wake <= now }.sorted { $0.wake < $1.wake }
            state.sleepers.removeAll { $0.wake <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Suspends until at least `count` sleeps are waiting on this clock, or the task is cancelled (a
    /// test's `.timeLimit` then fails the test instead of leaving it hanging).
    public func waitForSleepers(count: Int) async {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if Task.isCancelled || state.sleepers.count >= count { return true }
                    state.countWaiters.append((id, count, continuation))
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard let index = state.countWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.countWaiters.remove(at: index).continuation
            }
            waiter?.resume()
        }
    }

    private static func takeSatisfiedWaiters(_ state: inout State) -> [CheckedContinuation<Void, Never>] {
        let count = state.sleepers.count
        let ready = state.countWaiters.filter { $0.count <= count }.map(\.continuation)
        state.countWaiters.removeAll { $0.count <= count }
        return ready
    }
}
