import Foundation
import GRDB
import Testing

/// What the two databases say once the services are stopped: product-service's stock and stock
/// movements (`products.sqlite`) and order-service's orders (`shop_orders` in `sagas.sqlite`), read
/// read-only, and the invariants that tie them to the sagas' final statuses.
struct ShopLedger {
    /// One row of `stock_movements`.
    struct Movement {
        var key: String
        var state: String
        var product: String?
        var quantity: Int
        var deductedAt: Double?
    }

    var stock: Int
    var received: Int
    /// `stock_movements` by idempotency key.
    var movements: [String: Movement]
    /// The quantity of each order in `shop_orders`, by saga id.
    var orders: [String: Int]
    /// Rows of `shop_orders` (more than `orders.count` would mean a saga id with two orders).
    var orderRows: Int

    /// Reads the ledger of one product from the service's data files.
    init(product: String = "101", productsFile: String, sagasFile: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        let sagas = try DatabaseQueue(path: sagasFile, configuration: configuration)
        defer { try? sagas.close() }
        let (orders, orderRows) = try sagas.read { db in
            var orders: [String: Int] = [:]
            let rows = try Row.fetchAll(
                db, sql: "SELECT saga_id, quantity FROM shop_orders WHERE product_id = ?",
                arguments: [Int(product) ?? 0])
            for row in rows { orders[row["saga_id"]] = row["quantity"] }
            return (orders, rows.count)
        }
        try self.init(product: product, productsFile: productsFile, orders: orders, orderRows: orderRows)
    }

    /// Reads product-service's side from its data file, with order-service's orders of the product
    /// as read elsewhere (from PostgreSQL): quantity by saga id, and the number of rows.
    init(product: String = "101", productsFile: String, orders: [String: Int], orderRows: Int) throws {
        var configuration = Configuration()
        configuration.readonly = true
        let products = try DatabaseQueue(path: productsFile, configuration: configuration)
        defer { try? products.close() }
        (stock, received, movements) = try products.read { db in
            let row = try Row.fetchOne(
                db, sql: "SELECT stock, received FROM products WHERE name = ?", arguments: [product])
            var movements: [String: Movement] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM stock_movements") {
                let movement = Movement(
                    key: row["idempotency_key"], state: row["state"], product: row["product"],
                    quantity: row["quantity"], deductedAt: row["deducted_at"])
                movements[movement.key] = movement
            }
            return (row?["stock"] ?? -1, row?["received"] ?? -1, movements)
        }
        self.orders = orders
        self.orderRows = orderRows
    }

    /// The key the saga's deduct-stock step sends to product-service.
    static func deductionKey(ofSaga sagaID: String) -> String { "\(sagaID)/deduct-stock" }

    /// Records an issue for every invariant the ledger breaks, given every saga's final status (by
    /// saga id) and the product's opening stock:
    ///
    /// - every saga finished: completed or compensated;
    /// - an order row exists exactly for each completed saga, one per saga;
    /// - stock = opening − the confirmed orders' units, and every unit missing from stock is held by
    ///   a deduction still standing (no refund twice, no deduction lost);
    /// - a completed saga's key has exactly one standing deduction of its order's units; a
    ///   compensated saga's key has none (refunded, tombstoned or never applied);
    /// - every movement belongs to a saga's deduct-stock key: no deduction under another key;
    /// - no refund without a deduction: a refunded movement was deducted first, a tombstone moved
    ///   nothing.
    func check(sagas: [String: String], openingStock: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        for (saga, status) in sagas.sorted(by: { $0.key < $1.key }) {
            #expect(
                status == "completed" || status == "compensated", "saga \(saga) ended \(status)",
                sourceLocation: sourceLocation)
        }
        let completed = Set(sagas.filter { $0.value == "completed" }.keys)
        #expect(
            Set(orders.keys) == completed, "orders without a completed saga, or the reverse",
            sourceLocation: sourceLocation)
        #expect(orderRows == orders.count, "a saga with more than one order", sourceLocation: sourceLocation)

        let confirmed = orders.values.reduce(0, +)
        #expect(
            stock == openingStock - confirmed, "stock \(stock), opening \(openingStock), confirmed \(confirmed)",
            sourceLocation: sourceLocation)
        let standing = movements.values.filter { $0.state == "deducted" }.map(\.quantity).reduce(0, +)
        #expect(
            received - stock == standing, "\(received - stock) units gone, \(standing) held by deductions",
            sourceLocation: sourceLocation)

        let keys = Dictionary(uniqueKeysWithValues: sagas.keys.map { (Self.deductionKey(ofSaga: $0), $0) })
        for movement in movements.values.sorted(by: { $0.key < $1.key }) {
            guard let saga = keys[movement.key] else {
                Issue.record("a movement under a key no saga sends: \(movement)", sourceLocation: sourceLocation)
                continue
            }
            switch movement.state {
            case "deducted":
                #expect(
                    orders[saga] == movement.quantity, "a standing deduction without its order: \(movement)",
                    sourceLocation: sourceLocation)
            case "refunded":
                #expect(
                    movement.deductedAt != nil && movement.product != nil && movement.quantity > 0,
                    "a refund without a deduction: \(movement)", sourceLocation: sourceLocation)
                #expect(
                    sagas[saga] == "compensated", "\(saga) refunded but \(sagas[saga] ?? "?")",
                    sourceLocation: sourceLocation)
            case "tombstone":
                #expect(
                    movement.deductedAt == nil && movement.product == nil && movement.quantity == 0,
                    "a tombstone that moved stock: \(movement)", sourceLocation: sourceLocation)
                #expect(
                    sagas[saga] == "compensated", "\(saga) tombstoned but \(sagas[saga] ?? "?")",
                    sourceLocation: sourceLocation)
            default:
                Issue.record("a movement in an unknown state: \(movement)", sourceLocation: sourceLocation)
            }
        }
        for saga in completed.sorted() {
            #expect(
                movements[Self.deductionKey(ofSaga: saga)]?.state == "deducted",
                "completed saga \(saga) has no standing deduction", sourceLocation: sourceLocation)
        }
    }

    /// The deduction movements of these sagas' keys, by state (for a test's own assertions).
    func states(of sagaIDs: [String]) -> [String: Int] {
        var states: [String: Int] = [:]
        for saga in sagaIDs {
            states[movements[Self.deductionKey(ofSaga: saga)]?.state ?? "none", default: 0] += 1
        }
        return states
    }
}
