import AsyncHTTPClient
import Foundation
import GRDB
import NIOCore
import NIOHTTP1
import Subprocess
import Testing

/// The three services as real processes on loopback: orders over HTTP, stock over gRPC, users over
/// HTTP, each with its own database; product-service killed and restarted under an order.
@Suite("networked shop", .timeLimit(.minutes(3)), .enabled(if: ServiceBinaries.built, "the services are not built"))
struct NetworkedShopTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("NetworkedShop-\(UUID().uuidString)")

    @Test func ordersCrossTheNetworkAndARefusedOrderIsRefunded() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withService("product-service", ["--port", "0", "--data-dir", path("products")]) { product in
            try await withService("user-service", ["--port", "0", "--data-dir", path("users")]) { user in
                let orderArguments = [
                    "--port", "0", "--data-dir", path("orders"), "--product-service", "127.0.0.1:\(product)",
                    "--user-service", "http://127.0.0.1:\(user)",
                ]
                try await withService("order-service", orderArguments) { order in
                    let shop = Client(orderPort: order, userPort: user)
                    let ada = try await shop.post(user, "/users", #"{"name": "Ada", "email": "ada@example.com"}"#)
                    #expect(ada.status == 201, "\(ada.body)")
                    let placed = try await shop.post(
                        order, "/orders", #"{"user_id": 1, "product_id": 103, "quantity": 4}"#, key: "o-1")
                    #expect(placed.status == 201, "\(placed.body)")
                    let refused = try await shop.post(
                        order, "/orders", #"{"user_id": 1, "product_id": 103, "quantity": 7}"#, key: "o-2")
                    #expect(refused.status == 409, "\(refused.body)")
                    #expect(refused.body.contains("refunded"), "\(refused.body)")
                    let stranger = try await shop.post(
                        order, "/orders", #"{"user_id": 42, "product_id": 103, "quantity": 1}"#, key: "o-3")
                    #expect(stranger.status == 422, "\(stranger.body)")
                    let timeline = try await shop.get(order, "/sagas/order-o-2")
                    #expect(timeline.body.contains("compensation.succeeded"), "\(timeline.body)")
                    let metrics = try await shop.get(order, "/metrics")
                    #expect(metrics.body.contains(#"orders_created_total{product_id="103"} 1"#), "\(metrics.body)")
                }
            }
        }
        // From the databases: 10 − 4 in stock; one deduction kept, one refunded, one tombstone-free refusal.
        #expect(try scalar("SELECT stock FROM products WHERE name = '103'", in: path("products/products.sqlite")) == 6)
        #expect(try scalar("SELECT COUNT(*) FROM shop_orders", in: path("orders/sagas.sqlite")) == 1)
        #expect(
            try scalar(
                "SELECT COUNT(*) FROM stock_movements WHERE state = 'deducted'", in: path("products/products.sqlite"))
                == 1)
    }

    @Test func anOrderWaitsOutAProductServiceThatIsDownAndCompletes() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let productPort = try freePort()
        try await withService("user-service", ["--port", "0", "--data-dir", path("users")]) { user in
            let orderArguments = [
                "--port", "0", "--data-dir", path("orders"), "--product-service", "127.0.0.1:\(productPort)",
                "--user-service", "http://127.0.0.1:\(user)",
            ]
            try await withService("order-service", orderArguments) { order in
                let shop = Client(orderPort: order, userPort: user)
                _ = try await shop.post(user, "/users", #"{"name": "Ada", "email": "ada@example.com"}"#)
                // product-service is down: the saga retries the deduction with the same key.
                let placed = Task {
                    try await shop.post(
                        order, "/orders", #"{"user_id": 1, "product_id": 101, "quantity": 2}"#, key: "late")
                }
                try await shop.waitForAttempt(order, saga: "order-late", step: "deduct-stock")
                try await withService(
                    "product-service", ["--port", "\(productPort)", "--data-dir", path("products")]
                ) { _ in
                    let answer = try await placed.value
                    #expect(answer.status == 201, "\(answer.body)")
                }
            }
        }
        #expect(try scalar("SELECT stock FROM products WHERE name = '101'", in: path("products/products.sqlite")) == 98)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func scalar(_ sql: String, in file: String) throws -> Int {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: file, configuration: configuration)
        defer { try? queue.close() }
        return try queue.read { try Int.fetchOne($0, sql: sql) ?? -1 }
    }
}

/// Where the services' executables are: beside the test bundle.
enum ServiceBinaries {
    static let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    static let built = ["product-service", "user-service", "order-service"].allSatisfy {
        FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent($0).path)
    }
}

/// Runs a service until `body` returns, then stops it with SIGTERM. `body` gets the port from the
/// service's `… listening on HOST:PORT` line.
func withService<Result: Sendable>(
    _ name: String, _ arguments: [String], _ body: @Sendable (Int) async throws -> Result
) async throws -> Result {
    let executable = Executable.path(
        try await Executable.name(name).resolveExecutablePath(in: .custom(["PATH": ServiceBinaries.directory.path])))
    let outcome = try await run(
        executable, arguments: Arguments(arguments), input: .none, output: .sequence, error: .discarded
    ) { execution in
        var lines = execution.standardOutput.strings().makeAsyncIterator()
        var port: Int?
        while let line = try await lines.next() {
            if line.contains("listening on"), let last = line.split(separator: ":").last,
                let number = Int(last.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                port = number
                break
            }
        }
        guard let port else { throw ServiceDidNotStart(name: name) }
        do {
            let result = try await body(port)
            try execution.send(signal: .terminate)
            while try await lines.next() != nil {}
            return result
        } catch {
            try? execution.send(signal: .kill)
            throw error
        }
    }
    return outcome.closureResult
}

struct ServiceDidNotStart: Error, CustomStringConvertible {
    var name: String
    var description: String { "\(name) ended before it printed its listening line" }
}

/// A free TCP port on loopback, to restart a service on the same port.
func freePort() throws -> Int {
    let socket = try ServerSocketProbe()
    return socket.port
}

/// Binds port 0 on loopback and reads the port back, then closes.
struct ServerSocketProbe {
    let port: Int

    init() throws {
        let fd = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw ServiceDidNotStart(name: "a probe socket") }
        port = Int(UInt16(bigEndian: address.sin_port))
    }
}

/// HTTP calls to the services.
struct Client: Sendable {
    var orderPort: Int
    var userPort: Int

    struct Answer: Sendable {
        var status: UInt
        var body: String
    }

    func post(_ port: Int, _ path: String, _ body: String, key: String? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key { request.headers.add(name: "Idempotency-Key", value: key) }
        request.body = .bytes(ByteBuffer(string: body))
        return try await send(request)
    }

    func get(_ port: Int, _ path: String) async throws -> Answer {
        try await send(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"))
    }

    func send(_ request: HTTPClientRequest) async throws -> Answer {
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return Answer(status: response.status.code, body: String(buffer: body))
    }

    /// Waits until the saga's log shows a failed attempt of `step` (product-service is down).
    func waitForAttempt(_ port: Int, saga: String, step: String) async throws {
        for _ in 0..<2_000 {
            let timeline = try await get(port, "/sagas/\(saga)")
            if timeline.status == 200, timeline.body.contains("step.attempt_failed"), timeline.body.contains(step) {
                return
            }
            await Task.yield()
        }
        Issue.record("saga \(saga) never logged a failed attempt of \(step)")
    }
}
