import Foundation
public import GRDB
public import SagaKit

/// The closure a local step hands the store: runs the step's work on the log's connection and
/// returns its encoded output.
typealias LocalStepBody = @Sendable (Database, LocalStepWork) throws -> Data

extension SagaStep {
    /// A step that writes to the saga log's own SQLite database, committed in the same transaction as
    /// the record of its outcome: exactly once.
    ///
    /// The action runs on the ``SQLiteSagaStore``'s writer connection inside a savepoint. Its writes
    /// and the `step.succeeded` record (with its output) commit together, or neither does: if the
    /// action throws, its writes are rolled back and the error is handled like any step failure
    /// (retried or compensated according to `options` and `kind`). The compensation works the same
    /// way with the `compensation.succeeded` record; it receives the output the action logged.
    ///
    /// ```swift
    /// let reserve = SagaStep<PlaceOrder, Int64>.local("reserve-stock") { db, context in
    ///     try db.execute(
    ///         sql: "INSERT INTO reservations (saga_id, sku, quantity) VALUES (?, ?, ?)",
    ///         arguments: [context.sagaID, context.input.sku, context.input.quantity])
    ///     return db.lastInsertedRowID
    /// } compensation: { db, reservation, context in
    ///     try db.execute(sql: "DELETE FROM reservations WHERE saga_id = ?", arguments: [context.sagaID])
    /// }
    /// ```
    ///
    /// - Important: The step runs only on an engine whose store is a ``SQLiteSagaStore``; on any other
    ///   store it fails with `SagaStoreError.Code.unsupported`. Keep the closures short and
    ///   free of I/O other than `db`: they run inside the log's write transaction, so every other
    ///   saga's append waits for them. Never commit, roll back or release savepoints yourself, and
    ///   write only tables in the same database file.
    ///
    /// - Parameters:
    ///   - name: The stable step name.
    ///   - kind: The step's kind. Default `SagaStepKind.compensatable` (which needs a
    ///     compensation).
    ///   - options: Retries. The timeout does not apply: the work runs to completion inside the
    ///     transaction, so keep it short.
    ///   - action: The step's work; its result is logged and passed to the compensation.
    ///   - compensation: The undo, run in the log's transaction too; its output argument is `nil`
    ///     when the action's transaction never committed. Default `nil`, for pivot and retryable steps.
    public static func local(
        _ name: String,
        kind: SagaStepKind = .compensatable,
        options: StepOptions = StepOptions(),
        action: @escaping @Sendable (Database, LocalStepContext<Input>) throws -> Output,
        compensation: (@Sendable (Database, Output?, LocalStepContext<Input>) throws -> Void)? = nil
    ) -> SagaStep {
        let body: LocalStepBody = { db, work in
            try PayloadCodec.encode(try action(db, try LocalStepContext(work)))
        }
        var undo: LocalStepBody?
        var unreachableCompensation: (@Sendable (Output?, CompensationContext<Input>) async throws -> Void)?
        if let compensation {
            undo = { db, work in
                let output = try work.loggedOutput.map {
                    try PayloadCodec.decode(Output.self, from: $0, what: "output of step '\(name)'")
                }
                try compensation(db, output, try LocalStepContext(work))
                return Data()
            }
            unreachableCompensation = { _, _ in throw needsSQLiteStore(name) }
        }
        return SagaStep(
            name: name,
            kind: kind,
            options: options,
            action: { _ in throw needsSQLiteStore(name) },
            compensation: unreachableCompensation,
            local: body,
            localCompensation: undo
        )
    }
}

private func needsSQLiteStore(_ step: String) -> SagaStoreError {
    SagaStoreError(
        .unsupported,
        message:
            "local step '\(step)' writes in the saga log's transaction and needs an engine whose store is a SQLiteSagaStore"
    )
}
