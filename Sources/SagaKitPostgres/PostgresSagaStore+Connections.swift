#if Postgres
public import PostgresNIO

extension PostgresSagaStore {
    /// Runs `body` on a connection of the store's pool, for the application's own tables in the log's
    /// database: creating them at start, reading what its local steps wrote.
    ///
    /// The connection's `search_path` is the configured ``Configuration/schema`` (when set), as for the
    /// store's own statements and for local steps. Waits until ``run()`` has opened the log.
    ///
    /// ```swift
    /// let count = try await store.withConnection { connection in
    ///     let rows = try await connection.query("SELECT count(*) FROM orders", logger: logger)
    ///     for try await count in rows.decode(Int.self) { return count }
    ///     return 0
    /// }
    /// ```
    ///
    /// - Important: Do not leave a transaction open on the connection when `body` returns.
    /// - Throws: What `body` throws, or `SagaStoreError` when the store is not open or no connection
    ///   can be had (`cannotOpen`, `io`).
    public func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await lifecycle.waitUntilReady(endpoint: endpoint)
        do {
            return try await client.withConnection(body)
        } catch let error as PSQLError where error.code != .server {
            // A statement's own errors (the server's answers) pass through; losing or not getting a
            // connection is the store's.
            if lifecycle.isFinished { throw closedError() }
            throw Self.mapping(error, endpoint: endpoint, doing: "running the application's statements")
        }
    }
}
#endif
