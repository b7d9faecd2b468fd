package import Foundation

/// A definition with its types erased: what the engine needs to run and recover sagas.
package struct ErasedDefinition: Sendable {
    package let plan: SagaPlan
    package let decodeInput: @Sendable (Data) throws -> any Sendable
    package let makeOutput: @Sendable (_ sagaID: String, _ input: any Sendable, StepOutputs) throws -> Data

    package init<Input, Output>(_ definition: SagaDefinition<Input, Output>) throws(SagaDefinitionError) {
        let plan = definition.plan
        try plan.validate()
        self.plan = plan
        self.decodeInput = { data in try PayloadCodec.decode(Input.self, from: data, what: "saga input") }
        let result = definition.result
        self.makeOutput = { sagaID, input, outputs in
            guard let typed = input as? Input else {
                throw SagaError(.undecodablePayload, sagaID: sagaID, message: "saga input is not a \(Input.self)")
            }
            return try PayloadCodec.encode(
                try result(SagaResultContext(sagaID: sagaID, input: typed, outputs: outputs)))
        }
    }
}
