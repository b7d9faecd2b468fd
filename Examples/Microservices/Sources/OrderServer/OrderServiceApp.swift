import Foundation
import HTTPSupport
public import Hummingbird
public import Logging
import Prometheus
public import SagaKit
public import SagaKitSQLite
import ServiceLifecycle
import UnixSignals

/// order-service assembled: the saga log (SQLite, with the orders table beside it), the SagaKit
/// engine running the place-order saga, product-service's gRPC client, and the HTTP server, as the
/// services of one `ServiceGroup`.
public struct OrderServiceApp: Sendable {
    /// Where to find everything.
    public struct Settings: Sendable {
        /// The address to listen on.
        public var host = "127.0.0.1"
        /// The port (0: any free port).
        public var port = 8000
        /// The directory of `sagas.sqlite`.
        public var dataDirectory: String
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
    public let store: SQLiteSagaStore
    /// The engine.
    public let engine: SagaEngine
    /// product-service's client.
    public let stock: GRPCStockService
    /// The orders reader.
    public let orders: OrderDatabase.Reader
    /// The place-order saga.
    public let definition: SagaDefinition<PlaceOrder, PlacedOrder>
    let registry: PrometheusCollectorRegistry
    let logger: Logger

    /// Opens the log and builds the services.
    public init(settings: Settings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
        let path = (settings.dataDirectory as NSString).appendingPathComponent("sagas.sqlite")
        try OrderDatabase.prepare(path: path)
        store = try SQLiteSagaStore(path: path, logger: logger)
        orders = try OrderDatabase.Reader(path: path)
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
            options: StepOptions(retry: .exponential(maxAttempts: 20, maxBackoff: .seconds(2)), timeout: .seconds(5)))
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
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: stock), .init(service: engine),
                    .init(service: application(onServerRunning: onServerRunning)),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
        try orders.close()
        try await store.close()
    }
}
