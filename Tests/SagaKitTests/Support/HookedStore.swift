import SagaKit
import Synchronization

/// A one-shot gate: callers of ``wait()`` suspend until ``open()``; ``waitUntilSomeoneWaits()`` lets a
/// test know the moment a caller reached the gate, so races are ordered without sleeping.
final class Gate: Sendable {
    private struct State {
        var open = false
        var waiting: [CheckedContinuation<Void, Never>] = []
        var arrived = 0
        var arrivalWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let (go, arrivals) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                state.arrived += 1
                defer { state.arrivalWaiters = [] }
                if state.open { return (true, state.arrivalWaiters) }
                state.waiting.append(continuation)
                return (false, state.arrivalWaiters)
            }
            for arrival in arrivals { arrival.resume() }
            if go { continuation.resume() }
        }
    }

    func open() {
        let waiting = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for waiter in waiting { waiter.resume() }
    }

    /// Suspends until at least one caller has reached ``wait()``.
    func waitUntilSomeoneWaits() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.arrived > 0 { return true }
                state.arrivalWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// An in-memory store whose reads and appends a test can hook: hold the next read of a saga's
/// records, make appends fail, observe what became durable.
final class HookedStore: SagaStore {
    let base = InMemorySagaStore()

    struct Hooks {
        /// Awaited once by the next `records(of:)` call, then cleared.
        var beforeNextRecordsRead: Gate?
        /// Awaited once by the next `records(of:)` call after it has read (so it returns what it
        /// read before the gate opened: a stale snapshot), then cleared.
        var afterNextRecordsRead: Gate?
        /// Appends for which this returns true wait for `appendGate` (once), then fail with `failure`
        /// if it is set, or go through.
        var holdAppend: (@Sendable (SagaLogAppend) -> Bool)?
        var appendGate: Gate?
        /// Appends for which this returns true fail (every time) with an I/O error.
        var failAppend: (@Sendable (SagaLogAppend) -> Bool)?
        /// Called after each durable append.
        var afterAppend: (@Sendable (SagaLogAppend) -> Void)?
    }

    let hooks = Mutex(Hooks())

    func records(of sagaID: String) async throws -> [SagaLogRecord] {
        let gate = hooks.withLock { hooks -> Gate? in
            defer { hooks.beforeNextRecordsRead = nil }
            return hooks.beforeNextRecordsRead
        }
        if let gate { await gate.wait() }
        let records = try await base.records(of: sagaID)
        let after = hooks.withLock { hooks -> Gate? in
            defer { hooks.afterNextRecordsRead = nil }
            return hooks.afterNextRecordsRead
        }
        if let after { await after.wait() }
        return records
    }

    func append(_ append: SagaLogAppend) async throws {
        let gate = hooks.withLock { hooks -> Gate? in
            guard let hold = hooks.holdAppend, hold(append) else { return nil }
            hooks.holdAppend = nil
            return hooks.appendGate
        }
        if let gate { await gate.wait() }
        if let fail = hooks.withLock({ $0.failAppend }), fail(append) {
            throw SagaStoreError(.io, message: "injected write failure")
        }
        try await base.append(append)
        hooks.withLock { $0.afterAppend }?(append)
    }

    func summary(of sagaID: String) async throws -> SagaSummary? { try await base.summary(of: sagaID) }
    func sagas(matching query: SagaQuery) async throws -> [SagaSummary] { try await base.sagas(matching: query) }
    func activeSagaRecords() async throws -> [SagaLogRecords] { try await base.activeSagaRecords() }
}
