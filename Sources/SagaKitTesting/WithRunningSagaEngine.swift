public import SagaKit

/// Runs an engine's service loop for the duration of `body`, then cancels it.
///
/// Cancellation stops the engine at once, as a crash would between durable points: whatever was
/// not logged is lost, and a new engine on the same store resumes from the log.
///
/// ```swift
/// let outcome = try await withRunningSagaEngine(engine) { engine in
///     try await engine.run(placeOrder, id: "order-1", input: order)
/// }
/// ```
public func withRunningSagaEngine<Result: Sendable>(
    _ engine: SagaEngine,
    _ body: (SagaEngine) async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await engine.run() }
        do {
            let result = try await body(engine)
            group.cancelAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}
