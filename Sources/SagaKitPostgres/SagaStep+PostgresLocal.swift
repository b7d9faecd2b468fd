#if Postgres
import Foundation
public import PostgresNIO
public import SagaKit

/// The closure a PostgreSQL local step hands the store: runs the step's work on a connection inside
/// the transaction that will hold its outcome record, and returns its encoded output.
typealias PostgresLocalStepBody = @Sendable (PostgresConnection, LocalStepWork) async throws -> Data

extension SagaStep {
    /// A step that writes to the saga log's own PostgreSQL database, committed in the same transaction
    /// as the record of its outcome: exactly once, and fenced like every append.
    ///
    /// The action runs on a connection of the ``PostgresSagaStore``'s pool, inside a transaction the
    /// store opened. After it returns, the store writes the `step.succeeded` record (with the output)
    /// in the same transaction, under the saga's owner-and-epoch fence, and commits. If the action
    /// throws, the transaction is rolled back and the error is handled like any step failure (retried
    /// or compensated according to `options` and `kind`). If the fence refuses the record (another
    /// engine took the saga over), the action's writes are rolled back with it and this engine stops
    /// running the saga. The compensation works the same way with the `compensation.succeeded` record;
    /// it receives the output the action logged.
    ///
    /// ```swift
    /// let createOrder = SagaStep<PlaceOrder, Int64>.postgresLocal("create-order", kind: .pivot) { connection, context in
    ///     let rows = try await connection.query(
    ///         "INSERT INTO orders (saga_id, quantity) VALUES (\(context.sagaID), \(context.input.quantity)) RETURNING id",
    ///         logger: logger)
    ///     for try await id in rows.decode(Int64.self) { return id }
    ///     throw OrderNotWritten()
    /// }
    /// ```
    ///
    /// - Important: The step runs only on an engine whose store is a ``PostgresSagaStore``; on any
    ///   other store it fails with `SagaStoreError.Code.unsupported`. Use only `connection`, for tables
    ///   of the log's database; never run `BEGIN`, `COMMIT` or `ROLLBACK` on it. Keep the work short:
    ///   the saga's other appends wait for its transaction, and row locks it takes are held until the
    ///   commit.
    ///
    /// - Parameters:
    ///   - name: The stable step name.
    ///   - kind: The step's kind. Default `SagaStepKind.compensatable` (which needs a compensation).
    ///   - options: Retries. The timeout does not apply: the work runs to completion inside the
    ///     transaction.
    ///   - action: The step's work; its result is logged and passed to the compensation.
    ///   - compensation: The undo, run in a transaction of its own with its record; its output argument
    ///     is `nil` when the action's transaction never committed. Default `nil`, for pivot and
    ///     retryable steps.
    public static func postgresLocal(
        _ name: String,
        kind: SagaStepKind = .compensatable,
        options: StepOptions = StepOptions(),
        action: @escaping @Sendable (PostgresConnection, LocalStepContext<Input>) async throws -> Output,
        compensation: (@Sendable (PostgresConnection, Output?, LocalStepContext<Input>) async throws -> Void)? = nil
    ) -> SagaStep {
        let body: PostgresLocalStepBody = { connection, work in
            try PayloadCodec.encode(try await action(connection, try LocalStepContext(work)))
        }
        var undo: PostgresLocalStepBody?
        var unreachableCompensation: (@Sendable (Output?, CompensationContext<Input>) async throws -> Void)?
        if let compensation {
            undo = { connection, work in
                let output = try work.loggedOutput.map {
                    try PayloadCodec.decode(Output.self, from: $0, what: "output of step '\(name)'")
                }
                try await compensation(connection, output, try LocalStepContext(work))
                return Data()
            }
            unreachableCompensation = { _, _ in throw needsPostgresStore(name) }
        }
        return SagaStep(
            name: name,
            kind: kind,
            options: options,
            action: { _ in throw needsPostgresStore(name) },
            compensation: unreachableCompensation,
            local: body,
            localCompensation: undo
        )
    }
}

private func needsPostgresStore(_ step: String) -> SagaStoreError {
    SagaStoreError(
        .unsupported,
        message:
            "local step '\(step)' writes in the saga log's transaction and needs an engine whose store is a PostgresSagaStore"
    )
}
#endif
