/// What a local step's action or compensation receives besides its database connection.
///
/// A local step writes in the saga log's own database, in the transaction that records its outcome:
/// `SagaStep.local` in SagaKitSQLite (on the log's SQLite connection) and `SagaStep.postgresLocal` in
/// SagaKitPostgres (on a PostgreSQL connection of the log's pool). Both hand the step this context.
///
/// ```swift
/// let reserve = SagaStep<PlaceOrder, Int64>.local("reserve-stock") { db, context in
///     try db.execute(sql: "UPDATE stock SET reserved = reserved + ? WHERE sku = ?",
///                    arguments: [context.input.quantity, context.input.sku])
///     return db.lastInsertedRowID
/// }
/// ```
public struct LocalStepContext<Input: Sendable>: Sendable {
    /// The saga instance's id.
    public let sagaID: String
    /// The step's stable name.
    public let stepName: String
    /// The input the saga was started with, as logged.
    public let input: Input
    /// The step's key, `<saga id>/<step name>`, the same for its action and its compensation.
    ///
    /// A local step needs no idempotency key for its own writes (they commit exactly once, with its
    /// record), but it can store the key to let other systems recognise the effect.
    public let idempotencyKey: String
    /// The attempt, from 1.
    public let attempt: Int

    let outputs: StepOutputs

    /// The context of the work a store was handed; throws when the work's input is not an `Input`.
    package init(_ work: LocalStepWork) throws {
        guard let input = work.input as? Input else {
            throw SagaStoreError(
                .io,
                message:
                    "the input of saga '\(work.sagaID)' is a \(type(of: work.input)), not the \(Input.self) step '\(work.stepName)' expects"
            )
        }
        self.sagaID = work.sagaID
        self.stepName = work.stepName
        self.input = input
        self.idempotencyKey = work.idempotencyKey
        self.attempt = work.attempt
        self.outputs = work.outputs
    }
}

extension LocalStepContext where Input: Codable {
    /// Returns the output an earlier step logged, as `StepContext.output(of:)` does.
    ///
    /// ```swift
    /// let user = try context.output(of: checkUser)
    /// ```
    public func output<Output>(of step: SagaStep<Input, Output>) throws -> Output {
        try outputs.decode(step.name, as: Output.self, sagaID: sagaID)
    }
}
