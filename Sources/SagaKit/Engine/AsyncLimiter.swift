import Synchronization

/// Bounds how many sagas execute at once. Waiters are served in arrival order.
final class AsyncLimiter: Sendable {
    struct State {
        var available: Int
        var waiters: [(id: Int, continuation: CheckedContinuation<Bool, Never>)] = []
        var nextID = 0
    }

    private let state: Mutex<State>

    init(limit: Int) { state = Mutex(State(available: limit)) }

    /// Takes a permit; returns `false` if the task was cancelled while waiting.
    func acquire() async -> Bool {
        let id = nextWaiterID()
        return await withTaskCancellationHandler {
            await wait(id: id, givingUpIfCancelled: true)
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index).continuation
            }
            waiter?.resume(returning: false)
        }
    }

    /// Takes a permit, waiting for one however long it takes, cancelled or not: for a gate whose holders
    /// finish on their own (a saga's log append), where giving up would leave work half done.
    func acquireIgnoringCancellation() async {
        _ = await wait(id: nextWaiterID(), givingUpIfCancelled: false)
    }

    private func nextWaiterID() -> Int {
        state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
    }

    /// Takes a free permit at once, or queues until ``release()`` hands one over.
    private func wait(id: Int, givingUpIfCancelled: Bool) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let granted = state.withLock { state -> Bool? in
                if givingUpIfCancelled, Task.isCancelled { return false }
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append((id, continuation))
                return nil
            }
            if let granted { continuation.resume(returning: granted) }
        }
    }

    /// Returns a permit, handing it to the longest waiter if there is one.
    func release() {
        let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst().continuation
        }
        next?.resume(returning: true)
    }
}
