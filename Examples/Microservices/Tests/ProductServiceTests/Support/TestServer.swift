import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import Logging
import ProductContract
import ProductServer
import ServiceLifecycle
import ServiceLifecycleTestKit
import ShopServices
import SwiftProtobuf
import Testing

/// A fresh directory for one test, removed when the value goes away.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("ProductServiceTests-\(UUID().uuidString)", isDirectory: true).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
}

/// A logger that drops everything: tests never bootstrap the logging system.
let silentLogger = Logger(label: "ProductServiceTests") { _ in SwiftLogNoOpLogHandler() }

/// What a test talks to: gRPC clients of a server running in this process on 127.0.0.1 with a port
/// the system picked, and the product service behind it.
struct TestServer: Sendable {
    typealias Transport = HTTP2ClientTransport.Posix

    let products: Product_ProductService.Client<Transport>
    let health: Grpc_Health_V1_Health.Client<Transport>
    /// The product service the server calls, to check the database directly.
    let service: ProductService
    let server: ProductServerService
}

/// Runs `body` against a server over a new database holding the demo catalog, then shuts the server
/// down gracefully and expects it to stop. `body` must make at least one call: `withGRPCClient` refuses
/// a body that returns before the client has started its connections.
func withTestServer<Result: Sendable>(
    _ body: @Sendable (TestServer) async throws -> Result
) async throws -> Result {
    let directory = try TemporaryDirectory()
    let products = try ProductService(path: directory.file("products.sqlite"))
    defer { try? products.close() }
    try await DemoCatalog.seedIfEmpty(products)
    let server = ProductServerService(
        products: products, configuration: .init(host: "127.0.0.1", port: 0), logger: silentLogger)

    return try await testGracefulShutdown { trigger in
        try await withThrowingTaskGroup { group in
            group.addTask { try await server.run() }
            let address = try await server.listeningAddress
            let transport = try HTTP2ClientTransport.Posix(
                target: .ipv4(address: address.host, port: address.port), transportSecurity: .plaintext)
            let result = try await withGRPCClient(transport: transport) { client in
                try await body(
                    TestServer(
                        products: Product_ProductService.Client(wrapping: client),
                        health: Grpc_Health_V1_Health.Client(wrapping: client),
                        service: products,
                        server: server))
            }
            trigger.triggerGracefulShutdown()
            try await group.waitForAll()
            return result
        }
    }
}

/// The `RPCError` that `body` throws; records an issue if it throws something else or nothing.
func rpcError(
    _ body: () async throws -> some Sendable, sourceLocation: SourceLocation = #_sourceLocation
) async -> RPCError? {
    do {
        _ = try await body()
        Issue.record("expected an RPCError, got success", sourceLocation: sourceLocation)
    } catch let error as RPCError {
        return error
    } catch {
        Issue.record("expected an RPCError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// The `google.rpc.ErrorInfo` reason an error carries, if any.
func errorReason(_ error: RPCError) throws -> String? {
    try error.unpackGoogleRPCStatus()?.details.compactMap(\.errorInfo).first?.reason
}

extension Product_DeductStockRequest {
    init(product: Int32, quantity: Int32 = 0, key: String) {
        self.init()
        productID = product
        self.quantity = quantity
        idempotencyKey = key
    }
}

extension Product_GetStockRequest {
    init(product: Int32) {
        self.init()
        productID = product
    }
}

extension Product_RefundStockRequest {
    init(key: String) {
        self.init()
        idempotencyKey = key
    }
}
