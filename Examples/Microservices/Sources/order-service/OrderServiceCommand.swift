import ArgumentParser
import Foundation
import Logging
import OrderServer
import SignalReadiness

/// order-service: places orders with the SagaKit place-order saga, over HTTP.
struct OrderServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "order-service",
        abstract: "The shop's orders over HTTP (POST /orders), each placed by the place-order saga.")

    static let environment = ProcessInfo.processInfo.environment

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "The port to listen on (0: any free port; env PORT).")
    var port: Int = environment["PORT"].flatMap(Int.init) ?? 8000

    @Option(help: "The directory of the saga log (env DATA_DIR).")
    var dataDir: String = environment["DATA_DIR"] ?? "data/order-service"

    @Option(
        help: """
            A PostgreSQL URL (postgres://user:password@host:port/database): the saga log and the orders \
            live there, shared by every replica given the same URL, instead of SQLite in --data-dir \
            (env DATABASE_URL).
            """)
    var databaseURL: String?

    /// `--database-url`, else `DATABASE_URL` when set and not empty.
    var resolvedDatabaseURL: String? {
        databaseURL ?? Self.environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    @Option(help: "With --database-url: seconds between heartbeats of this replica (default 5).")
    var heartbeatSeconds: Double?

    @Option(
        help:
            "With --database-url: seconds a heartbeat holds this replica's sagas before another replica takes them over (default 30)."
    )
    var leaseSeconds: Double?

    @Option(help: "product-service, host:port (env PRODUCT_SERVICE_ADDR).")
    var productService: String = environment["PRODUCT_SERVICE_ADDR"] ?? "127.0.0.1:50051"

    @Option(help: "user-service's base URL (env USER_SERVICE_URL).")
    var userService: String = environment["USER_SERVICE_URL"] ?? "http://127.0.0.1:8001"

    func validate() throws {
        for (name, value) in [("--heartbeat-seconds", heartbeatSeconds), ("--lease-seconds", leaseSeconds)] {
            if let value, !(value > 0 && value <= 3600) {
                throw ValidationError("\(name) must be a number of seconds above 0 and at most 3600, not \(value)")
            }
        }
        if heartbeatSeconds != nil || leaseSeconds != nil, resolvedDatabaseURL == nil {
            throw ValidationError(
                "--heartbeat-seconds and --lease-seconds apply to a PostgreSQL log: give --database-url")
        }
        if let lease = leaseSeconds, lease <= (heartbeatSeconds ?? 5) {
            throw ValidationError(
                "--lease-seconds (\(lease)) must be longer than the heartbeat (\(heartbeatSeconds ?? 5) s)")
        }
    }

    func run() async throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "order-service")
        logger.logLevel = .info
        var settings = OrderServiceApp.Settings(dataDirectory: dataDir)
        settings.host = host
        settings.port = port
        settings.productServiceAddress = productService
        settings.userServiceURL = userService
        settings.databaseURL = resolvedDatabaseURL
        settings.heartbeatInterval = heartbeatSeconds.map { .milliseconds(Int64($0 * 1000)) }
        settings.lease = leaseSeconds.map { .milliseconds(Int64($0 * 1000)) }
        let app = try OrderServiceApp(settings: settings, logger: logger)
        let host = self.host
        try await app.run { [logger] port in
            // Announce only once a SIGTERM right after the line would shut down gracefully.
            if !(await SignalReadiness.waitUntilShutdownSignalsTrapped()) {
                logger.warning("the SIGTERM and SIGINT handlers are not installed yet; a signal now would not drain")
            }
            FileHandle.standardOutput.write(Data("order-service listening on \(host):\(port)\n".utf8))
        }
    }
}
