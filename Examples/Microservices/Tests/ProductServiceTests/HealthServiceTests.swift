import GRPCCore
import ProductContract
import ProductServer
import SwiftProtobuf
import Testing

/// The standard `grpc.health.v1.Health` service, as a Kubernetes gRPC probe calls it.
@Suite("grpc.health.v1.Health", .tags(.grpc), .timeLimit(.minutes(1)))
struct HealthServiceTests {
    @Test(arguments: ["", "product.ProductService"])
    func checkAnswersServing(service: String) async throws {
        try await withTestServer { server in
            let response = try await server.health.check(.with { $0.service = service })
            #expect(response.status == .serving)
        }
    }

    @Test func checkOfAnUnknownServiceIsNotFound() async throws {
        try await withTestServer { server in
            let error = try #require(
                await rpcError { try await server.health.check(.with { $0.service = "user.UserService" }) })
            #expect(error.code == .notFound)
            #expect(error.message == "this server has no service 'user.UserService'")
        }
    }

    @Test func watchIsUnimplemented() async throws {
        try await withTestServer { server in
            let error = try #require(
                await rpcError {
                    try await server.health.watch(.with { $0.service = "" }) { response in
                        for try await _ in response.messages {}
                    }
                })
            #expect(error.code == .unimplemented)
        }
    }

    @Test func gracefulShutdownTurnsHealthNotServing() async throws {
        let server = try await withTestServer { server in
            let response = try await server.health.check(.with { $0.service = "" })
            #expect(response.status == .serving)
            return server.server
        }
        // withTestServer shut the server down gracefully and saw run() return.
        #expect(!server.health.isServing)
    }

    @Test func checkAnswersNotServingWhileDraining() async throws {
        let health = HealthService()
        health.markNotServing()
        let response = try await health.check(request: .with { $0.service = "" }, context: .testing)
        #expect(response.status == .notServing)
    }
}

extension ServerContext {
    /// A context for calling a service method directly, without a server.
    static var testing: ServerContext {
        ServerContext(
            descriptor: Grpc_Health_V1_Health.Method.Check.descriptor,
            remotePeer: "in-process:test", localPeer: "in-process:test",
            cancellation: ServerContext.RPCCancellationHandle())
    }
}
