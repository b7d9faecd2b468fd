import SagaKit
import SagaKitSQLite
public import ShopServices

/// One scenario of the guided tour, as the databases and the saga log tell it afterwards.
public struct ScenarioReport: Codable, Hashable, Sendable {
    /// The scenario's number in the tour (1 to 3).
    public var number: Int
    /// What it shows.
    public var title: String
    /// The saga's id.
    public var sagaID: String
    /// The order placed.
    public var order: PlaceOrder
    /// The customer's name.
    public var customer: String
    /// The saga's final status, from the saga log.
    public var status: String
    /// The order number, when the saga completed.
    public var orderID: Int64?
    /// Why it compensated, when it did: `step 'create-order': OrderWriteFailed: …`.
    public var cause: String?
    /// The product's stock before the scenario, from the product database.
    public var stockBefore: Int
    /// The product's stock after it.
    public var stockAfter: Int
    /// Orders in the order database with the saga's create-order key (0 or 1).
    public var ordersWithKey: Int
    /// What the product service recorded for the deduction key: `deducted`, `refunded`, `tombstone`.
    public var deduction: String?
    /// The saga's timeline, from the saga log.
    public var timeline: Timeline
    /// Scenario-specific lines (where the engine stopped, what recovery found…).
    public var notes: [String]
}

/// What the tour found and did, for `--json`.
public struct TourReport: Codable, Hashable, Sendable {
    /// The data directory.
    public var dataDirectory: String
    /// The run number.
    public var run: Int
    /// Sagas left unfinished by an earlier run, and how they ended.
    public var resumed: ResumeReport
    /// Scenarios 1 to 3.
    public var scenarios: [ScenarioReport]
    /// Scenario 4, when it ran (`--orders 0` skips it).
    public var load: LoadReport?
}

/// Receives the tour's results as they happen, so the demo can print them in order.
///
/// Every method has an empty default implementation.
public protocol TourObserver: Sendable {
    /// The sagas an earlier run left unfinished have ended.
    func resumed(_ report: ResumeReport)
    /// A scenario has ended.
    func scenario(_ report: ScenarioReport)
    /// The load run (scenario 4) is starting.
    func loadStarting(_ options: LoadOptions)
    /// An order of the load run has ended.
    func loadProgress(_ progress: LoadProgress)
    /// The load run has ended.
    func load(_ report: LoadReport)
}

extension TourObserver {
    /// Does nothing.
    public func resumed(_ report: ResumeReport) {}
    /// Does nothing.
    public func scenario(_ report: ScenarioReport) {}
    /// Does nothing.
    public func loadStarting(_ options: LoadOptions) {}
    /// Does nothing.
    public func loadProgress(_ progress: LoadProgress) {}
    /// Does nothing.
    public func load(_ report: LoadReport) {}
}

/// An observer that ignores everything.
public struct SilentTourObserver: TourObserver {
    /// Creates the observer.
    public init() {}
}

/// The guided tour of `saga-demo`: the scenarios that show what the place-order saga is for.
///
/// Each scenario is a function the demo and the tests call alike; the report it returns is read back
/// from the databases and the saga log.
///
/// ```swift
/// let report = try await ShopTour.run(directory: directory, crashPoint: .beforeCreate, load: LoadOptions())
/// ```
public enum ShopTour {
    /// Runs the whole tour: resumes what an earlier run left, then scenarios 1 to 4.
    ///
    /// - Parameters:
    ///   - directory: The data directory.
    ///   - crashPoint: Where scenario 3 stops its engine. Default ``CrashPoint/beforeCreate``.
    ///   - load: Scenario 4's settings; 0 orders skips it.
    ///   - options: Seed, logger… (a crash trigger given here is ignored: scenario 3 brings its own).
    ///   - observer: Told of each result as it happens.
    public static func run(
        directory: DataDirectory, crashPoint: CrashPoint = .beforeCreate, load: LoadOptions = LoadOptions(),
        options: ShopRuntime.Options = ShopRuntime.Options(), observer: any TourObserver = SilentTourObserver()
    ) async throws -> TourReport {
        var options = options
        options.crashTrigger = nil
        let shop = try await ShopRuntime.open(directory, mode: "tour", options: options)
        let run = shop.run
        let (resumed, first, second) = try await shop.closing {
            try await shop.withEngineRunning {
                let resumed = try await shop.resumeUnfinished()
                observer.resumed(resumed)
                let first = try await successfulOrder(shop)
                observer.scenario(first)
                let second = try await failedOrderWrite(shop)
                observer.scenario(second)
                return (resumed, first, second)
            }
        }
        let third = try await crashAndRecover(directory: directory, at: crashPoint, run: run, options: options)
        observer.scenario(third)
        var report = TourReport(
            dataDirectory: directory.path, run: run, resumed: resumed, scenarios: [first, second, third], load: nil)
        guard load.orders > 0 || load.untilKilled else { return report }
        var finite = load
        finite.untilKilled = false
        let loadOptions = finite
        let last = try await ShopRuntime.open(directory, mode: "tour", options: options, continuing: run)
        observer.loadStarting(loadOptions)
        let figures = try await last.closing {
            try await last.withEngineRunning {
                try await LoadRun.run(last, options: loadOptions, progress: { observer.loadProgress($0) })
            }
        }
        observer.load(figures)
        report.load = figures
        return report
    }

    /// Scenario 1: an order that succeeds. The stock is deducted, the order written.
    public static func successfulOrder(_ shop: ShopRuntime) async throws -> ScenarioReport {
        let customer = shop.customers[0]
        let order = PlaceOrder(user: customer.id, product: "tea", quantity: 2)
        let sagaID = "r\(shop.run)-tour-1"
        let before = try await shop.products.getStock(order.product)
        _ = try await shop.placeOrder(order, sagaID: sagaID)
        return try await report(
            shop, number: 1, title: "A successful order", sagaID: sagaID, order: order, customer: customer.name,
            stockBefore: before, notes: [])
    }

    /// Scenario 2: the order write fails (an injected fault) after the stock was deducted; the saga
    /// compensates, and the stock is refunded with the deduction's own idempotency key.
    public static func failedOrderWrite(_ shop: ShopRuntime) async throws -> ScenarioReport {
        let customer = shop.customers[1 % shop.customers.count]
        let order = PlaceOrder(user: customer.id, product: "coffee", quantity: 3)
        let sagaID = "r\(shop.run)-tour-2"
        let before = try await shop.products.getStock(order.product)
        shop.orders.faults.failNextWrites(1)
        _ = try await shop.placeOrder(order, sagaID: sagaID)
        return try await report(
            shop, number: 2, title: "The order write fails: the stock is refunded", sagaID: sagaID, order: order,
            customer: customer.name, stockBefore: before,
            notes: ["the order database is told to refuse its next write (an injected fault)"])
    }

    /// Scenario 3: the engine stops at `point` (by default between deduct-stock and create-order), as
    /// if the process died; the saga log is closed, a second engine opens the same files, recovers
    /// the saga from the log, and finishes it: the order completes with the stock deducted once (or,
    /// for a point on the refund path, the stock is refunded once).
    ///
    /// - Parameters:
    ///   - directory: The data directory; the shop must not be open on it.
    ///   - point: Where the first engine stops.
    ///   - run: The run number whose saga ids to use; `nil` records a new run.
    ///   - options: Seed, logger.
    public static func crashAndRecover(
        directory: DataDirectory, at point: CrashPoint, run: Int? = nil,
        options: ShopRuntime.Options = ShopRuntime.Options()
    ) async throws -> ScenarioReport {
        var options = options
        let trigger = CrashTrigger()
        options.crashTrigger = trigger
        let first = try await ShopRuntime.open(directory, mode: "tour", options: options, continuing: run)
        let customer = first.customers[2 % first.customers.count]
        let order = PlaceOrder(user: customer.id, product: "cocoa", quantity: 1)
        let sagaID = "r\(first.run)-tour-3"
        var notes: [String] = []
        let before = try await first.products.getStock(order.product)
        trigger.arm(point, sagaID: sagaID)
        if point.isOnCompensationPath {
            first.orders.faults.failNextWrites(1)
            notes.append("the order database will refuse the write, so the saga compensates")
        }
        let early = try await first.closing {
            let result = try await first.withEngineRunning { () -> String in
                do {
                    let outcome = try await first.placeOrder(order, sagaID: sagaID)
                    return "engine 1 returned \(outcome.status) before stopping"
                } catch let error as SagaError {
                    return
                        "engine 1 stopped at \(point): \(point.explanation); engine.run threw SagaError \(error.code)"
                }
            }
            let stock = try await first.products.getStock(order.product)
            let written = try await first.orders.order(key: "\(sagaID)/\(PlaceOrderSaga.createOrderStep)") != nil
            let status = try await first.store.summary(of: sagaID)?.status.rawValue ?? "absent"
            return [
                result,
                "at the crash: stock of \(order.product) \(before) → \(stock), order written: \(written ? "yes" : "no"), saga \(status) in the log",
            ]
        }
        notes += early
        notes.append("saga log closed; a second engine opens the same files")
        options.crashTrigger = nil
        let second = try await ShopRuntime.open(directory, mode: "tour", options: options, continuing: first.run)
        return try await second.closing {
            let resumed = try await second.withEngineRunning { try await second.resumeUnfinished() }
            notes.append(
                "engine 2 recovered from the log: \(resumed.resumed) saga\(resumed.resumed == 1 ? "" : "s") resumed, \(resumed.completed) completed, \(resumed.compensated) compensated"
            )
            return try await report(
                second, number: 3, title: "The process dies mid-saga; a second engine recovers it", sagaID: sagaID,
                order: order, customer: customer.name, stockBefore: before, notes: notes)
        }
    }

    /// Reads a scenario's outcome back from the databases and the saga log.
    static func report(
        _ shop: ShopRuntime, number: Int, title: String, sagaID: String, order: PlaceOrder, customer: String,
        stockBefore: Int, notes: [String]
    ) async throws -> ScenarioReport {
        let summary = try await shop.engine.summary(of: sagaID)
        let records = try await shop.engine.history(of: sagaID)
        let written = try await shop.orders.order(key: "\(sagaID)/\(PlaceOrderSaga.createOrderStep)")
        let movement = try await shop.products.movement(key: "\(sagaID)/\(PlaceOrderSaga.deductStockStep)")
        let failedStep = records.last { $0.kind == .stepFailed }?.step
        return ScenarioReport(
            number: number, title: title, sagaID: sagaID, order: order, customer: customer,
            status: summary?.status.rawValue ?? "absent", orderID: written?.id,
            cause: summary?.lastError.map { error in (failedStep.map { "step '\($0)': " } ?? "") + error.description },
            stockBefore: stockBefore, stockAfter: try await shop.products.getStock(order.product),
            ordersWithKey: written == nil ? 0 : 1, deduction: movement?.state.rawValue,
            timeline: Timeline(records: records), notes: notes)
    }

}
