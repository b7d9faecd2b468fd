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

    @Option(help: "product-service, host:port (env PRODUCT_SERVICE_ADDR).")
    var productService: String = environment["PRODUCT_SERVICE_ADDR"] ?? "127.0.0.1:50051"

    @Option(help: "user-service's base URL (env USER_SERVICE_URL).")
    var userService: String = environment["USER_SERVICE_URL"] ?? "http://127.0.0.1:8001"

    func run() async throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "order-service")
        logger.logLevel = .info
        var settings = OrderServiceApp.Settings(dataDirectory: dataDir)
        settings.host = host
        settings.port = port
        settings.productServiceAddress = productService
        settings.userServiceURL = userService
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
