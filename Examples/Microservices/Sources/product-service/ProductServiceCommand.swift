import ArgumentParser
import Foundation
import GRPCCore
import Logging
import ProductServer
import ServiceLifecycle
import ShopServices
import SignalReadiness
import UnixSignals

/// `product-service`: the networked shop's product service, over gRPC.
struct ProductServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "product-service",
        abstract: "The shop's product service over gRPC: product.ProductService and grpc.health.v1.Health.",
        discussion: """
            Prints 'product-service listening on HOST:PORT' on standard output once the server is bound, \
            and logs to standard error. SIGTERM or SIGINT shut it down gracefully: health turns \
            NOT_SERVING, running calls finish, and it exits with status 0.
            """)

    /// The port when neither `--port` nor `PORT` gives one.
    static let defaultPort = 50051

    @Option(help: "The IP address to listen on (0.0.0.0 for every interface).")
    var host = "127.0.0.1"

    @Option(
        help: ArgumentHelp(
            "The TCP port; 0 picks a free port. Defaults to the PORT environment variable, else \(defaultPort).",
            valueName: "port"))
    var port: Int?

    @Option(
        help: ArgumentHelp(
            "The directory holding products.sqlite, created if needed (default: product-service under the system's temporary directory).",
            valueName: "path"))
    var dataDir: String?

    @Flag(help: "Do not add the demo catalog (products 101, 102, 103) to a new database.")
    var noSeed = false

    @Option(
        help: ArgumentHelp(
            "The units every demo catalog product starts with in a new database (default: the catalog's own, "
                + "101: 100, 102: 50, 103: 10); a load test gives it enough not to run out.",
            valueName: "units"))
    var openingStock: Int?

    @Option(
        help: "The lowest log level written to standard error: trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    /// A test-only fault: see ``LostDeductReplies``.
    @Option(
        help: ArgumentHelp(
            "Test fault: apply the first N successful DeductStock calls, then answer each with UNAVAILABLE "
                + "as if its reply were lost.",
            valueName: "n", visibility: .hidden))
    var loseDeductReplies = 0

    /// A test-only fault: see ``SlowDeductReplies``.
    @Option(
        help: ArgumentHelp(
            "Test fault: apply every DeductStock call at once and answer it N milliseconds later.",
            valueName: "ms", visibility: .hidden))
    var deductReplyDelayMs = 0

    /// The test faults asked for, in order.
    func interceptors(logger: Logger) -> [any ServerInterceptor] {
        var interceptors: [any ServerInterceptor] = []
        if loseDeductReplies > 0 { interceptors.append(LostDeductReplies(count: loseDeductReplies, logger: logger)) }
        if deductReplyDelayMs > 0 { interceptors.append(SlowDeductReplies(delay: .milliseconds(deductReplyDelayMs))) }
        return interceptors
    }

    func validate() throws {
        guard (0...60_000).contains(deductReplyDelayMs) else {
            throw ValidationError("--deduct-reply-delay-ms must be from 0 to 60000, got \(deductReplyDelayMs)")
        }
        if let openingStock, openingStock < 0 {
            throw ValidationError("--opening-stock must not be negative, got \(openingStock)")
        }
        guard loseDeductReplies >= 0 else {
            throw ValidationError("--lose-deduct-replies must not be negative, got \(loseDeductReplies)")
        }
        if let port, !(0...65_535).contains(port) {
            throw ValidationError("--port must be from 0 to 65535, got \(port)")
        }
        _ = try resolvedPort()
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical")
        }
    }

    /// `--port`, else `PORT`, else the default.
    func resolvedPort() throws -> Int {
        if let port { return port }
        guard let value = ProcessInfo.processInfo.environment["PORT"], !value.isEmpty else { return Self.defaultPort }
        guard let port = Int(value), (0...65_535).contains(port) else {
            throw ValidationError("the PORT environment variable must be a port from 0 to 65535, got '\(value)'")
        }
        return port
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "product-service")

        let directory =
            dataDir
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("product-service", isDirectory: true).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let databasePath = (directory as NSString).appendingPathComponent("products.sqlite")
        Self.say("product-service data directory: \(directory)")

        let products = try ProductService(path: databasePath)
        if !noSeed, try await DemoCatalog.seedIfEmpty(products, openingStock: openingStock) {
            logger.info(
                "seeded the demo catalog",
                metadata: [
                    "products": "\(DemoCatalog.items.map { "\($0.productID)=\(openingStock ?? $0.openingStock)" })"
                ])
        }

        let server = ProductServerService(
            products: products,
            configuration: .init(host: host, port: try resolvedPort()),
            logger: logger,
            interceptors: interceptors(logger: logger))
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server, serviceName: "product-service")],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))

        do {
            try await withThrowingDiscardingTaskGroup { tasks in
                tasks.addTask { try await group.run() }
                // When binding fails, the group's own error (address in use…) is the one to report.
                guard let address = try? await server.listeningAddress else { return }
                if !(await SignalReadiness.waitUntilShutdownSignalsTrapped()) {
                    logger.warning(
                        "the SIGTERM and SIGINT handlers are not installed yet; a signal now would not drain")
                }
                Self.say("product-service listening on \(address)")
            }
        } catch {
            try? products.close()
            throw error
        }
        try products.close()
    }

    /// Writes one line to standard output at once (a pipe would otherwise buffer it).
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
