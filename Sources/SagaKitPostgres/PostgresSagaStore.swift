#if Postgres
public import Foundation
public import Logging
import NIOCore
import PostgresNIO
public import SagaKit
public import ServiceLifecycle
import Synchronization

/// A saga store on PostgreSQL, for several engines sharing one log: appends are group-committed, and
/// every saga belongs to one engine at a time, fenced by an owner and an epoch.
///
/// The store is a `Service`: its ``run()`` runs the connection pool, migrates the schema, registers the
/// store's engine in `sagakit_engines` and renews its heartbeat until shutdown. Every other method waits
/// until `run()` has opened the log. Put the store before the engine in a `ServiceGroup`, so that it
/// shuts down after the engine has finished its last appends:
///
/// ```swift
/// let store = PostgresSagaStore(
///     configuration: try .init(url: "postgres://sagakit@db.internal:5432/sagakit"), logger: logger)
/// let engine = SagaEngine(store: store, logger: logger)
/// let group = ServiceGroup(services: [store, engine], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// ## Fencing
///
/// Each store has a new ``instanceID`` per start. Creating a saga writes `owner = instanceID` and
/// `epoch = 1`; the store remembers the epoch it holds for each saga it created or claimed. Every later
/// append is a compare-and-set in the statement that writes it: the row must still say
/// `owner = instanceID`, `epoch = <held epoch>` and `last_sequence = <first new sequence> - 1`. An engine
/// whose heartbeat is older than the ``Configuration/lease`` loses its running and compensating sagas to
/// the next store that calls ``claimOrphanedSagas(limit:)`` (or ``activeSagaRecords()``), which takes
/// them with `epoch + 1`; the old owner's next append to them fails with
/// `SagaStoreError.Code.ownershipLost` and writes nothing, and that engine stops running the saga. A saga that is not running or compensating (one that needs attention, say)
/// may be appended to by any store that holds no epoch for it, which then becomes its owner: that is how
/// an operator's retry or resolution reaches a saga created by an engine that is gone.
///
/// - Important: Fencing protects the log, not the participants: a step that an engine which lost its
///   lease is still executing may reach its participant once more after another engine resumed the saga.
///   Steps must be idempotent on their key, as for any at-least-once delivery. Keep
///   ``Configuration/lease`` well above ``Configuration/heartbeatInterval`` and the database's clock
///   steady; lease ages are measured by the database's clock only.
public final class PostgresSagaStore: SharedSagaStore, Service {
    /// The log format this code writes and the newest it reads, recorded as `log_format_version` in
    /// `sagakit_meta`: the same number as `SQLiteSagaStore.logFormatVersion`.
    ///
    /// Opening a log whose recorded version is higher fails with `SagaStoreError.Code.unsupportedLogFormat`.
    ///
    /// ```swift
    /// print(PostgresSagaStore.logFormatVersion) // 2
    /// ```
    public static let logFormatVersion = 2

    /// The settings the store was created with.
    public let configuration: Configuration
    /// This store's identity as an owner of sagas: new for every store, written as `owner` on the sagas
    /// it creates or claims and as `instance_id` in `sagakit_engines`.
    public let instanceID: UUID

    let client: PostgresClient
    let logger: Logger
    /// `host:port/database`, for messages and `SagaStoreError.path`.
    let endpoint: String
    let lifecycle = Lifecycle()
    let writes = WriteQueue()
    /// The epoch this store holds for each saga it created, claimed or adopted.
    let epochs = Mutex<[String: Int64]>([:])
    /// When the last successful heartbeat renewal was sent, on the monotonic clock.
    let lastRenewal = Mutex<ContinuousClock.Instant?>(nil)
    let transactions = Atomic<Int>(0)

    /// Creates a store for the database `configuration` names; it connects only when ``run()`` runs.
    ///
    /// ```swift
    /// let store = PostgresSagaStore(configuration: try .init(url: url), logger: logger)
    /// ```
    ///
    /// - Parameters:
    ///   - configuration: Where the database is, the pool size, heartbeat and lease.
    ///   - logger: Where the store logs opening, migrations, claims and failed group commits; `nil` logs
    ///     nothing.
    public init(configuration: Configuration, logger: Logger? = nil) {
        self.configuration = configuration
        self.instanceID = UUID()
        self.logger = logger ?? Logger(label: "SagaKitPostgres", factory: { _ in SwiftLogNoOpLogHandler() })
        self.endpoint = configuration.endpoint
        self.client = PostgresClient(
            configuration: Self.clientConfiguration(configuration), backgroundLogger: self.logger)
    }

    // MARK: Lifecycle

    /// Runs the store: opens the log, then serves until ``close()``, graceful shutdown or cancellation.
    ///
    /// Opening connects once directly (so that a refused connection, refused credentials or a missing
    /// database fail at once, with a `SagaStoreError` naming the server and the cause), migrates the
    /// schema under an advisory lock, and registers this store's ``instanceID`` with a heartbeat. Then it
    /// runs the connection pool, the group-commit writer and the heartbeat (every
    /// ``Configuration/heartbeatInterval``). On the way out it fails appends that arrive later with
    /// `SagaStoreError.Code.io`, and removes its row from `sagakit_engines`, so that other stores may claim
    /// its unfinished sagas at once.
    ///
    /// ```swift
    /// try await withThrowingTaskGroup(of: Void.self) { group in
    ///     group.addTask { try await store.run() }
    ///     try await store.waitUntilReady()
    ///     // ... use the store ...
    ///     try await store.close()
    /// }
    /// ```
    ///
    /// - Throws: `SagaStoreError` when opening fails: `cannotOpen` (unreachable server, refused
    ///   credentials, missing database), `unsupportedLogFormat`, `corrupt` or `io`; `io` when called twice.
    public func run() async throws {
        try lifecycle.start(endpoint: endpoint)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            do {
                try await open()
            } catch {
                let failure = Self.openingError(error, endpoint: endpoint)
                lifecycle.finish(failure: failure)
                writes.close()
                group.cancelAll()
                throw failure
            }
            lifecycle.markReady()
            logger.debug(
                "saga log opened",
                metadata: [
                    "database": "\(endpoint)", "instance_id": "\(instanceID)",
                    "log_format_version": "\(Self.logFormatVersion)",
                ])
            await withTaskGroup(of: Void.self) { inner in
                inner.addTask { await self.writeLoop() }
                inner.addTask { await self.heartbeatLoop() }
                // The heartbeat ends first: on close(), graceful shutdown or cancellation.
                _ = await inner.next()
                writes.close()
                await inner.waitForAll()
            }
            await deregister()
            lifecycle.finish(failure: nil)
            group.cancelAll()
            logger.debug("saga log closed", metadata: ["database": "\(endpoint)", "instance_id": "\(instanceID)"])
        }
    }

    /// Waits until ``run()`` has opened the log; throws the error that stopped it from opening.
    ///
    /// Every other method waits the same way, so calling this is needed only to learn early that the
    /// database cannot be used.
    ///
    /// ```swift
    /// try await store.waitUntilReady()
    /// ```
    ///
    /// - Throws: The `SagaStoreError` ``run()`` failed with, or `io` once the store is closed.
    public func waitUntilReady() async throws {
        try await lifecycle.waitUntilReady(endpoint: endpoint)
    }

    /// Stops ``run()`` as graceful shutdown would, and waits until it has ended.
    ///
    /// Appends already queued are committed first; later calls on the store throw
    /// `SagaStoreError.Code.io`. Calling `close()` again, or on a store that never ran, does nothing
    /// more.
    ///
    /// ```swift
    /// try await store.close()
    /// ```
    public func close() async throws {
        await lifecycle.close()
    }

    /// How many transactions the group-commit writer has committed; fewer than appends when it batched.
    package var committedTransactionCount: Int { transactions.load(ordering: .relaxed) }

    /// How many appends wait for a group commit (not counting those in flight).
    package var queuedAppendCount: Int { writes.count }

    /// Holds (or releases) queued appends, so that a test can put a known set of appends in one batch.
    package func holdAppendsForTesting(_ held: Bool) { writes.setPaused(held) }

    /// Runs SQL on a pooled connection and returns each row's first column as text: for tests that look
    /// at or change the tables directly.
    package func executeForTesting(_ sql: String) async throws -> [String?] {
        try await read("running test SQL") { client, logger in
            var values: [String?] = []
            for row in try await client.queryIfOpen(PostgresQuery(unsafeSQL: sql), logger: logger) {
                let cells = row.makeRandomAccess()
                values.append(cells.count == 0 ? nil : try cells[0].decode(String?.self))
            }
            return values
        }
    }

    /// Drops `configuration.schema` with everything in it, over a direct connection: for tests that
    /// made a schema of their own.
    package static func dropSchemaForTesting(_ configuration: Configuration) async throws {
        guard let schema = configuration.schema else { return }
        let logger = Logger(label: "SagaKitPostgres", factory: { _ in SwiftLogNoOpLogHandler() })
        try await withDirectConnection(configuration, logger: logger) { connection in
            _ = try await connection.queryIfOpen(
                PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \(quoteIdentifier(schema)) CASCADE"), logger: logger)
        }
    }

    /// Connects once with the store's settings, for opening and closing: the pool retries connecting in
    /// the background, while opening must fail at once with the cause.
    func withDirectConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await Self.withDirectConnection(configuration, logger: logger, body)
    }

    static func withDirectConnection<T: Sendable>(
        _ configuration: Configuration, logger: Logger, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await PostgresConnection.connect(
            configuration: try connectionConfiguration(configuration), id: 0, logger: logger)
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    private func open() async throws {
        try await withDirectConnection { connection in
            try await Self.migrate(connection, schema: configuration.schema, endpoint: endpoint, logger: logger)
            _ = try await connection.queryIfOpen(
                """
                INSERT INTO sagakit_engines (instance_id, started_at, heartbeat_at)
                VALUES (\(instanceID), clock_timestamp(), clock_timestamp())
                """, logger: logger)
        }
        lastRenewal.withLock { $0 = ContinuousClock.now }
    }

    /// Removes this store's row from `sagakit_engines`, so that its unfinished sagas are claimable at once.
    private func deregister() async {
        do {
            try await withDirectConnection { connection in
                _ = try await connection.queryIfOpen(
                    "DELETE FROM sagakit_engines WHERE instance_id = \(instanceID)", logger: logger)
            }
        } catch {
            logger.debug(
                "saga store could not remove its engine row; its sagas become claimable when its lease ends",
                metadata: [
                    "database": "\(endpoint)", "error": "\(Self.mapping(error, endpoint: endpoint, doing: "closing"))",
                ])
        }
    }

    static func openingError(_ error: any Error, endpoint: String) -> SagaStoreError {
        let mapped = SagaStoreError.mapping(error, endpoint: endpoint, doing: "opening the saga log")
        // A server that cannot be reached while opening is a log that cannot be opened.
        guard let error = error as? PSQLError, mapped.code == .io, error.code != .server else { return mapped }
        return SagaStoreError(.cannotOpen, path: endpoint, message: mapped.message)
    }

    static func mapping(_ error: any Error, endpoint: String, doing action: String) -> SagaStoreError {
        SagaStoreError.mapping(error, endpoint: endpoint, doing: action)
    }

    func closedError() -> SagaStoreError {
        SagaStoreError(.io, path: endpoint, message: "the saga store for \(endpoint) is closed")
    }

    private static func connectionConfiguration(
        _ configuration: Configuration
    ) throws -> PostgresConnection.Configuration {
        var result = PostgresConnection.Configuration(
            host: configuration.host, port: configuration.port, username: configuration.username,
            password: configuration.password, database: configuration.database,
            tls: try connectionTLS(configuration))
        let (seconds, attoseconds) = configuration.connectTimeout.components
        result.options.connectTimeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        result.options.additionalStartupParameters = startupParameters(configuration)
        return result
    }

    private static func clientConfiguration(_ configuration: Configuration) -> PostgresClient.Configuration {
        var result = PostgresClient.Configuration(
            host: configuration.host, port: configuration.port, username: configuration.username,
            password: configuration.password, database: configuration.database, tls: clientTLS(configuration.tls))
        result.options.maximumConnections = max(1, configuration.maximumConnections)
        result.options.connectTimeout = configuration.connectTimeout
        result.options.additionalStartupParameters = startupParameters(configuration)
        return result
    }

    private static func startupParameters(_ configuration: Configuration) -> [(String, String)] {
        var parameters = [("application_name", "SagaKit"), ("synchronous_commit", "on")]
        if let schema = configuration.schema { parameters.append(("search_path", quoteIdentifier(schema))) }
        return parameters
    }

    private static func clientTLS(_ tls: Configuration.TLS) -> PostgresClient.Configuration.TLS {
        switch tls.base {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
    }

    private static func connectionTLS(_ configuration: Configuration) throws -> PostgresConnection.Configuration.TLS {
        let tls = configuration.tls
        guard tls != .disable else { return .disable }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: .makeClientConfiguration())
        } catch {
            throw SagaStoreError(
                .cannotOpen, path: configuration.endpoint,
                message: "cannot set up TLS (sslmode=\(tls)) for \(configuration.endpoint): \(error)")
        }
        return tls == .prefer ? .prefer(context) : .require(context)
    }

    // MARK: Reading

    /// The summary of one saga, or `nil` if the id is unknown.
    ///
    /// Reading a running or compensating saga that this store owns (`owner = instanceID`) but holds no
    /// epoch for makes the store hold the row's epoch. That happens after one of its own commits went
    /// through while the connection carrying it was lost (the append failed with `io`, outcome unknown):
    /// the engine resumes such a saga by reading it again, and its next append then passes the fence
    /// instead of being refused as another engine's. (`owner` names this store instance alone, so no
    /// other engine can hold that epoch.)
    ///
    /// ```swift
    /// let summary = try await store.summary(of: "order-42")
    /// ```
    public func summary(of sagaID: String) async throws -> SagaSummary? {
        let (summary, ownedEpoch) = try await read("reading saga '\(sagaID)'") { client, logger in
            let rows = try await client.queryIfOpen(
                """
                SELECT \(unescaped: LogRow.sagaColumns), coalesce(owner = \(instanceID), false), epoch
                FROM sagakit_sagas WHERE id = \(sagaID)
                """, logger: logger)
            let decoder = JSONDecoder()
            var summary: SagaSummary?
            var ownedEpoch: Int64?
            for row in rows {
                summary = try LogRow.summary(row, decoder)
                let cells = row.makeRandomAccess()
                ownedEpoch = try cells[7].decode(Bool.self) ? try cells[8].decode(Int64.self) : nil
            }
            return (summary, ownedEpoch)
        }
        if let summary, summary.status.isActive, let ownedEpoch {
            epochs.withLock { epochs in
                if epochs[sagaID] == nil { epochs[sagaID] = ownedEpoch }
            }
        }
        return summary
    }

    /// One saga's records, ordered by sequence; empty if the id is unknown.
    ///
    /// ```swift
    /// for record in try await store.records(of: "order-42") { print(record.sequence, record.kind) }
    /// ```
    public func records(of sagaID: String) async throws -> [SagaLogRecord] {
        try await read("reading the records of saga '\(sagaID)'") { client, logger in
            let rows = try await client.queryIfOpen(
                "SELECT \(unescaped: LogRow.recordColumns) FROM sagakit_records WHERE saga_id = \(sagaID) ORDER BY seq",
                logger: logger)
            let decoder = JSONDecoder()
            var records: [SagaLogRecord] = []
            for row in rows { records.append(try LogRow.record(row, decoder)) }
            return records
        }
    }

    /// Sagas matching a query, oldest first (sagas started at the same instant in the order they were
    /// created).
    ///
    /// ```swift
    /// let stuck = try await store.sagas(matching: SagaQuery(status: [.needsAttention], limit: 50))
    /// ```
    public func sagas(matching query: SagaQuery) async throws -> [SagaSummary] {
        guard query.limit > 0 else { return [] }
        let statuses = query.status.map(\.rawValue).sorted()
        let name = query.name
        return try await read("listing sagas") { client, logger in
            let rows = try await client.queryIfOpen(
                """
                SELECT \(unescaped: LogRow.sagaColumns) FROM sagakit_sagas
                WHERE (cardinality(\(statuses)::text[]) = 0 OR status = ANY(\(statuses)::text[]))
                  AND (\(name)::text IS NULL OR name = \(name)::text)
                ORDER BY created_at, created_order
                LIMIT \(query.limit) OFFSET \(max(0, query.offset))
                """, logger: logger)
            let decoder = JSONDecoder()
            var summaries: [SagaSummary] = []
            for row in rows { summaries.append(try LogRow.summary(row, decoder)) }
            return summaries
        }
    }

    /// Runs a read on a pooled connection once the store is open, translating failures.
    func read<T: Sendable>(
        _ action: String, _ body: (PostgresClient, Logger) async throws -> T
    ) async throws -> T {
        try await lifecycle.waitUntilReady(endpoint: endpoint)
        do {
            return try await body(client, logger)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            if lifecycle.isFinished { throw closedError() }
            throw Self.mapping(error, endpoint: endpoint, doing: action)
        }
    }
}

/// Where a store's ``PostgresSagaStore/run()`` is: not started, opening, open, or finished (with the
/// error that stopped it opening, if any); and who waits for it.
final class Lifecycle: Sendable {
    private enum Phase {
        case idle, opening, ready
        case finished(SagaStoreError?)
    }

    private struct State {
        var phase = Phase.idle
        var readyWaiters: [CheckedContinuation<Void, any Error>] = []
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
        var closeRequested = false
    }

    private let state = Mutex(State())
    /// Ends when ``close()`` is called; the heartbeat loop waits on it.
    let stopRequests: AsyncStream<Void>
    private let stopContinuation: AsyncStream<Void>.Continuation

    init() {
        (stopRequests, stopContinuation) = AsyncStream.makeStream(of: Void.self)
    }

    func start(endpoint: String) throws(SagaStoreError) {
        try state.withLock { state throws(SagaStoreError) in
            guard case .idle = state.phase, !state.closeRequested else {
                throw SagaStoreError(
                    .io, path: endpoint, message: "the saga store for \(endpoint) was already run or closed")
            }
            state.phase = .opening
        }
    }

    func markReady() {
        let waiters = state.withLock { state in
            state.phase = .ready
            defer { state.readyWaiters = [] }
            return state.readyWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func finish(failure: SagaStoreError?) {
        let (ready, finished) = state.withLock { state in
            state.phase = .finished(failure)
            defer {
                state.readyWaiters = []
                state.finishWaiters = []
            }
            return (state.readyWaiters, state.finishWaiters)
        }
        for waiter in ready {
            waiter.resume(throwing: failure ?? SagaStoreError(.io, message: "the saga store is closed"))
        }
        for waiter in finished { waiter.resume() }
        stopContinuation.finish()
    }

    var isFinished: Bool {
        state.withLock { state in
            if case .finished = state.phase { return true }
            return false
        }
    }

    func waitUntilReady(endpoint: String) async throws {
        enum Fast {
            case ready, wait
            case fail(SagaStoreError)
        }
        let closed = SagaStoreError(.io, path: endpoint, message: "the saga store for \(endpoint) is closed")
        let fast = state.withLock { state -> Fast in
            switch state.phase {
            case .ready: .ready
            case .finished(let failure): .fail(failure ?? closed)
            case .idle, .opening: state.closeRequested ? .fail(closed) : .wait
            }
        }
        switch fast {
        case .ready: return
        case .fail(let error): throw error
        case .wait: break
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let immediate = state.withLock { state -> Result<Void, any Error>? in
                switch state.phase {
                case .ready: return .success(())
                case .finished(let failure): return .failure(failure ?? closed)
                case .idle, .opening:
                    state.readyWaiters.append(continuation)
                    return nil
                }
            }
            if let immediate { continuation.resume(with: immediate) }
        }
    }

    /// Asks ``PostgresSagaStore/run()`` to stop and waits until it has; a store that never ran is only
    /// marked closed.
    func close() async {
        enum Step { case done, wait }
        let neverRan = state.withLock { state -> Bool in
            state.closeRequested = true
            if case .idle = state.phase { return true }
            return false
        }
        if neverRan {
            finish(failure: nil)
            return
        }
        stopContinuation.finish()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let step = state.withLock { state -> Step in
                if case .finished = state.phase { return .done }
                state.finishWaiters.append(continuation)
                return .wait
            }
            if step == .done { continuation.resume() }
        }
    }
}
/// The connection of a lease had closed (its server ended the session, as a restart does) before a
/// statement could be sent on it: nothing of the statement reached the server.
struct ConnectionClosedError: Error, CustomStringConvertible {
    var description: String { "the connection was closed (the server ended the session) before the statement was sent" }
}

extension PostgresConnection {
    /// Runs `query` and collects its rows, or fails with ``ConnectionClosedError`` at once when the
    /// connection has closed.
    ///
    /// postgres-nio (1.33) loses a statement written to a connection whose channel has already closed:
    /// it is never answered, and its caller waits forever. A restart of the server (`pg_ctl restart -m
    /// fast`, a failover) makes exactly that happen to the next statement of a transaction whose session
    /// it ended between two statements (the group commit's `BEGIN`, its statement, `COMMIT`), and to a
    /// statement on a pooled connection whose close the pool has not yet seen; the store's writer would
    /// then hang with the batch. So the check and the write happen in one turn of the connection's event
    /// loop: a connection closed before fails here, and one that closes after fails the statement, as
    /// postgres-nio does for every statement it has received. The store's statements go through here.
    func queryIfOpen(_ query: PostgresQuery, logger: Logger) async throws -> PostgresQueryResult {
        let connection = self
        return try await eventLoop.flatSubmit {
            guard !connection.isClosed else {
                return connection.eventLoop.makeFailedFuture(ConnectionClosedError())
            }
            return connection.query(query, logger: logger)
        }.get()
    }
}

extension PostgresClient {
    /// ``PostgresConnection/queryIfOpen(_:logger:)`` on a connection of the pool.
    func queryIfOpen(_ query: PostgresQuery, logger: Logger) async throws -> PostgresQueryResult {
        try await withConnection { connection in try await connection.queryIfOpen(query, logger: logger) }
    }
}
#endif
