package import Foundation
package import Logging

/// A step with its types erased, as a ``SagaDefinition`` stores it.
///
/// You never create one directly: the saga builder wraps each ``SagaStep`` you list.
public struct AnySagaStep: Sendable {
    /// The step's stable name.
    public let name: String
    /// The step's kind.
    public let kind: SagaStepKind
    /// The step's options.
    public let options: StepOptions
    /// Whether the step has a compensation.
    public var isCompensatable: Bool { compensate != nil }

    package let action: @Sendable (ErasedStepContext) async throws -> Data
    package let compensate: (@Sendable (Data?, ErasedStepContext) async throws -> Void)?
    /// Store-specific work for steps that commit in the log's own transaction (see `SagaKitSQLite`).
    package let local: (any Sendable)?
    package let localCompensation: (any Sendable)?

    package init<Input, Output>(_ step: SagaStep<Input, Output>) {
        self.name = step.name
        self.kind = step.kind
        self.options = step.options
        let action = step.action
        self.action = { context in
            let typed = StepContext<Input>(
                sagaID: context.sagaID,
                stepName: context.stepName,
                input: try context.typedInput(Input.self),
                idempotencyKey: context.idempotencyKey,
                attempt: context.attempt,
                logger: context.logger,
                outputs: context.outputs
            )
            return try PayloadCodec.encode(try await action(typed))
        }
        if let compensation = step.compensation {
            let stepName = step.name
            self.compensate = { data, context in
                let output: Output? = try data.map {
                    try PayloadCodec.decode(Output.self, from: $0, what: "output of step '\(stepName)'")
                }
                let typed = CompensationContext<Input>(
                    sagaID: context.sagaID,
                    stepName: context.stepName,
                    input: try context.typedInput(Input.self),
                    idempotencyKey: context.idempotencyKey,
                    attempt: context.attempt,
                    logger: context.logger,
                    outputs: context.outputs
                )
                try await compensation(output, typed)
            }
        } else {
            self.compensate = nil
        }
        self.local = step.local
        self.localCompensation = step.localCompensation
    }
}

/// The untyped context the engine hands to an erased step.
package struct ErasedStepContext: Sendable {
    package var sagaID: String
    package var stepName: String
    package var input: any Sendable
    package var idempotencyKey: String
    package var attempt: Int
    package var logger: Logger
    package var outputs: StepOutputs

    package init(
        sagaID: String,
        stepName: String,
        input: any Sendable,
        idempotencyKey: String,
        attempt: Int,
        logger: Logger,
        outputs: StepOutputs
    ) {
        self.sagaID = sagaID
        self.stepName = stepName
        self.input = input
        self.idempotencyKey = idempotencyKey
        self.attempt = attempt
        self.logger = logger
        self.outputs = outputs
    }

    package func typedInput<Input>(_ type: Input.Type) throws -> Input {
        guard let typed = input as? Input else {
            throw SagaError(.undecodablePayload, sagaID: sagaID, message: "saga input is not a \(Input.self)")
        }
        return typed
    }
}

/// The outputs earlier steps logged, decoded on demand.
package struct StepOutputs: Sendable {
    package var values: [String: Data]

    package init(_ values: [String: Data] = [:]) { self.values = values }

    package func decode<Output: Decodable>(_ step: String, as type: Output.Type, sagaID: String) throws -> Output {
        guard let data = values[step] else {
            throw SagaError(
                .outputUnavailable,
                sagaID: sagaID,
                step: step,
                message: "step '\(step)' has no logged output here: it has not succeeded before the step that asks"
            )
        }
        do {
            return try PayloadCodec.decode(Output.self, from: data, what: "output of step '\(step)'")
        } catch var error as SagaError {
            error.sagaID = sagaID
            throw error
        }
    }
}
