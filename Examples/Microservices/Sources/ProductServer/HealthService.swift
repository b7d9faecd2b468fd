public import GRPCCore
public import ProductContract
import SwiftProtobuf
import Synchronization

/// The standard gRPC health service (`grpc.health.v1.Health`), as Kubernetes' gRPC probe and
/// `grpc_health_probe` call it.
///
/// `Check` answers `SERVING` for the whole server (the empty service name) and for
/// `product.ProductService` until ``markNotServing()``, then `NOT_SERVING`; any other service name
/// fails with `NOT_FOUND`, as the protocol asks. `Watch` fails with `UNIMPLEMENTED`, which tells a
/// client to fall back to `Check`.
///
/// ```swift
/// let health = HealthService()
/// let server = GRPCServer(transport: transport, services: [products, health])
/// // on graceful shutdown:
/// health.markNotServing()
/// ```
public final class HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol, Sendable {
    /// The service names `Check` knows: `""` (the whole server) and `product.ProductService`.
    public static let serviceNames: Set<String> = [
        "", Product_ProductService.descriptor.fullyQualifiedService,
    ]

    private let serving: Mutex<Bool>

    /// Creates a health service that reports `SERVING`.
    public init() {
        serving = Mutex(true)
    }

    /// Whether `Check` reports `SERVING`.
    public var isServing: Bool {
        serving.withLock { $0 }
    }

    /// Reports `NOT_SERVING` from now on: the server is draining, send new calls elsewhere.
    public func markNotServing() {
        serving.withLock { $0 = false }
    }

    /// Reports `SERVING` again.
    public func markServing() {
        serving.withLock { $0 = true }
    }

    /// Answers the server's status, or `NOT_FOUND` for a service this server does not offer.
    public func check(
        request: Grpc_Health_V1_HealthCheckRequest,
        context: ServerContext
    ) async throws -> Grpc_Health_V1_HealthCheckResponse {
        guard Self.serviceNames.contains(request.service) else {
            throw RPCError(code: .notFound, message: "this server has no service '\(request.service)'")
        }
        let serving = isServing
        return .with { $0.status = serving ? .serving : .notServing }
    }

    /// Fails with `UNIMPLEMENTED`: clients should use `Check`.
    public func watch(
        request: Grpc_Health_V1_HealthCheckRequest,
        response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        throw RPCError(
            code: .unimplemented, message: "the product-service answers Check only; Watch is not implemented")
    }
}
