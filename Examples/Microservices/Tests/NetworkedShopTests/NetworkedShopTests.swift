import Foundation
import GRDB
import ShopHarness
import Testing

/// The three services as real processes on loopback: orders over HTTP, stock over gRPC, users over
/// HTTP, each with its own database; product-service down under an order. The fault tests
/// (`NetworkedShopTests+Faults.swift`) kill and restart services under load. One test at a time: each
/// runs three services, on two cores.
@Suite(
    "networked shop", .serialized, .timeLimit(.minutes(3)),
    .enabled(if: ServiceBinaries.built, "the services are not built"))
struct NetworkedShopTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("NetworkedShop-\(UUID().uuidString)")

    @Test func ordersCrossTheNetworkAndARefusedOrderIsRefunded() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withService("product-service", ["--port", "0", "--data-dir", path("products")]) { product in
            try await withService("user-service", ["--port", "0", "--data-dir", path("users")]) { user in
                let orderArguments = [
                    "--port", "0", "--data-dir", path("orders"), "--product-service", "127.0.0.1:\(product.port)",
                    "--user-service", "http://127.0.0.1:\(user.port)",
                ]
                try await withService("order-service", orderArguments) { order in
                    let shop = Client(orderPort: order.port, userPort: user.port)
                    let ada = try await shop.post(user.port, "/users", #"{"name": "Ada", "email": "ada@example.com"}"#)
                    #expect(ada.status == 201, "\(ada.body)")
                    let placed = try await shop.post(
                        order.port, "/orders", #"{"user_id": 1, "product_id": 103, "quantity": 4}"#, key: "o-1")
                    #expect(placed.status == 201, "\(placed.body)")
                    let refused = try await shop.post(
                        order.port, "/orders", #"{"user_id": 1, "product_id": 103, "quantity": 7}"#, key: "o-2")
                    #expect(refused.status == 409, "\(refused.body)")
                    #expect(refused.body.contains("refunded"), "\(refused.body)")
                    let stranger = try await shop.post(
                        order.port, "/orders", #"{"user_id": 42, "product_id": 103, "quantity": 1}"#, key: "o-3")
                    #expect(stranger.status == 422, "\(stranger.body)")
                    let timeline = try await shop.get(order.port, "/sagas/order-o-2")
                    #expect(timeline.body.contains("compensation.succeeded"), "\(timeline.body)")
                    let metrics = try await shop.get(order.port, "/metrics")
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
                "--user-service", "http://127.0.0.1:\(user.port)",
            ]
            try await withService("order-service", orderArguments) { order in
                let shop = Client(orderPort: order.port, userPort: user.port)
                _ = try await shop.post(user.port, "/users", #"{"name": "Ada", "email": "ada@example.com"}"#)
                // product-service is down: the saga retries the deduction with the same key.
                let placed = Task {
                    try await shop.post(
                        order.port, "/orders", #"{"user_id": 1, "product_id": 101, "quantity": 2}"#, key: "late")
                }
                try await shop.waitForAttempt(order.port, saga: "order-late", step: "deduct-stock")
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
