import Synchronization

/// A result that is set once and awaited by any number of callers: a saga's acceptance and
/// settlement, an operator's cancellation, the engine's recovery and shutdown.
///
/// Waiting after the result is set returns it at once. A waiter whose task is cancelled stops
/// waiting with `CancellationError`; the others keep waiting.
package final class OneShot<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, any Error>?
        var waiters: [Int: CheckedContinuation<Value, any Error>] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    package init() {}

    /// The result, once set.
    package var result: Result<Value, any Error>? { state.withLock { $0.result } }

    /// Whether the result is set.
    package var isSet: Bool { result != nil }

    /// How many callers are waiting (for tests that must order a race).
    package var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Sets the result and wakes every waiter. Only the first call counts: it returns `true`.
    @discardableResult
    package func set(_ result: Result<Value, any Error>) -> Bool {
        let waiters = state.withLock { state -> [CheckedContinuation<Value, any Error>]? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume(with: result) }
        return true
    }

    /// The result, once set.
    ///
    /// - Throws: The result's error, or `CancellationError` if the task is cancelled first.
    package func value() async throws -> Value {
        let id = state.withLock { state -> Int in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
                let ready = state.withLock { state -> Result<Value, any Error>? in
                    if let result = state.result { return result }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }
}

extension OneShot where Value == Void {
    /// Sets the result to success.
    @discardableResult
    package func succeed() -> Bool { set(.success(())) }
}
