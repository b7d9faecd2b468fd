import Foundation
import SagaKit
import SagaKitSQLite
public import ShopServices

/// Settings of a load run; every property states its default.
public struct LoadOptions: Hashable, Sendable {
    /// Orders to place. Default 200.
    public var orders: Int
    /// Orders in flight at once. Default 16.
    public var concurrency: Int
    /// The probability that an order write fails (an injected fault). Default 0.1.
    public var failureRate: Double
    /// Seed of the orders' choices (customer, product, quantity) and of the faults. Default 42.
    public var seed: UInt64
    /// Keep placing orders until the process is killed (``orders`` is ignored). Default `false`.
    public var untilKilled: Bool

    /// Creates options; every parameter defaults as its property documents.
    public init(
        orders: Int = 200, concurrency: Int = 16, failureRate: Double = 0.1, seed: UInt64 = 42,
        untilKilled: Bool = false
    ) {
        self.orders = max(0, orders)
        self.concurrency = max(1, concurrency)
        self.failureRate = failureRate
        self.seed = seed
        self.untilKilled = untilKilled
    }
}

/// Where a load run stands, reported after every finished order.
public struct LoadProgress: Hashable, Sendable {
    /// Orders whose saga has been started.
    public var started: Int
    /// Orders whose saga has ended (or whose caller got an error).
    public var finished: Int
    /// Of those, completed.
    public var completed: Int
    /// Compensated.
    public var compensated: Int
    /// The orders to place; `nil` when running until killed.
    public var total: Int?
    /// Seconds since the run began.
    public var elapsed: Double
}

/// The figures of a finished load run.
public struct LoadReport: Codable, Hashable, Sendable {
    /// The run number; this run's saga ids are `r<run>-load-<n>`.
    public var run: Int
    /// Orders placed.
    public var orders: Int
    /// Orders in flight at once.
    public var concurrency: Int
    /// The injected order-write failure rate.
    public var failureRate: Double
    /// The seed.
    public var seed: UInt64
    /// Sagas that completed: orders confirmed.
    public var completed: Int
    /// Sagas that compensated: stock refunded.
    public var compensated: Int
    /// Sagas that need attention (none expected: a refund never fails for good).
    public var needsAttention: Int
    /// Orders whose caller got an error instead of an outcome.
    public var errors: Int
    /// Compensations by the failure that caused them (`OrderWriteFailed`, `OutOfStock`…).
    public var failures: [String: Int]
    /// Wall-clock seconds.
    public var seconds: Double
    /// Finished sagas per second.
    public var sagasPerSecond: Double
    /// Orders of this run in the order database (should equal ``completed``).
    public var ordersWritten: Int
    /// Sagas of any run still running or compensating in the log (should be 0).
    public var unfinishedInLog: Int
    /// The stock invariant, read from the databases after the run.
    public var invariant: StockInvariant
}

/// Draws reproducible orders: order number *n* with seed *s* is always the same order, whatever the
/// concurrency.
///
/// ```swift
/// let generator = OrderGenerator(seed: 42, customers: shop.customers.map(\.id))
/// let order = generator.order(at: 0)
/// ```
public struct OrderGenerator: Sendable {
    /// The seed.
    public let seed: UInt64
    /// The user ids orders are drawn from.
    public let customers: [Int64]

    /// Creates a generator.
    public init(seed: UInt64, customers: [Int64]) {
        self.seed = seed
        self.customers = customers
    }

    /// The order with this number: a customer, a product (tea, coffee and cocoa three times in ten
    /// each, saffron once in ten) and 1 to 3 units.
    public func order(at index: Int) -> PlaceOrder {
        var generator = SeededGenerator(seed: seed ^ SeededGenerator.mix(UInt64(truncatingIfNeeded: index)))
        let user = customers.isEmpty ? 0 : customers[Int.random(in: 0..<customers.count, using: &generator)]
        let product: String
        switch Int.random(in: 0..<10, using: &generator) {
        case 0..<3: product = "tea"
        case 3..<6: product = "coffee"
        case 6..<9: product = "cocoa"
        default: product = "saffron"
        }
        return PlaceOrder(user: user, product: product, quantity: Int.random(in: 1...3, using: &generator))
    }
}

/// Places many orders concurrently through the place-order saga, with injected write failures.
public enum LoadRun {
    /// How one order ended.
    struct Finished: Sendable {
        var status: SagaStatus?
        var failureType: String?
        var product: String
    }

    /// Runs the load on a shop whose engine is running, then reads the figures from the databases.
    ///
    /// - Parameters:
    ///   - shop: The shop; call this inside ``ShopRuntime/withEngineRunning(_:)``.
    ///   - options: Orders, concurrency, failure rate and seed. With ``LoadOptions/untilKilled`` it
    ///     never returns (until the task is cancelled): products that run out are restocked.
    ///   - progress: Called after every finished order.
    public static func run(
        _ shop: ShopRuntime, options: LoadOptions, progress: @escaping @Sendable (LoadProgress) -> Void = { _ in }
    ) async throws -> LoadReport {
        shop.orders.faults.failureRate = options.failureRate
        let generator = OrderGenerator(seed: options.seed, customers: shop.customers.map(\.id))
        let total = options.untilKilled ? Int.max : options.orders
        let began = ContinuousClock.now
        var report = LoadReport(
            run: shop.run, orders: 0, concurrency: options.concurrency, failureRate: options.failureRate,
            seed: options.seed, completed: 0, compensated: 0, needsAttention: 0, errors: 0, failures: [:], seconds: 0,
            sagasPerSecond: 0, ordersWritten: 0, unfinishedInLog: 0, invariant: StockInvariant(lines: []))

        try await withThrowingTaskGroup(of: Finished.self) { group in
            var started = 0
            func elapsed() -> Double { (ContinuousClock.now - began).timeInterval }
            while started < min(total, options.concurrency) {
                let index = started
                group.addTask { await place(shop, generator.order(at: index), index: index) }
                started += 1
            }
            while let finished = try await group.next() {
                report.orders += 1
                switch finished.status {
                case .completed?: report.completed += 1
                case .compensated?: report.compensated += 1
                case .needsAttention?: report.needsAttention += 1
                default: report.errors += 1
                }
                if let type = finished.failureType {
                    report.failures[type, default: 0] += 1
                    if options.untilKilled, type == ShopFailure.outOfStock {
                        try? await shop.products.receive(finished.product, quantity: 500)
                    }
                }
                progress(
                    LoadProgress(
                        started: started, finished: report.orders, completed: report.completed,
                        compensated: report.compensated, total: options.untilKilled ? nil : total, elapsed: elapsed()))
                if started < total, !Task.isCancelled {
                    let index = started
                    group.addTask { await place(shop, generator.order(at: index), index: index) }
                    started += 1
                }
            }
        }
        report.seconds = (ContinuousClock.now - began).timeInterval
        report.sagasPerSecond = report.seconds > 0 ? Double(report.orders) / report.seconds : 0
        report.ordersWritten = try await shop.orders.orderCount(keyPrefix: "r\(shop.run)-load-")
        report.unfinishedInLog = try await shop.store.sagas(
            matching: SagaQuery(status: [.running, .compensating], limit: .max)
        ).count
        report.invariant = try await StockInvariant.check(products: shop.products, orders: shop.orders)
        return report
    }

    static func place(_ shop: ShopRuntime, _ order: PlaceOrder, index: Int) async -> Finished {
        let sagaID = "r\(shop.run)-load-\(index)"
        do {
            let outcome = try await shop.placeOrder(order, sagaID: sagaID)
            switch outcome {
            case .compensated(let failure), .needsAttention(let failure):
                return Finished(status: outcome.status, failureType: failure.cause.type, product: order.product)
            default:
                return Finished(status: outcome.status, failureType: nil, product: order.product)
            }
        } catch {
            return Finished(status: nil, failureType: nil, product: order.product)
        }
    }
}

extension Duration {
    /// The duration in seconds.
    var timeInterval: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}
