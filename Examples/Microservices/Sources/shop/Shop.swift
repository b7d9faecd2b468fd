import Foundation
import GRDB
import ShopHarness
import Synchronization

/// The three services on loopback over one data directory.
final class Shop: Sendable {
    let dataDirectory: String
    let productPort: Int
    let userPort: Int
    let orderPort: Int
    let openingStock: Int?
    let processes: Mutex<[String: ServiceProcess]>

    private init(
        dataDirectory: String, productPort: Int, userPort: Int, orderPort: Int, openingStock: Int?,
        processes: [String: ServiceProcess]
    ) {
        self.dataDirectory = dataDirectory
        self.productPort = productPort
        self.userPort = userPort
        self.orderPort = orderPort
        self.openingStock = openingStock
        self.processes = Mutex(processes)
    }

    /// Starts product-service, user-service and order-service (ports 0: any free port);
    /// `openingStock` overrides the demo catalog's units of every product.
    static func start(
        dataDirectory: String, productPort: Int = 0, userPort: Int = 0, orderPort: Int = 0, openingStock: Int? = nil
    ) async throws -> Shop {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let (product, productBound) = try await launch(
            "product-service", productArguments(dataDirectory, port: productPort, openingStock: openingStock))
        let user: ServiceProcess
        let userBound: Int
        do {
            (user, userBound) = try await launch(
                "user-service", ["--port", "\(userPort)", "--data-dir", path(dataDirectory, "users")])
        } catch {
            _ = try? await product.terminate()
            throw error
        }
        let order: ServiceProcess
        let orderBound: Int
        do {
            (order, orderBound) = try await launch(
                "order-service", orderArguments(dataDirectory, port: orderPort, product: productBound, user: userBound))
        } catch {
            _ = try? await product.terminate()
            _ = try? await user.terminate()
            throw error
        }
        return Shop(
            dataDirectory: dataDirectory, productPort: productBound, userPort: userBound, orderPort: orderBound,
            openingStock: openingStock,
            processes: ["product-service": product, "user-service": user, "order-service": order])
    }

    /// The directory of this executable, where `swift build` put the services too.
    static let binaries = ServiceProcess.directoryOfThisExecutable(resolvingSymlinks: true)

    /// Starts a service from ``binaries``; returns it and its port.
    static func launch(_ name: String, _ arguments: [String]) async throws -> (ServiceProcess, Int) {
        let process = ServiceProcess(name, arguments: arguments, binaries: binaries)
        do {
            return (process, try await process.start())
        } catch let error as ServiceProcessError where error.code == .notBuilt {
            throw ShopError(
                "\(name) is not built beside shop (\(process.binaries.appendingPathComponent(name).path)); "
                    + "run `swift build --package-path Examples/Microservices`")
        }
    }

    static func path(_ directory: String, _ name: String) -> String {
        (directory as NSString).appendingPathComponent(name)
    }

    static func productArguments(_ directory: String, port: Int, openingStock: Int?) -> [String] {
        ["--port", "\(port)", "--data-dir", path(directory, "products")]
            + (openingStock.map { ["--opening-stock", "\($0)"] } ?? [])
    }

    static func orderArguments(_ directory: String, port: Int, product: Int, user: Int) -> [String] {
        [
            "--port", "\(port)", "--data-dir", path(directory, "orders"), "--product-service", "127.0.0.1:\(product)",
            "--user-service", "http://127.0.0.1:\(user)",
        ]
    }

    /// Kills a service (SIGKILL), as a crash would.
    func kill(_ name: String) async {
        _ = try? await processes.withLock { $0[name] }?.kill()
    }

    /// Starts a killed service again on its port.
    func restart(_ name: String) async throws {
        let arguments =
            name == "product-service"
            ? Self.productArguments(dataDirectory, port: productPort, openingStock: openingStock)
            : Self.orderArguments(dataDirectory, port: orderPort, product: productPort, user: userPort)
        let (process, _) = try await Self.launch(name, arguments)
        processes.withLock { $0[name] = process }
    }

    /// The CPU time (user + system) each service has used so far, in seconds, by name.
    func cpuSeconds() -> [String: Double] {
        processes.withLock { $0 }.compactMapValues { $0.cpuSeconds() }
    }

    /// Stops every service gracefully, order-service first.
    func stop() async {
        for name in ["order-service", "user-service", "product-service"] {
            _ = try? await processes.withLock { $0[name] }?.terminate()
        }
    }

    // MARK: HTTP

    typealias Answer = LoopbackHTTPClient.Answer

    /// Up to 512 connections per service, so that `load` and `bench` at high concurrency really are
    /// concurrent (the shared client keeps 8 and queues the rest).
    static let http = LoopbackHTTPClient(
        configuration: .init(connectionsPerHost: 512, timeout: .seconds(60), maximumBodyBytes: 4 << 20))

    func post(_ port: Int, _ path: String, _ body: String, key: String? = nil) async throws -> Answer {
        try await Self.http.post(port, path, body, key: key)
    }

    func get(_ port: Int, _ path: String) async throws -> Answer {
        try await Self.http.get(port, path)
    }

    func order(_ user: Int, _ product: Int, _ quantity: Int, key: String) async throws -> Answer {
        try await post(
            orderPort, "/orders", #"{"user_id": \#(user), "product_id": \#(product), "quantity": \#(quantity)}"#,
            key: key)
    }

    /// Registers users 1…`count` with user-service (a new user database numbers them so).
    func registerUsers(_ count: Int) async throws {
        for user in 1...count {
            let answer = try await post(
                userPort, "/users", #"{"name": "User \#(user)", "email": "user\#(user)@example.com"}"#)
            guard answer.status == 201 else {
                throw ShopError("registering user \(user): HTTP \(answer.status) \(answer.body)")
            }
        }
    }

    /// The saga's timeline, as `step kind` lines.
    func timeline(_ sagaID: String) async throws -> [String] {
        let answer = try await get(orderPort, "/sagas/\(sagaID)")
        guard answer.status == 200,
            let object = try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
            let records = object["records"] as? [[String: Any]]
        else { return ["(no timeline: HTTP \(answer.status))"] }
        return records.map { record in
            let kind = record["kind"] as? String ?? "?"
            let step = (record["step"] as? String).map { " \($0)" } ?? ""
            let attempt = (record["attempt"] as? Int).map { " #\($0)" } ?? ""
            let error = (record["error"] as? String).map { "  (\($0))" } ?? ""
            return "\(kind)\(step)\(attempt)\(error)"
        }
    }

    /// The saga's status from its timeline.
    func status(_ sagaID: String) async throws -> String? {
        let answer = try await get(orderPort, "/sagas/\(sagaID)")
        guard answer.status == 200 else { return nil }
        return (try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])?["status"] as? String
    }

    // MARK: The invariant, from the databases

    struct Invariant: CustomStringConvertible {
        var product: Int
        var opening: Int
        var stock: Int
        var ordered: Int
        var deductionsKept: Int
        var refundsWithoutDeduction: Int
        var holds: Bool {
            stock + ordered == opening && deductionsKept == ordered && refundsWithoutDeduction == 0
        }
        var description: String {
            "product \(product): \(stock) in stock + \(ordered) ordered = \(stock + ordered) (opening \(opening)); deductions kept \(deductionsKept); refunds without a deduction \(refundsWithoutDeduction) → \(holds ? "holds" : "BROKEN")"
        }
    }

    /// Stock + ordered units = opening stock, read from product-service's and order-service's files.
    func invariant(product: Int, opening: Int) throws -> Invariant {
        let products = try Self.read(Self.path(dataDirectory, "products/products.sqlite"))
        let orders = try Self.read(Self.path(dataDirectory, "orders/sagas.sqlite"))
        defer {
            try? products.close()
            try? orders.close()
        }
        let name = "\(product)"
        return try Invariant(
            product: product, opening: opening,
            stock: products.read {
                try Int.fetchOne($0, sql: "SELECT stock FROM products WHERE name = ?", arguments: [name]) ?? 0
            },
            ordered: orders.read {
                try Int.fetchOne(
                    $0, sql: "SELECT COALESCE(SUM(quantity), 0) FROM shop_orders WHERE product_id = ?",
                    arguments: [product]) ?? 0
            },
            deductionsKept: products.read {
                try Int.fetchOne(
                    $0,
                    sql:
                        "SELECT COALESCE(SUM(quantity), 0) FROM stock_movements WHERE state = 'deducted' AND product = ?",
                    arguments: [name]) ?? 0
            },
            refundsWithoutDeduction: products.read {
                try Int.fetchOne(
                    $0, sql: "SELECT COUNT(*) FROM stock_movements WHERE state = 'refunded' AND quantity <= 0") ?? 0
            })
    }

    static func read(_ path: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.readonly = true
        return try DatabaseQueue(path: path, configuration: configuration)
    }
}
