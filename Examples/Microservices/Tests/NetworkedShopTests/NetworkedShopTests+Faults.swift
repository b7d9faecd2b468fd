import Foundation
import ShopHarness
import Testing

/// Faults under load, with real processes: product-service and order-service killed with SIGKILL and
/// restarted, a deduction's reply lost, one `Idempotency-Key` posted twice at once, a SIGTERM right
/// after a service's listening line. Each order test ends by checking the databases against every
/// saga's final status (`ShopLedger.check(sagas:openingStock:)`).
extension NetworkedShopTests {
    /// Product 101's opening stock in the demo catalog.
    static let openingStock = 100

    @Test func everyOrderFinishesWhenProductServiceIsKilledAndRestartedUnderLoad() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let productPort = try freePort()
        let products = productServiceArguments(port: productPort)
        let orders = ProductOutage.orders
        let statuses = try await withUserAndOrderService(productPort: productPort) { shop in
            let placing = try await placeOrdersAcrossAProductServiceKill(shop, products: products)
            return try await withService("product-service", products) { _ in
                let answers = await placing.answers()
                for order in ProductOutage.early + ProductOutage.late {
                    // 202: still retrying after 10 s; the saga goes on and is polled below.
                    let answer = answers[order.key] ?? nil
                    #expect(
                        answer.map { [201, 202].contains($0.status) } == true,
                        "\(order.key): \(String(describing: answer))")
                }
                return try await shop.finalStatuses(shop.orderPort, of: orders)
            }
        }
        #expect(statuses.count == orders.count)
        try ledger().check(sagas: statuses, openingStock: Self.openingStock)
    }

    @Test func orderServiceKilledMidSagaRecoversEverySaga() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let productPort = try freePort()
        let products = productServiceArguments(port: productPort)
        let orders = ProductOutage.orders
        let statuses = try await withService("user-service", ["--port", "0", "--data-dir", path("users")]) { user in
            let orderArguments = orderServiceArguments(productPort: productPort, userPort: user.port)
            // Under load: product-service is killed as the first order is answered, 15 more orders
            // arrive while it is down, and order-service is killed once they are retrying deduct-stock.
            let answeredBeforeTheCrash = try await withService("order-service", orderArguments) { order in
                let shop = Client(orderPort: order.port, userPort: user.port)
                let placing = try await placeOrdersAcrossAProductServiceKill(shop, products: products)
                try await order.kill()
                return await placing.answers()
            }
            // product-service back, then order-service on the same data directory: recovery resumes
            // every saga the log shows unfinished, with nobody asking for it.
            return try await withService("product-service", products) { _ in
                try await withService("order-service", orderArguments) { order in
                    let shop = Client(orderPort: order.port, userPort: user.port)
                    var statuses: [String: String] = [:]
                    for order in orders {
                        guard try await shop.get(shop.orderPort, "/sagas/\(order.sagaID)").status == 200 else {
                            continue
                        }
                        statuses[order.sagaID] = try await shop.finalState(shop.orderPort, saga: order.sagaID)?.status
                    }
                    #expect(statuses.count > 0, "no saga was logged before the crash")
                    let retried = ProductOutage.late[0].sagaID
                    #expect(statuses[retried] == "completed", "the saga seen retrying was not recovered")
                    // The client retries every order with its key: a saga it never reached starts now;
                    // the others answer with their outcome, the same order as before the crash.
                    for order in orders {
                        let answer = await shop.place(order)
                        #expect(
                            answer.map { [201, 202].contains($0.status) } == true,
                            "\(order.key): \(String(describing: answer))")
                        if let before = answeredBeforeTheCrash[order.key]??.order {
                            #expect(answer?.order == before, "\(order.key) answered another order after the crash")
                        }
                    }
                    return try await shop.finalStatuses(shop.orderPort, of: orders)
                }
            }
        }
        #expect(statuses.count == orders.count)
        try ledger().check(sagas: statuses, openingStock: Self.openingStock)
    }

    @Test func aDeductionWhoseReplyIsLostIsRetriedWithItsKeyAndAppliedOnce() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let order = TestOrder(key: "lost-reply", userID: 1, quantity: 3)
        let statuses = try await withShop(productOptions: ["--lose-deduct-replies", "1"]) { shop in
            try await shop.createUsers(1)
            let answer = await shop.place(order)
            #expect(answer?.status == 201, "\(String(describing: answer))")
            let state = try await shop.finalState(shop.orderPort, saga: order.sagaID)
            // The fault fired: the first attempt failed with the deduction applied.
            #expect(
                state?.records.contains { $0.kind == "step.attempt_failed" && $0.step == "deduct-stock" } == true,
                "the reply was never lost")
            return [order.sagaID: state?.status ?? "unfinished"]
        }
        let ledger = try ledger()
        ledger.check(sagas: statuses, openingStock: Self.openingStock)
        #expect(ledger.stock == Self.openingStock - 3)
        #expect(ledger.movements.count == 1)
    }

    @Test func aDeductionWhoseRepliesAreAllLostIsRefundedOnce() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let order = TestOrder(key: "all-lost", userID: 1, quantity: 3)
        let statuses = try await withShop(productOptions: ["--lose-deduct-replies", "1000"]) { shop in
            try await shop.createUsers(1)
            // Every attempt deducts (the first) or replays (the others), and never hears back: the
            // step fails for good and its compensation refunds the deduction by the same key.
            let answer = await shop.place(order)
            #expect(answer.map { [409, 202].contains($0.status) } == true, "\(String(describing: answer))")
            let state = try await shop.finalState(shop.orderPort, saga: order.sagaID)
            #expect(state?.records.contains { $0.kind == "compensation.succeeded" } == true)
            return [order.sagaID: state?.status ?? "unfinished"]
        }
        let ledger = try ledger()
        ledger.check(sagas: statuses, openingStock: Self.openingStock)
        #expect(statuses[order.sagaID] == "compensated")
        #expect(ledger.states(of: [order.sagaID]) == ["refunded": 1])
        #expect(ledger.stock == Self.openingStock)
    }

    @Test func oneIdempotencyKeyPostedTwiceAtOnceIsOneOrder() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let orders = (1...4).map { TestOrder(key: "twice-\($0)", userID: 1, quantity: $0) }
        let statuses = try await withShop { shop in
            try await shop.createUsers(1)
            // Each order twice, all eight requests at once.
            let answers = await withTaskGroup(of: (TestOrder, Client.Answer?).self) { group in
                for order in orders + orders { group.addTask { (order, await shop.place(order)) } }
                return await group.reduce(into: [TestOrder: [Client.Answer?]]()) { $0[$1.0, default: []].append($1.1) }
            }
            for order in orders {
                let pair = answers[order] ?? []
                #expect(pair.count == 2)
                let placed = pair.compactMap { $0?.order }
                // Both 201 with one order, or one of them 202 (still running) naming the same saga.
                #expect(!placed.isEmpty, "\(order.key): \(pair)")
                #expect(Set(placed.map(\.id)).count == 1, "\(order.key) answered two orders: \(pair)")
                #expect(placed.allSatisfy { $0.sagaID == order.sagaID })
                for answer in pair {
                    #expect(answer.map { [201, 202].contains($0.status) && $0.body.contains(order.sagaID) } == true)
                }
            }
            return try await shop.finalStatuses(shop.orderPort, of: orders)
        }
        let ledger = try ledger()
        ledger.check(sagas: statuses, openingStock: Self.openingStock)
        #expect(ledger.orders.count == orders.count)
        #expect(ledger.stock == Self.openingStock - (1 + 2 + 3 + 4))
    }

    @Test func aSIGTERMRightAfterTheListeningLineIsAGracefulShutdown() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // `withService` sends SIGTERM as soon as the body returns and expects exit status 0: each
        // service announces its port only once its SIGTERM handler is installed.
        for round in 1...5 {
            try await withService("product-service", ["--port", "0", "--data-dir", path("products-\(round)")]) { _ in }
            try await withService("user-service", ["--port", "0", "--data-dir", path("users-\(round)")]) { _ in }
            try await withService("order-service", ["--port", "0", "--data-dir", path("orders-\(round)")]) { _ in }
        }
    }

    // MARK: Helpers

    /// 30 orders from 3 users around a product-service outage: one before them all, 15 while
    /// product-service runs (it is killed as the first of them is answered), 15 while it is down.
    enum ProductOutage {
        static let warmUp = TestOrder(key: "warm-up", userID: 1)
        static let early = TestOrder.batch("early", count: 15, users: 3)
        static let late = TestOrder.batch("late", count: 15, users: 3)
        static let orders = [warmUp] + early + late
    }

    /// Orders on their way; ``answers()`` waits for them.
    struct PlacingOrders: Sendable {
        let batches: [Task<[String: Client.Answer?], Never>]

        /// Every order's answer by key (`nil`: the connection failed), once all have come.
        func answers() async -> [String: Client.Answer?] {
            var answers: [String: Client.Answer?] = [:]
            for batch in batches { answers.merge(await batch.value) { first, _ in first } }
            return answers
        }
    }

    /// Creates 3 users and places ``ProductOutage``'s orders across a product-service kill: runs
    /// product-service (`products`), places the warm-up order, then the 15 early orders at once, kills
    /// product-service (SIGKILL) as the first of them is answered, places the 15 late ones while it is
    /// down, and returns once the first late saga has logged a failed deduct-stock attempt.
    func placeOrdersAcrossAProductServiceKill(_ shop: Client, products: [String]) async throws -> PlacingOrders {
        try await shop.createUsers(3)
        let (arrivals, arrived) = AsyncStream.makeStream(of: String.self)
        let placingEarly = try await withService("product-service", products) { product in
            // Once an order went through, the gRPC client is connected: the kill comes mid-call.
            #expect(await shop.place(ProductOutage.warmUp)?.status == 201)
            let placing = shop.placeConcurrently(ProductOutage.early, arrived: arrived)
            var answered = arrivals.makeAsyncIterator()
            _ = await answered.next()  // one order answered, the others on their way
            try await product.kill()
            return placing
        }
        let placingLate = shop.placeConcurrently(ProductOutage.late)
        try await shop.waitForAttempt(shop.orderPort, saga: ProductOutage.late[0].sagaID, step: "deduct-stock")
        return PlacingOrders(batches: [placingEarly, placingLate])
    }

    /// product-service's arguments: `port`, its data directory.
    func productServiceArguments(port: Int) -> [String] {
        ["--port", "\(port)", "--data-dir", path("products")]
    }

    /// order-service's arguments: any free port, its data directory, the other two services.
    func orderServiceArguments(productPort: Int, userPort: Int) -> [String] {
        [
            "--port", "0", "--data-dir", path("orders"), "--product-service", "127.0.0.1:\(productPort)",
            "--user-service", "http://127.0.0.1:\(userPort)",
        ]
    }

    /// Runs user-service and order-service (which finds product-service at `productPort`) around `body`.
    func withUserAndOrderService<Result: Sendable>(
        productPort: Int, _ body: @Sendable (Client) async throws -> Result
    ) async throws -> Result {
        try await withService("user-service", ["--port", "0", "--data-dir", path("users")]) { user in
            let arguments = orderServiceArguments(productPort: productPort, userPort: user.port)
            return try await withService("order-service", arguments) { order in
                try await body(Client(orderPort: order.port, userPort: user.port))
            }
        }
    }

    /// Runs the three services around `body`, product-service with `productOptions`.
    func withShop<Result: Sendable>(
        productOptions: [String] = [], _ body: @Sendable (Client) async throws -> Result
    ) async throws -> Result {
        let arguments = ["--port", "0", "--data-dir", path("products")] + productOptions
        return try await withService("product-service", arguments) { product in
            try await withUserAndOrderService(productPort: product.port, body)
        }
    }

    /// The databases, once the services are stopped.
    func ledger() throws -> ShopLedger {
        try ShopLedger(productsFile: path("products/products.sqlite"), sagasFile: path("orders/sagas.sqlite"))
    }
}
