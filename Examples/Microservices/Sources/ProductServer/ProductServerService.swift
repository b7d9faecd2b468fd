public import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle
public import ShopServices

/// The product-service's gRPC server as a swift-service-lifecycle `Service`: `product.ProductService`
/// (``ProductGRPCService``) and the standard health service (``HealthService``) over plaintext
/// HTTP/2 on one host and port.
///
/// ``run()`` binds, logs the bound address at `info` and serves until graceful shutdown (health turns
/// `NOT_SERVING`, the server stops accepting calls and lets the running ones finish) or cancellation
/// (stop now). ``listeningAddress`` waits for the bind, which is how a caller learns the port when
/// ``Configuration/port`` is 0.
///
/// ```swift
/// let products = try ProductService(path: "data/products.sqlite")
/// try await DemoCatalog.seedIfEmpty(products)
/// let server = ProductServerService(products: products, configuration: .init(port: 0), logger: logger)
/// let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await withThrowingDiscardingTaskGroup { tasks in
///     tasks.addTask { try await group.run() }
///     print("listening on \(try await server.listeningAddress)")
/// }
/// ```
///
/// The service does not own `products`: close it after ``run()`` returns.
public final class ProductServerService: Service, Sendable {
    /// Where the server listens.
    public struct Configuration: Hashable, Sendable {
        /// The IP address to bind: an IPv4 address, or an IPv6 address (one with a `:`). A host name
        /// is not resolved. Default `127.0.0.1`; `0.0.0.0` listens on every interface.
        public var host: String
        /// The TCP port. Default 50051; 0 lets the system pick a free port (see
        /// ``ProductServerService/listeningAddress``).
        public var port: Int

        /// Creates a configuration.
        public init(host: String = "127.0.0.1", port: Int = 50051) {
            self.host = host
            self.port = port
        }
    }

    /// The address a server is bound to.
    public struct Address: Hashable, Sendable, CustomStringConvertible {
        /// The IP address.
        public var host: String
        /// The TCP port.
        public var port: Int

        /// Creates an address.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `HOST:PORT`, with an IPv6 host in brackets.
        public var description: String {
            host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }

    /// Where the server was asked to listen.
    public let configuration: Configuration
    /// The health service the server answers with; ``run()`` marks it `NOT_SERVING` on graceful
    /// shutdown.
    public let health: HealthService
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let logger: Logger

    /// Creates the server; nothing is bound before ``run()``.
    ///
    /// - Parameters:
    ///   - products: The product service the calls go to.
    ///   - configuration: Where to listen.
    ///   - logger: The server's logger; the gRPC service logs through it too.
    ///   - interceptors: Applied to every call, in order (the test faults ``LostDeductReplies`` and ``SlowDeductReplies``).
    public init(
        products: ProductService, configuration: Configuration = Configuration(), logger: Logger,
        interceptors: [any ServerInterceptor] = []
    ) {
        self.configuration = configuration
        self.logger = logger
        self.health = HealthService()
        let address: GRPCNIOTransportCore.SocketAddress =
            configuration.host.contains(":")
            ? .ipv6(host: configuration.host, port: configuration.port)
            : .ipv4(host: configuration.host, port: configuration.port)
        let transport = HTTP2ServerTransport.Posix(address: address, transportSecurity: .plaintext)
        self.server = GRPCServer(
            transport: transport,
            services: [ProductGRPCService(products: products, logger: logger), health],
            interceptors: interceptors)
    }

    /// The address the server is bound to, once ``run()`` has bound it (this waits until then).
    ///
    /// - Throws: When binding failed, or the server has stopped.
    public var listeningAddress: Address {
        get async throws {
            let address = try await server.transport.listeningAddress
            if let ipv4 = address.ipv4 { return Address(host: ipv4.host, port: ipv4.port) }
            if let ipv6 = address.ipv6 { return Address(host: ipv6.host, port: ipv6.port) }
            return Address(host: "\(address)", port: 0)
        }
    }

    /// Binds and serves until graceful shutdown or cancellation.
    ///
    /// - Throws: When the address cannot be bound, or the transport fails.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await self.server.serve() }
                // When binding fails, serve() throws the reason (address in use…).
                guard let address = try? await self.listeningAddress else { return }
                self.logger.info("product-service listening", metadata: ["server.address": "\(address)"])
            }
        } onGracefulShutdown: {
            self.logger.info("product-service draining: no new calls, running ones finish")
            self.health.markNotServing()
            self.server.beginGracefulShutdown()
        }
        logger.info("product-service stopped")
    }
}
