import Foundation
import Logging
import SagaKit
import Synchronization

/// What a scripted participant call does.
enum Behavior: Sendable {
    case succeed
    case fail
    case failForGood
    /// Suspends until the task is cancelled (a hung call).
    case hang
    /// Suspends until `release(_:)` is called for this operation.
    case wait
}

struct ParticipantFailure: Error, CustomStringConvertible {
    var operation: String
    var description: String { "\(operation) failed" }
}

/// A fake participant that records every call, applies effects once per key, and follows a script.
final class Participant: Sendable {
    struct Call: Equatable, Sendable {
        var operation: String
        var key: String
        var attempt: Int
    }

    struct State {
        var calls: [Call] = []
        var effects: [String: Int] = [:]
        var scripts: [String: [Behavior]] = [:]
        var defaults: [String: Behavior] = [:]
        var released: Set<String> = []
        var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]
        var hung: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextHung = 0
        var callWaiters: [(id: Int, operation: String, count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    let state = Mutex(State())

    /// The next calls of `operation` follow `behaviors`, then `then`.
    func script(_ operation: String, _ behaviors: [Behavior], then: Behavior = .succeed) {
        state.withLock {
            $0.scripts[operation] = behaviors
            $0.defaults[operation] = then
        }
    }

    var calls: [Call] { state.withLock { $0.calls } }
    func calls(_ operation: String) -> [Call] { calls.filter { $0.operation == operation } }
    var operations: [String] { calls.map(\.operation) }
    /// Effects applied, by `operation:key`; idempotency means each is 1.
    var effects: [String: Int] { state.withLock { $0.effects } }

    /// Releases calls of `operation` that wait (and future ones).
    func release(_ operation: String) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.released.insert(operation)
            return state.waiters.removeValue(forKey: operation) ?? []
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Suspends until `operation` has been called at least `count` times, or the task is cancelled
    /// (so a suite's `.timeLimit` fails a test whose call never comes, instead of hanging).
    func waitForCalls(_ operation: String, count: Int = 1) async {
        let id = state.withLock { state -> Int in
            state.nextHung += 1
            return state.nextHung
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if Task.isCancelled || state.calls.filter({ $0.operation == operation }).count >= count {
                        return true
                    }
                    state.callWaiters.append((id, operation, count, continuation))
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard let index = state.callWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.callWaiters.remove(at: index).continuation
            }
            waiter?.resume()
        }
    }

    func call(_ operation: String, key: String, attempt: Int) async throws {
        let (behavior, ready) = state.withLock { state -> (Behavior, [CheckedContinuation<Void, Never>]) in
            state.calls.append(Call(operation: operation, key: key, attempt: attempt))
            let count = state.calls.filter { $0.operation == operation }.count
            let ready = state.callWaiters.filter { $0.operation == operation && $0.count <= count }.map(\.continuation)
            state.callWaiters.removeAll { $0.operation == operation && $0.count <= count }
            var script = state.scripts[operation] ?? []
            let behavior = script.isEmpty ? (state.defaults[operation] ?? .succeed) : script.removeFirst()
            state.scripts[operation] = script
            return (behavior, ready)
        }
        for waiter in ready { waiter.resume() }
        switch behavior {
        case .succeed:
            break
        case .fail:
            throw ParticipantFailure(operation: operation)
        case .failForGood:
            throw NonRetryableError("\(operation) refused", type: "Refused")
        case .hang:
            let id = state.withLock { state -> Int in
                state.nextHung += 1
                return state.nextHung
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let cancelled = state.withLock { state -> Bool in
                        if Task.isCancelled { return true }
                        state.hung[id] = continuation
                        return false
                    }
                    if cancelled { continuation.resume() }
                }
            } onCancel: {
                let continuation = state.withLock { $0.hung.removeValue(forKey: id) }
                continuation?.resume()
            }
            throw CancellationError()
        case .wait:
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let go = state.withLock { state -> Bool in
                    if state.released.contains(operation) { return true }
                    state.waiters[operation, default: []].append(continuation)
                    return false
                }
                if go { continuation.resume() }
            }
        }
        state.withLock { state in
            if state.effects["\(operation):\(key)"] == nil { state.effects["\(operation):\(key)"] = 1 }
        }
    }
}

struct Order: Codable, Sendable, Equatable {
    var id: Int
}

struct Receipt: Codable, Sendable, Equatable {
    var step: String
    var order: Int
}

extension Participant {
    /// The action of step `name`: calls `name` with the step's key and attempt, and returns its receipt.
    func action(_ name: String) -> @Sendable (StepContext<Order>) async throws -> Receipt {
        { context in
            try await self.call(name, key: context.idempotencyKey, attempt: context.attempt)
            return Receipt(step: name, order: context.input.id)
        }
    }
}

/// A step calling a participant with its key and attempt; its compensation calls `undo-<name>`.
func compensatable(_ name: String, _ participant: Participant, options: StepOptions = StepOptions()) -> SagaStep<
    Order, Receipt
> {
    .compensatable(name, options: options, action: participant.action(name)) { _, context in
        try await participant.call("undo-\(name)", key: context.idempotencyKey, attempt: context.attempt)
    }
}

func pivot(_ name: String, _ participant: Participant, options: StepOptions = StepOptions()) -> SagaStep<Order, Receipt>
{
    .pivot(name, options: options, action: participant.action(name))
}

func retryable(_ name: String, _ participant: Participant, options: StepOptions = StepOptions()) -> SagaStep<
    Order, Receipt
> {
    .retryable(name, options: options, action: participant.action(name))
}

/// reserve (compensatable) → charge (compensatable) → ship (pivot); output: ship's receipt.
func threeStepSaga(_ participant: Participant, name: String = "three", options: StepOptions = StepOptions())
    -> SagaDefinition<Order, Receipt>
{
    let ship = pivot("ship", participant, options: options)
    return SagaDefinition(name, returning: ship) {
        compensatable("reserve", participant, options: options)
        compensatable("charge", participant, options: options)
        ship
    }
}

let quietLogger = Logger(label: "sagakit.tests", factory: { _ in SwiftLogNoOpLogHandler() })

/// Settings for tests: seeded jitter and, when given, a manual clock.
func testConfiguration(clock: (any SagaClock)? = nil) -> SagaEngine.Configuration {
    var configuration = SagaEngine.Configuration()
    configuration.jitterSeed = 42
    if let clock { configuration.clock = clock }
    return configuration
}

extension Array where Element == SagaLogRecord {
    var kinds: [String] { map(\.kind.rawValue) }
}
