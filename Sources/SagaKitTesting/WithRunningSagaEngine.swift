public import SagaKit

/// Runs an engine's service loop for the duration of `body`, then cancels it.
///
/// Cancellation stops the engine at once, as a crash would between durable points: whatever was
/// not logged is lost, and a new engine on the same store resumes from the log. If the engine's
/// `SagaEngine.run()` fails (its log cannot be read for recovery), that error is thrown, in
/// preference to the error it caused in `body`.
///
/// ```swift
/// let outcome = try await withRunningSagaEngine(engine) { engine in
///     try await engine.execute(placeOrder, id: "order-1", input: order)
/// }
/// ```
public func withRunningSagaEngine<Result: Sendable>(
    _ engine: SagaEngine,
    _ body: (SagaEngine) async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await engine.run() }
        let result: Swift.Result<Result, any Error>
        do {
            result = .success(try await body(engine))
        } catch {
            result = .failure(error)
        }
        group.cancelAll()
        do {
            try await group.waitForAll()
        } catch is CancellationError {
            // The engine was stopped by us.
        }
        return try result.get()
    }
}
