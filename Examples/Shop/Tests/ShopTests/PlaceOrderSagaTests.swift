import Foundation
import Logging
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import ShopServices
import Synchronization
import Testing

/// The place-order saga over the real services (each on its own SQLite file), run by an engine on
/// an SQLite saga log.
@Suite("Place-order saga", .tags(.saga), .timeLimit(.minutes(2)))
struct PlaceOrderSagaTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }

    /// Fresh services in a fresh sub-directory, with Ada as a customer and 10 tea in stock.
    static func world(in path: String) async throws -> (ProductService, OrderService) {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let products = try ProductService(path: path + "/products.sqlite")
        let orders = try OrderService(path: path + "/orders.sqlite")
        try await products.addProduct("tea", openingStock: 10)
        try await products.addProduct("matcha", openingStock: 10)
        try await orders.carry("tea")
        try await orders.addCustomer(1, name: "Ada Lovelace")
        return (products, orders)
    }

    func run(_ order: PlaceOrder, id: String = "order-1", failWrite: Bool = false) async throws -> (
        SagaOutcome<OrderConfirmation>, ProductService, OrderService
    ) {
        let (products, orders) = try await Self.world(in: directory.file("world"))
        if failWrite { orders.faults.failNextWrites(1) }
        let saga = PlaceOrderSaga(products: products, orders: orders)
        let store = try SQLiteSagaStore(path: directory.file("sagas.sqlite"))
        let logger = Logger(label: "shop-tests", factory: { _ in SwiftLogNoOpLogHandler() })
        let engine = SagaEngine(store: store, logger: logger)
        let outcome = try await withRunningSagaEngine(engine) { engine in
            try await engine.execute(saga.definition, id: id, input: order)
        }
        try await store.close()
        return (outcome, products, orders)
    }

    @Test func aSuccessfulOrderDeductsStockAndWritesTheOrder() async throws {
        let (outcome, products, orders) = try await run(PlaceOrder(user: 1, product: "tea", quantity: 3))
        let confirmation = try #require(outcome.output)
        #expect(confirmation.deductionKey == "order-1/deduct-stock")
        #expect(confirmation.orderKey == "order-1/create-order")
        #expect(try await products.getStock("tea") == 7)
        #expect(try await orders.order(key: "order-1/create-order")?.id == confirmation.orderID)
    }

    @Test(arguments: [
        (PlaceOrder(user: 1, product: "tea", quantity: 3), ShopFailure.orderWriteFailed, true),
        (PlaceOrder(user: 9, product: "tea", quantity: 3), ShopFailure.unknownUser, false),
        (PlaceOrder(user: 1, product: "matcha", quantity: 3), ShopFailure.productNotCarried, false),
        (PlaceOrder(user: 1, product: "tea", quantity: 11), ShopFailure.outOfStock, false),
    ])
    func aRefusedOrderIsCompensatedAndTheStockRefunded(order: PlaceOrder, failure: String, failWrite: Bool)
        async throws
    {
        let (outcome, products, orders) = try await run(order, failWrite: failWrite)
        guard case .compensated(let cause) = outcome else {
            Issue.record("expected compensated, got \(outcome)")
            return
        }
        #expect(cause.cause.type == failure)
        #expect(cause.step == (failure == ShopFailure.outOfStock ? "deduct-stock" : "create-order"))
        #expect(try await products.getStock(order.product) == 10)
        #expect(try await orders.orders().isEmpty)
        // The refund used the deduction's key: refunded, or (when the deduction was refused) a tombstone.
        let movement = try await products.movement(key: "order-1/deduct-stock")
        #expect(movement?.state == (failure == ShopFailure.outOfStock ? .tombstone : .refunded))
    }

    @Test func definitionIsStableAcrossServiceInstances() async throws {
        let (products, orders) = try await Self.world(in: directory.file("a"))
        let (others, otherOrders) = try await Self.world(in: directory.file("b"))
        let first = PlaceOrderSaga(products: products, orders: orders).definition
        let second = PlaceOrderSaga(products: others, orders: otherOrders).definition
        #expect(first.name == "place-order")
        #expect(first.fingerprint == second.fingerprint)
        try first.validate()
    }

    /// The testing kit's explorer crashes the saga at every durable point (log writes and service
    /// calls, before and after), recovers it with a new engine, and checks the databases.
    @Test(arguments: [false, true])
    func everyCrashPointEndsWithStockAndOrdersInAgreement(failWrite: Bool) async throws {
        let root = directory.file("explore-\(failWrite)")
        let worlds = Counter()
        let explorer = CrashExplorer<PlaceOrder, OrderConfirmation>(
            makeStore: { index in
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
                return try SQLiteSagaStore(path: "\(root)/sagas-\(index).sqlite")
            },
            closeStore: { store in try await (store as? SQLiteSagaStore)?.close() }
        ) {
            let (products, orders) = try await Self.world(in: "\(root)/world-\(worlds.next())")
            // Every write fails, retries and recovery included (a one-shot fault could be used up
            // by a call whose failure the crash kept out of the log, and the retry would succeed).
            if failWrite { orders.faults.failureRate = 1 }
            let stockAgrees = SagaInvariant("stock and orders agree with the outcome") { report in
                let stock = try await products.getStock("tea")
                let ordered = try await orders.orderedQuantities()["tea"] ?? 0
                let expected = report.summary?.status == .completed ? 2 : 0
                if ordered != expected { return "\(ordered) tea ordered, expected \(expected)" }
                if stock + ordered != 10 { return "stock \(stock) + ordered \(ordered) != 10" }
                return nil
            }
            return SagaScenario(
                definition: PlaceOrderSaga(products: products, orders: orders).definition,
                input: PlaceOrder(user: 1, product: "tea", quantity: 2), invariants: [stockAgrees])
        }
        let report = try await explorer.explore()
        #expect(report.violations.isEmpty, "\(report)")
        #expect(report.explored >= 8)
        #expect(report.outcomes[failWrite ? .compensated : .completed] == report.explored, "\(report)")
    }

    static let faults: [(step: String, fault: ParticipantFault)] = [
        ("deduct-stock", .fail(call: 1)), ("deduct-stock", .fail(call: 1, retryable: false)),
        ("deduct-stock", .hang(call: 1)), ("deduct-stock", .loseReply(call: 1)), ("deduct-stock", .duplicate(call: 1)),
        ("deduct-stock", .failCompensation(times: 2)), ("deduct-stock", .failCompensationForGood),
        ("create-order", .fail(call: 1)), ("create-order", .fail(call: 1, retryable: false)),
        ("create-order", .hang(call: 1)), ("create-order", .loseReply(call: 1)), ("create-order", .duplicate(call: 1)),
    ]

    /// Every crash point, under every participant fault: the real services' databases always agree
    /// with how the saga ended (a saga that needs attention is left to a person).
    @Test(arguments: 0..<faults.count)
    func everyCrashPointUnderEveryParticipantFault(_ index: Int) async throws {
        let (step, fault) = Self.faults[index]
        let root = directory.file("fault-\(index)")
        let worlds = Counter()
        // The compensation faults only bite when the order write fails, so those worlds fail it.
        let failWrite = fault == .failCompensation(times: 2) || fault == .failCompensationForGood
        let explorer = CrashExplorer<PlaceOrder, OrderConfirmation>(
            makeStore: { index in
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
                return try SQLiteSagaStore(path: "\(root)/sagas-\(index).sqlite")
            },
            closeStore: { store in try await (store as? SQLiteSagaStore)?.close() }
        ) {
            let (products, orders) = try await Self.world(in: "\(root)/world-\(worlds.next())")
            if failWrite { orders.faults.failureRate = 1 }
            let faults = ParticipantFaults()
            faults.inject(fault, into: step)
            let stockAgrees = SagaInvariant("stock and orders agree with the outcome") { report in
                guard let status = report.summary?.status, status != .needsAttention else { return nil }
                let stock = try await products.getStock("tea")
                let ordered = try await orders.orderedQuantities()["tea"] ?? 0
                let expected = status == .completed ? 2 : 0
                if ordered != expected { return "\(ordered) tea ordered, expected \(expected) (\(status))" }
                if stock + ordered != 10 { return "stock \(stock) + ordered \(ordered) != 10 (\(status))" }
                return nil
            }
            return SagaScenario(
                definition: PlaceOrderSaga(
                    products: products, orders: orders, options: StepOptions(timeout: .seconds(5))
                )
                .definition,
                input: PlaceOrder(user: 1, product: "tea", quantity: 2), invariants: [stockAgrees], faults: faults)
        }
        let report = try await explorer.explore()
        #expect(report.violations.isEmpty, "\(fault) in \(step): \(report)")
        #expect(report.explored == report.points.count && report.explored >= 8, "\(fault) in \(step): \(report.points)")
        print("shop saga, \(fault) in \(step): \(report.explored) crash points explored")
    }

    /// Every action and compensation delivered twice leaves the services exactly as once does, on
    /// the path that completes and on the path that refunds.
    @Test(arguments: [false, true])
    func theServicesAreIdempotentUnderDoubleDelivery(failWrite: Bool) async throws {
        struct Snapshot: Equatable, Sendable {
            var stock: Int
            var ordered: [String: Int]
        }
        let root = directory.file("double-\(failWrite)")
        let worlds = Counter()
        let current = Mutex<(ProductService, OrderService)?>(nil)
        let check = IdempotenceCheck(snapshot: {
            let (products, orders) = current.withLock { $0 }!
            return Snapshot(stock: try await products.getStock("tea"), ordered: try await orders.orderedQuantities())
        }) {
            let (products, orders) = try await Self.world(in: "\(root)/world-\(worlds.next())")
            if failWrite { orders.faults.failureRate = 1 }
            current.withLock { $0 = (products, orders) }
            return SagaScenario(
                definition: PlaceOrderSaga(products: products, orders: orders).definition,
                input: PlaceOrder(user: 1, product: "tea", quantity: 2))
        }
        let mismatch = try await check.run()
        #expect(mismatch == nil, "\(String(describing: mismatch))")
    }
}

/// A thread-safe counter for fresh world names.
final class Counter: Sendable {
    private let value = Mutex(0)

    func next() -> Int {
        value.withLock {
            $0 += 1
            return $0
        }
    }
}
