import ArgumentParser
import Foundation
import ShopHarness
import UnixSignals

/// `shop`: starts the networked shop on loopback, plays the tour over the network, or drives load.
struct ShopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shop", abstract: "The networked shop on loopback: up, demo, load, bench.",
        subcommands: [Up.self, Demo.self, Load.self, Bench.self])

    static func defaultDataDirectory(_ name: String) -> String {
        (NSTemporaryDirectory() as NSString).appendingPathComponent(
            "sagakit-shop-\(name)-\(UUID().uuidString.prefix(8))")
    }
}

/// Prints a line at once (the output may be a pipe).
func say(_ line: String = "") {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start product-service, user-service and order-service until Ctrl-C.")

    @Option(help: "The data directory (default: a new one under the system's temporary directory).")
    var dataDir: String?
    @Option(help: "product-service's port (0: any free port).") var productPort = 50051
    @Option(help: "user-service's port.") var userPort = 8001
    @Option(help: "order-service's port.") var orderPort = 8000

    func run() async throws {
        let directory = dataDir ?? ShopCommand.defaultDataDirectory("up")
        let shop = try await Shop.start(
            dataDirectory: directory, productPort: productPort, userPort: userPort, orderPort: orderPort)
        say("data directory: \(directory)")
        say("product-service  grpc://127.0.0.1:\(shop.productPort)")
        say("user-service     http://127.0.0.1:\(shop.userPort)")
        say("order-service    http://127.0.0.1:\(shop.orderPort)")
        say("Ctrl-C stops them gracefully.")
        for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { break }
        await shop.stop()
        say("stopped")
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Play the tour over the network: an order, a failed order write refunded, product-service killed mid-saga, order-service killed with SIGKILL mid-saga."
    )

    @Option(help: "The data directory (default: a new one under the system's temporary directory).")
    var dataDir: String?

    func run() async throws {
        let directory = dataDir ?? ShopCommand.defaultDataDirectory("demo")
        let shop = try await Shop.start(dataDirectory: directory)
        say(
            "the shop runs on loopback: order-service :\(shop.orderPort), user-service :\(shop.userPort), product-service :\(shop.productPort)"
        )
        say("data directory: \(directory)")
        do {
            try await tour(shop)
        } catch {
            await shop.stop()
            throw error
        }
        await shop.stop()
        let invariants = try [shop.invariant(product: 101, opening: 100), shop.invariant(product: 102, opening: 50)]
        say()
        say("The stock invariant, from the services' own databases:")
        for invariant in invariants { say("  \(invariant)") }
        guard invariants.allSatisfy(\.holds) else { throw ExitCode(1) }
    }

    func scenario(_ title: String) { say("\n== \(title) ==") }

    func show(_ shop: Shop, _ answer: Shop.Answer, saga: String) async throws {
        say("HTTP \(answer.status) \(answer.body)")
        for line in try await shop.timeline(saga) { say("  \(line)") }
    }

    func tour(_ shop: Shop) async throws {
        let ada = try await shop.post(shop.userPort, "/users", #"{"name": "Ada Lovelace", "email": "ada@example.com"}"#)
        say("registered user 1: HTTP \(ada.status) \(ada.body)")

        scenario("1. An order: stock deducted over gRPC, the order written")
        try await show(shop, try await shop.order(1, 101, 2, key: "demo-1"), saga: "order-demo-1")

        scenario("2. The order write fails after the deduction: the stock is refunded")
        say("order-service writes at most 10 units in one order; product-service deducts 12 first")
        try await show(shop, try await shop.order(1, 101, 12, key: "demo-2"), saga: "order-demo-2")

        scenario("3. product-service is killed mid-saga, then restarted: the saga retries, then completes")
        await shop.kill("product-service")
        say("product-service killed (SIGKILL)")
        let third = Task { try await shop.order(1, 102, 3, key: "demo-3") }
        try await waitForRetry(shop, saga: "order-demo-3")
        try await shop.restart("product-service")
        say("product-service restarted on :\(shop.productPort)")
        try await show(shop, try await third.value, saga: "order-demo-3")

        scenario("4. order-service is killed with SIGKILL mid-saga, then restarted: recovery finishes it")
        await shop.kill("product-service")
        let fourth = Task { try? await shop.order(1, 102, 4, key: "demo-4") }
        try await waitForRetry(shop, saga: "order-demo-4")
        await shop.kill("order-service")
        say(
            "order-service killed (SIGKILL) while the saga waited for product-service; the caller's request died with it"
        )
        _ = await fourth.value
        try await shop.restart("product-service")
        try await shop.restart("order-service")
        say("both restarted; order-service recovers the saga from its log")
        var status = try await shop.status("order-demo-4")
        for _ in 0..<300 where status != "completed" && status != "compensated" {
            try await Task.sleep(for: .milliseconds(100))
            status = try await shop.status("order-demo-4")
        }
        say("saga order-demo-4 is \(status ?? "unknown")")
        for line in try await shop.timeline("order-demo-4") { say("  \(line)") }
    }

    /// Waits until the saga's log shows a failed attempt (product-service is down).
    func waitForRetry(_ shop: Shop, saga: String) async throws {
        for _ in 0..<300 {
            if try await shop.timeline(saga).contains(where: { $0.hasPrefix("step.attempt_failed deduct-stock") }) {
                say("the saga logged a failed attempt of deduct-stock and is retrying with the same key")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ShopError("saga \(saga) never logged a failed attempt")
    }
}

struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drive concurrent orders through the networked shop and print orders/s, p50, p99 and the invariant.")

    @Option(help: "How many orders.") var orders = 500
    @Option(help: "How many at once.") var concurrency = 16
    @Option(help: "The units product 101 starts with (default: the demo catalog's 100; more orders are refused).")
    var openingStock: Int?
    @Option(help: "The data directory (default: a new one under the system's temporary directory).")
    var dataDir: String?

    func validate() throws {
        guard orders > 0, concurrency > 0 else { throw ValidationError("--orders and --concurrency must be positive") }
        if let openingStock, openingStock < 0 { throw ValidationError("--opening-stock must not be negative") }
    }

    func run() async throws {
        let directory = dataDir ?? ShopCommand.defaultDataDirectory("load")
        let shop = try await Shop.start(dataDirectory: directory, openingStock: openingStock)
        defer { say("data directory: \(directory)") }
        let result: LoadDriver.Result
        do {
            try await shop.registerUsers(4)
            result = try await LoadDriver(shop: shop, concurrency: concurrency, users: 4, prefix: "load")
                .run(limit: orders)
        } catch {
            await shop.stop()
            throw error
        }
        await shop.stop()
        say("\(result.samples.count) orders at concurrency \(concurrency) in \(result.elapsed)")
        say(String(format: "orders/s %.0f", result.ordersPerSecond))
        say("p50 \(result.percentile(0.5)), p99 \(result.percentile(0.99))")
        say("statuses: \(result.statusCounts.map { "\($0.status)×\($0.count)" }.joined(separator: ", "))")
        let invariant = try shop.invariant(product: 101, opening: openingStock ?? 100)
        say("invariant: \(invariant)")
        guard invariant.holds else { throw ExitCode(1) }
    }
}
