import Foundation
public import SagaKit
import Synchronization

/// A fault to inject into the calls of one step, counted per step across retries and recovery.
///
/// ```swift
/// let faults = ParticipantFaults()
/// faults.inject(.loseReply(call: 1), into: "deduct-stock")
/// faults.inject(.failCompensation(times: 2), into: "deduct-stock")
/// ```
public struct ParticipantFault: Hashable, Sendable, CustomStringConvertible {
    enum Base: Hashable, Sendable {
        case fail(call: Int, retryable: Bool)
        case hang(call: Int)
        case loseReply(call: Int)
        case duplicate(call: Int)
        case failCompensation(times: Int)
        case failCompensationForGood
    }

    let base: Base

    /// The `call`-th call of the action (from 1) fails before it reaches the participant.
    public static func fail(call: Int, retryable: Bool = true) -> Self {
        Self(base: .fail(call: call, retryable: retryable))
    }
    /// The `call`-th call of the action never returns until cancelled (give the step a timeout).
    public static func hang(call: Int) -> Self { Self(base: .hang(call: call)) }
    /// The `call`-th call of the action applies its effect, then the reply is lost (a retryable error).
    public static func loseReply(call: Int) -> Self { Self(base: .loseReply(call: call)) }
    /// The `call`-th call of the action is delivered twice; the engine sees the second reply.
    public static func duplicate(call: Int) -> Self { Self(base: .duplicate(call: call)) }
    /// The compensation fails `times` times (retryably), then succeeds.
    public static func failCompensation(times: Int) -> Self { Self(base: .failCompensation(times: times)) }
    /// Every call of the compensation fails, without retry helping: the saga needs attention.
    public static let failCompensationForGood = Self(base: .failCompensationForGood)

    public var description: String {
        switch base {
        case .fail(let call, let retryable): "fail call \(call)\(retryable ? "" : " for good")"
        case .hang(let call): "hang call \(call)"
        case .loseReply(let call): "lose reply of call \(call)"
        case .duplicate(let call): "deliver call \(call) twice"
        case .failCompensation(let times): "fail compensation \(times)×"
        case .failCompensationForGood: "fail compensation for good"
        }
    }
}

/// The error an injected fault throws.
public struct InjectedFault: SagaRetryClassifying, CustomStringConvertible {
    /// The step whose call failed.
    public var step: String
    /// What was injected.
    public var fault: String
    public var isRetryable: Bool
    public var description: String { "injected fault in '\(step)': \(fault)" }
}

/// Faults injected into participant calls, installed into an engine's configuration.
///
/// The engine calls each action and compensation through these faults, so a test exercises the
/// saga's real participants under failure without changing its definition.
public final class ParticipantFaults: Sendable {
    struct State {
        var faults: [String: [ParticipantFault]] = [:]
        var actionCalls: [String: Int] = [:]
        var compensationCalls: [String: Int] = [:]
        var everyCallTwice = false
    }

    private let state = Mutex(State())

    /// Creates an empty fault schedule.
    public init() {}

    /// Injects `fault` into the calls of step `step`.
    public func inject(_ fault: ParticipantFault, into step: String) {
        state.withLock { $0.faults[step, default: []].append(fault) }
    }

    /// Delivers every action and compensation twice, for double-run checks of idempotency.
    public func deliverEveryCallTwice() {
        state.withLock { $0.everyCallTwice = true }
    }

    /// The faults injected so far, by step.
    public var schedule: [String: [ParticipantFault]] { state.withLock { $0.faults } }

    /// Returns `configuration` with these faults wrapped around every participant call.
    public func configure(_ configuration: SagaEngine.Configuration) -> SagaEngine.Configuration {
        var configuration = configuration
        let previous = configuration.interceptor
        configuration.interceptor = { [self] call, body in
            try await self.intercept(call) {
                if let previous { return try await previous(call, body) }
                return try await body()
            }
        }
        return configuration
    }

    func intercept(_ call: ParticipantCall, _ body: @Sendable () async throws -> Data) async throws -> Data {
        let (number, faults, twice) = state.withLock { state -> (Int, [ParticipantFault], Bool) in
            let faults = state.faults[call.step] ?? []
            if call.isCompensation {
                state.compensationCalls[call.step, default: 0] += 1
                return (state.compensationCalls[call.step]!, faults, state.everyCallTwice)
            }
            state.actionCalls[call.step, default: 0] += 1
            return (state.actionCalls[call.step]!, faults, state.everyCallTwice)
        }
        for fault in faults {
            switch (fault.base, call.isCompensation) {
            case (.fail(let n, let retryable), false) where n == number:
                throw InjectedFault(step: call.step, fault: fault.description, isRetryable: retryable)
            case (.hang(let n), false) where n == number:
                try await hangUntilCancelled()
            case (.loseReply(let n), false) where n == number:
                _ = try await body()
                throw InjectedFault(step: call.step, fault: fault.description, isRetryable: true)
            case (.duplicate(let n), false) where n == number:
                _ = try await body()
                return try await body()
            case (.failCompensation(let times), true) where number <= times:
                throw InjectedFault(step: call.step, fault: fault.description, isRetryable: true)
            case (.failCompensationForGood, true):
                throw InjectedFault(step: call.step, fault: fault.description, isRetryable: false)
            default:
                continue
            }
        }
        if twice { _ = try await body() }
        return try await body()
    }

    private func hangUntilCancelled() async throws {
        let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let cancelled = gate.withLock { slot -> Bool in
                    if Task.isCancelled { return true }
                    slot = continuation
                    return false
                }
                if cancelled { continuation.resume() }
            }
        } onCancel: {
            gate.withLock { slot in
                slot?.resume()
                slot = nil
            }
        }
        throw CancellationError()
    }
}
