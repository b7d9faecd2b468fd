public import Logging

/// What a step's action receives: the saga input, earlier steps' outputs and its idempotency key.
///
/// ```swift
/// let createOrder = SagaStep<PlaceOrder, OrderID>.pivot("create-order") { context in
///     let reservation = try context.output(of: deductStock)
///     return try await orders.create(reservation, key: context.idempotencyKey)
/// }
/// ```
public struct StepContext<Input: Codable & Sendable>: Sendable {
    /// The saga instance's id, chosen by the caller of ``SagaEngine/start(_:id:input:options:)``.
    public let sagaID: String
    /// The step's stable name.
    public let stepName: String
    /// The input the saga was started with, as logged.
    public let input: Input
    /// A key stable across retries and recovery: `<saga id>/<step name>`.
    ///
    /// - Important: Pass it to the participant and have the participant apply the effect at most once
    ///   per key. SagaKit runs actions *at least* once; the key is what makes that exactly-once in effect.
    public let idempotencyKey: String
    /// The attempt number, starting at 1 and counted across crashes.
    public let attempt: Int
    /// A logger carrying `saga.id`, `saga.name`, `saga.step` and `saga.step.attempt` metadata.
    public let logger: Logger

    let outputs: StepOutputs

    /// Returns the output an earlier step logged.
    ///
    /// - Throws: ``SagaError`` with code ``SagaError/Code/outputUnavailable`` when the step has not
    ///   succeeded before this one (a later step, or a sibling in the same parallel group), or
    ///   ``SagaError/Code/undecodablePayload`` when the logged bytes no longer decode as `Output`.
    public func output<Output>(of step: SagaStep<Input, Output>) throws -> Output {
        try outputs.decode(step.name, as: Output.self, sagaID: sagaID)
    }
}

/// What a compensation receives: the saga input, the output its step logged, and the step's key.
public struct CompensationContext<Input: Codable & Sendable>: Sendable {
    /// The saga instance's id.
    public let sagaID: String
    /// The name of the step being compensated.
    public let stepName: String
    /// The input the saga was started with.
    public let input: Input
    /// The same key the step's action received: `<saga id>/<step name>`.
    ///
    /// - Important: The participant should key the undo by it, so that undoing twice, or undoing an
    ///   action that never took effect, changes nothing.
    public let idempotencyKey: String
    /// The compensation attempt, starting at 1 and counted across crashes.
    public let attempt: Int
    /// A logger carrying the saga's metadata.
    public let logger: Logger

    let outputs: StepOutputs

    /// Returns the output another step logged, for compensations that need more than their own step's.
    public func output<Output>(of step: SagaStep<Input, Output>) throws -> Output {
        try outputs.decode(step.name, as: Output.self, sagaID: sagaID)
    }
}

/// What a saga's result closure receives once every step has succeeded.
public struct SagaResultContext<Input: Codable & Sendable>: Sendable {
    /// The saga instance's id.
    public let sagaID: String
    /// The input the saga was started with.
    public let input: Input

    let outputs: StepOutputs

    /// Returns the output a step logged.
    public func output<Output>(of step: SagaStep<Input, Output>) throws -> Output {
        try outputs.decode(step.name, as: Output.self, sagaID: sagaID)
    }
}
