import GRPCCore
import GRPCNIOTransportHTTP2
import ProductContract
import SagaKit
public import ServiceLifecycle

/// What the place-order saga asks of product-service.
///
/// A definite refusal (unknown product, bad quantity, out of stock, a key already refunded) throws
/// a `NonRetryableError`, so the saga compensates. Anything else (the service is down, the reply is
/// lost or late) leaves the outcome unknown: the error is retryable, and the step is retried with
/// the same key, which product-service applies at most once.
public protocol StockService: Sendable {
    /// Deducts `quantity` units of `productID`, once per `key`.
    func deduct(productID: Int32, quantity: Int32, key: String) async throws
    /// Refunds the deduction made with `key`, once; leaves a tombstone if there was none.
    func refund(key: String) async throws
    /// The units in stock.
    func stock(productID: Int32) async throws -> Int32
}

/// product-service over gRPC (HTTP/2, plaintext on loopback or inside the mesh), as a
/// swift-service-lifecycle `Service` that runs the client's connections.
public final class GRPCStockService: StockService, Service {
    let client: GRPCClient<HTTP2ClientTransport.Posix>
    let products: Product_ProductService.Client<HTTP2ClientTransport.Posix>
    /// Every call's deadline.
    public let callTimeout: Duration

    /// Connects to product-service at `address` (`host:port`, the article's `PRODUCT_SERVICE_ADDR`).
    ///
    /// - Throws: `RPCError` when the address cannot be parsed.
    public init(address: String, callTimeout: Duration = .seconds(2)) throws {
        let parts = address.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let port = Int(parts[1]), (1...65_535).contains(port) else {
            throw RPCError(
                code: .invalidArgument, message: "product-service address '\(address)' is not host:port")
        }
        let transport = try HTTP2ClientTransport.Posix(
            target: .dns(host: String(parts[0]), port: port), transportSecurity: .plaintext)
        self.client = GRPCClient(transport: transport)
        self.products = Product_ProductService.Client(wrapping: client)
        self.callTimeout = callTimeout
    }

    /// Runs the client's connections until graceful shutdown.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await client.runConnections()
        } onGracefulShutdown: {
            self.client.beginGracefulShutdown()
        }
    }

    var options: CallOptions {
        var options = CallOptions.defaults
        options.timeout = callTimeout
        return options
    }

    public func deduct(productID: Int32, quantity: Int32, key: String) async throws {
        var request = Product_DeductStockRequest()
        request.productID = productID
        request.quantity = quantity
        request.idempotencyKey = key
        do {
            let reply = try await products.deductStock(request, options: options)
            guard reply.success else {
                throw NonRetryableError("product-service refused the deduction", type: "OutOfStock")
            }
        } catch let error as RPCError {
            throw Self.classify(error)
        }
    }

    public func refund(key: String) async throws {
        var request = Product_RefundStockRequest()
        request.idempotencyKey = key
        do {
            _ = try await products.refundStock(request, options: options)
        } catch let error as RPCError {
            throw Self.classify(error)
        }
    }

    public func stock(productID: Int32) async throws -> Int32 {
        var request = Product_GetStockRequest()
        request.productID = productID
        do {
            return try await products.getStock(request, options: options).stock
        } catch let error as RPCError {
            throw Self.classify(error)
        }
    }

    /// A definite refusal is not retryable; everything else leaves the outcome unknown.
    static func classify(_ error: RPCError) -> any Error {
        switch error.code {
        case .notFound: NonRetryableError(error.message, type: "UnknownProduct")
        case .invalidArgument: NonRetryableError(error.message, type: "InvalidOrder")
        case .failedPrecondition: NonRetryableError(error.message, type: "OutOfStock")
        case .alreadyExists: NonRetryableError(error.message, type: "IdempotencyKeyReused")
        default: RemoteCallError(service: "product-service", detail: "\(error.code): \(error.message)")
        }
    }
}

/// A call whose outcome is unknown: the service was down, or the reply was lost or late. Retryable.
public struct RemoteCallError: Error, CustomStringConvertible {
    /// The service called.
    public var service: String
    /// What happened.
    public var detail: String

    /// Creates the error.
    public init(service: String, detail: String) {
        self.service = service
        self.detail = detail
    }

    public var description: String { "\(service) did not answer: \(detail)" }
}
