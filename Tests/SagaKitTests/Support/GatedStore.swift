import SagaKit
import Synchronization

/// An in-memory store that can hold back the first append matching a predicate until released,
/// to order a race deterministically.
final class GatedStore: SagaStore {
    let base = InMemorySagaStore()

    struct State {
        var predicate: (@Sendable (SagaLogAppend) -> Bool)?
        var gate: CheckedContinuation<Void, Never>?
        var held = false
        var released = false
        var heldWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let state = Mutex(State())

    func holdOnce(where predicate: @escaping @Sendable (SagaLogAppend) -> Bool) {
        state.withLock { $0.predicate = predicate }
    }

    /// Suspends until an append is being held.
    func waitUntilHeld() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.held { return true }
                state.heldWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let gate = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.released = true
            defer { state.gate = nil }
            return state.gate
        }
        gate?.resume()
    }

    func append(_ append: SagaLogAppend) async throws {
        let hold = state.withLock { state -> Bool in
            guard let predicate = state.predicate, predicate(append) else { return false }
            state.predicate = nil
            return true
        }
        if hold {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let (go, waiters) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                    state.held = true
                    defer { state.heldWaiters = [] }
                    if state.released { return (true, state.heldWaiters) }
                    state.gate = continuation
                    return (false, state.heldWaiters)
                }
                for waiter in waiters { waiter.resume() }
                if go { continuation.resume() }
            }
        }
        try await base.append(append)
    }

    func summary(of sagaID: String) async throws -> SagaSummary? { try await base.summary(of: sagaID) }
    func records(of sagaID: String) async throws -> [SagaLogRecord] { try await base.records(of: sagaID) }
    func sagas(matching query: SagaQuery) async throws -> [SagaSummary] { try await base.sagas(matching: query) }
    func activeSagaRecords() async throws -> [SagaLogRecords] { try await base.activeSagaRecords() }
}
