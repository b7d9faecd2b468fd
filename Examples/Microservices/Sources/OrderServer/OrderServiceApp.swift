import Foundation
import HTTPSupport
public import Hummingbird
public import Logging
import Prometheus
public import SagaKit
import SagaKitPostgres
import SagaKitSQLite
import ServiceLifecycle
import UnixSignals

/// order-service assembled: the saga log (SQLite, or PostgreSQL shared by several replicas, with the
/// orders table beside it), the SagaKit engine running the place-order saga, product-service's gRPC
/// client, and the HTTP server, as the services of one `ServiceGroup`.
public struct OrderServiceApp: Sendable {
    /// Where to find everything.
    public struct Settings: Sendable {
        /// The address to listen on.
        public var host = "127.0.0.1"
        /// The port (0: any free port).
        public var port = 8000
        /// The directory of `sagas.sqlite` (unused with ``databaseURL``).
        public var dataDirectory: String
        /// A PostgreSQL URL: the saga log and the orders live there, shared by every replica given the
        /// same URL; `nil` for SQLite in ``dataDirectory``.
        public var databaseURL: String?
        /// How often a PostgreSQL log's heartbeat is renewed; `nil` for the store's default (5 s).
        public var heartbeatInterval: Duration?
        /// How long a PostgreSQL log's heartbeat holds this replica's sagas before another replica
        /// takes them over; `nil` for the store's default (30 s).
        public var lease: Duration?
        /// product-service, `host:port` (the article's `PRODUCT_SERVICE_ADDR`).
        public var productServiceAddress = "127.0.0.1:50051"
        /// user-service's base URL.
        public var userServiceURL = "http://127.0.0.1:8001"

        /// Settings with the defaults and this data directory.
        public init(dataDirectory: String) {
            self.dataDirectory = dataDirectory
        }
    }

    /// The settings.
    public let settings: Settings
    /// The saga log.
    public let store: any SagaStore
    /// The engine.
    public let engine: SagaEngine
    /// product-service's client.
    public let stock: GRPCStockService
    /// The orders reader.
    public let orders: any OrderReading
    /// The place-order saga.
    public let definition: SagaDefinition<PlaceOrder, PlacedOrder>
    let registry: PrometheusCollectorRegistry
    let logger: Logger

    /// Opens the log and builds the services.
    ///
    /// - Throws: `SagaStoreError` when the SQLite log cannot be opened or the PostgreSQL URL is not
    ///   one (a PostgreSQL server that cannot be reached fails ``run(onServerRunning:)``).
    public init(settings: Settings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        let storage: OrderStorage
        if let url = settings.databaseURL {
            var configuration = try PostgresSagaStore.Configuration(url: url)
            if let heartbeat = settings.heartbeatInterval { configuration.heartbeatInterval = heartbeat }
            if let lease = settings.lease { configuration.lease = lease }
            let postgres = PostgresSagaStore(configuration: configuration, logger: logger)
            store = postgres
            orders = PostgresOrders(store: postgres, logger: logger)
            storage = .postgres(logger: logger)
        } else {
            try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
            let path = (settings.dataDirectory as NSString).appendingPathComponent("sagas.sqlite")
            try OrderDatabase.prepare(path: path)
            store = try SQLiteSagaStore(path: path, logger: logger)
            orders = try OrderDatabase.Reader(path: path)
            storage = .sqlite
        }
        stock = try GRPCStockService(address: settings.productServiceAddress)
        registry = PrometheusCollectorRegistry()
        var configuration = SagaEngine.Configuration()
        configuration.metricsFactory = PrometheusMetricsFactory(registry: registry)
        engine = SagaEngine(store: store, configuration: configuration, logger: logger)
        // 20 attempts, backoff capped at 2 s: about 15 s of retries on average, enough to ride out a
        // product-service restart plus the gRPC client's own reconnect backoff (1 s, then ×1.6), during
        // which calls fail at once. 8 attempts spent about 3.5 s and refused orders under a restart.
        definition = PlaceOrderSaga.definition(
            users: HTTPUserDirectory(baseURL: settings.userServiceURL), stock: stock,
            options: StepOptions(retry: .exponential(maxAttempts: 20, maxBackoff: .seconds(2)), timeout: .seconds(5)),
            storage: storage)
        try engine.register(definition)
    }

    /// The HTTP application; `onServerRunning` is told the bound port.
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in })
        -> some ApplicationProtocol
    {
        Application(
            router: OrderAPI(engine: engine, definition: definition, orders: orders, registry: registry).router(),
            configuration: ApplicationConfiguration(
                address: .hostname(settings.host, port: settings.port), serverName: "order-service"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger
        )
    }

    /// Runs everything until graceful shutdown (SIGTERM, SIGINT), then closes the log.
    ///
    /// On PostgreSQL the store opens first (a wrong URL or password, or a server that is down, stops
    /// order-service with the store's error) and the orders table is created, before the engine
    /// recovers and the HTTP server listens; the store closes after the engine's last append.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: stock), .init(service: engine),
                    .init(service: application(onServerRunning: onServerRunning)),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        if let postgres = store as? PostgresSagaStore, let orders = orders as? PostgresOrders {
            try await withThrowingTaskGroup(of: Void.self) { running in
                running.addTask { try await postgres.run() }
                do {
                    try await postgres.waitUntilReady()
                    try await orders.prepare()
                    try await group.run()
                } catch {
                    try? await postgres.close()
                    throw error
                }
                try await postgres.close()
                try await running.waitForAll()
            }
        } else if let sqlite = store as? SQLiteSagaStore, let reader = orders as? OrderDatabase.Reader {
            try await group.run()
            try reader.close()
            try await sqlite.close()
        }
    }
}
