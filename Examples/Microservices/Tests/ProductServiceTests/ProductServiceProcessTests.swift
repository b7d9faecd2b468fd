import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import ProductContract
import Subprocess
import SwiftProtobuf
import Testing

/// The built `product-service` executable, when the build put it beside the test bundle (`swift test`
/// builds every product of the package).
let productServiceExecutable: URL? = {
    let candidate = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("product-service")
    return FileManager.default.isExecutableFile(atPath: candidate.path) ? candidate : nil
}()

/// `product-service` as a process: it prints its bound address, answers gRPC, and exits cleanly on
/// SIGTERM.
@Suite(
    "product-service process", .tags(.process), .timeLimit(.minutes(1)),
    .enabled(if: productServiceExecutable != nil, "the product-service executable is not built beside the tests"))
struct ProductServiceProcessTests {
    static let listeningPrefix = "product-service listening on "

    @Test func servesOnAFreePortAndExitsCleanlyOnSIGTERM() async throws {
        let directory = try TemporaryDirectory()
        let executable = try await Self.executable(at: try #require(productServiceExecutable))
        let result = try await run(
            executable,
            arguments: ["--port", "0", "--data-dir", directory.file("data"), "--log-level", "warning"],
            input: .none, output: .sequence, error: .discarded
        ) { execution in
            var lines = execution.standardOutput.strings().makeAsyncIterator()
            var output: [String] = []
            var listening: String?
            while let line = try await lines.next() {
                let line = line.trimmingCharacters(in: .whitespacesAndNewlines)
                output.append(line)
                if line.hasPrefix(Self.listeningPrefix) {
                    listening = String(line.dropFirst(Self.listeningPrefix.count))
                    break
                }
            }
            let address = try #require(listening, "no listening line in \(output)")
            let (host, port) = try #require(Self.hostAndPort(address), "cannot read '\(address)'")
            #expect(host == "127.0.0.1")
            #expect(port != 0 && port != 50051)

            let transport = try HTTP2ClientTransport.Posix(
                target: .ipv4(address: host, port: port), transportSecurity: .plaintext)
            let stock = try await withGRPCClient(transport: transport) { client in
                let products = Product_ProductService.Client(wrapping: client)
                let health = Grpc_Health_V1_Health.Client(wrapping: client)
                #expect(try await health.check(.with { $0.service = "" }).status == .serving)
                var deduct = Product_DeductStockRequest()
                deduct.productID = 101
                deduct.quantity = 5
                deduct.idempotencyKey = "process-order/deduct-stock"
                #expect(try await products.deductStock(deduct).success)
                return try await products.getStock(.with { $0.productID = 101 }).stock
            }

            try execution.send(signal: .terminate)
            while let line = try await lines.next() { output.append(line) }
            return (stock, output)
        }
        let (stock, output) = result.closureResult
        #expect(stock == 95)
        #expect(output.first == "product-service data directory: \(directory.file("data"))")
        #expect(result.terminationStatus == .exited(0), "\(output)")
    }

    /// `HOST:PORT` split; `nil` if it is not that.
    static func hostAndPort(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            return nil
        }
        return (String(address[..<colon]), port)
    }

    /// The executable at `url`, as Subprocess names it (looked up by name in its own directory, so the
    /// tests need not import swift-system's `FilePath`).
    static func executable(at url: URL) async throws -> Executable {
        let path = try await Executable.name(url.lastPathComponent)
            .resolveExecutablePath(in: .custom(["PATH": url.deletingLastPathComponent().path]))
        return .path(path)
    }
}
