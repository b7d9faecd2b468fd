import Foundation
import GRDB
import SagaKit
public import ShopServices

/// The shop before the split: users, products and orders in **one** SQLite file, and one transaction
/// per order, the way the article's monolith placed them.
///
/// Placing an order checks the customer, the product and the stock, deducts the stock and writes the
/// order in a single transaction. When the write fails (an injected ``WriteFaults`` failure, as in the
/// split shop), the transaction rolls back and takes the deduction with it: nothing to compensate.
/// That guarantee is what splitting the database loses, and what the place-order saga restores.
///
/// ```swift
/// let shop = try MonolithShop(path: "monolith.sqlite")
/// let customers = try await shop.seed()
/// let order = try await shop.placeOrder(user: customers[0], product: "tea", quantity: 2, key: "order-1")
/// ```
public final class MonolithShop: Sendable {
    /// The database file's path.
    public let path: String
    /// The per-order limit and the injected faults, as for the order service.
    public let configuration: OrderService.Configuration
    let database: DatabasePool

    /// Opens the single database at `path`, creating it if needed.
    public init(path: String, configuration: OrderService.Configuration = .init()) throws {
        self.path = path
        self.configuration = configuration
        var migrator = DatabaseMigrator()
        migrator.registerMigration("monolith.v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE users (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        name TEXT NOT NULL,
                        email TEXT NOT NULL UNIQUE
                    );
                    CREATE TABLE products (
                        name TEXT PRIMARY KEY NOT NULL,
                        stock INTEGER NOT NULL CHECK (stock >= 0),
                        received INTEGER NOT NULL,
                        carried INTEGER NOT NULL
                    );
                    CREATE TABLE orders (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        idempotency_key TEXT NOT NULL UNIQUE,
                        user_id INTEGER NOT NULL REFERENCES users(id),
                        product TEXT NOT NULL REFERENCES products(name),
                        quantity INTEGER NOT NULL,
                        created_at REAL NOT NULL
                    );
                    """)
        }
        self.database = try ServiceDatabase.open(path: path, service: "monolith", migrator: migrator)
    }

    /// Closes the database.
    public func close() throws {
        try database.close()
    }

    /// Puts ``ShopCatalog``'s products and customers in place (once) and returns the customers' ids.
    public func seed() async throws -> [Int64] {
        try await database.write { db in
            for product in ShopCatalog.products {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO products (name, stock, received, carried) VALUES (?, ?, ?, ?)",
                    arguments: [product.name, product.openingStock, product.openingStock, product.carried])
            }
            var ids: [Int64] = []
            for customer in ShopCatalog.customers {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO users (name, email) VALUES (?, ?)",
                    arguments: [customer.name, customer.email])
                if let id = try Int64.fetchOne(
                    db, sql: "SELECT id FROM users WHERE email = ?", arguments: [customer.email])
                {
                    ids.append(id)
                }
            }
            return ids
        }
    }

    /// Places an order in one transaction: checks, stock deduction and order row commit together or
    /// not at all. Idempotent by key, like the split services.
    ///
    /// - Throws: `NonRetryableError` with the same ``ShopFailure`` types as the split services.
    public func placeOrder(user: Int64, product: String, quantity: Int, key: String) async throws -> Order {
        let limit = configuration.maxQuantityPerOrder
        let faults = configuration.faults
        let now = Date().timeIntervalSince1970
        return try await database.write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT * FROM orders WHERE idempotency_key = ?", arguments: [key]) {
                return Order(
                    id: row["id"], user: row["user_id"], product: row["product"], quantity: row["quantity"],
                    key: key, createdAt: Date(timeIntervalSince1970: row["created_at"]))
            }
            guard
                try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)", arguments: [user])
                    == true
            else {
                throw NonRetryableError("no user with id \(user)", type: ShopFailure.unknownUser)
            }
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT stock, carried FROM products WHERE name = ?", arguments: [product]),
                row["carried"] as Bool
            else {
                throw NonRetryableError("the shop does not carry '\(product)'", type: ShopFailure.productNotCarried)
            }
            guard quantity > 0 else {
                throw NonRetryableError("an order must hold at least 1 unit", type: ShopFailure.invalidQuantity)
            }
            guard quantity <= limit else {
                throw NonRetryableError(
                    "\(quantity) \(product) is over the limit of \(limit) units per order",
                    type: ShopFailure.quantityOverLimit)
            }
            let stock: Int = row["stock"]
            guard stock >= quantity else {
                throw NonRetryableError(
                    "only \(stock) \(product) left, \(quantity) requested", type: ShopFailure.outOfStock)
            }
            try db.execute(
                sql: "UPDATE products SET stock = stock - ? WHERE name = ?", arguments: [quantity, product])
            // The same injected fault as the split order service, after the deduction: the rollback
            // undoes the deduction with the order.
            if faults.shouldFail(key: key) {
                throw NonRetryableError(
                    "the database refused the order write (injected fault)", type: ShopFailure.orderWriteFailed)
            }
            try db.execute(
                sql: """
                    INSERT INTO orders (idempotency_key, user_id, product, quantity, created_at)
                    VALUES (?, ?, ?, ?, ?)
                    """,
                arguments: [key, user, product, quantity, now])
            return Order(
                id: db.lastInsertedRowID, user: user, product: product, quantity: quantity, key: key,
                createdAt: Date(timeIntervalSince1970: now))
        }
    }

    /// The stock invariant, from the single database.
    public func invariant() async throws -> StockInvariant {
        try await database.read { db in
            let ordered = try Dictionary(
                uniqueKeysWithValues: Row.fetchAll(
                    db, sql: "SELECT product, SUM(quantity) AS units FROM orders GROUP BY product"
                ).map { row -> (String, Int) in (row["product"], row["units"]) })
            return StockInvariant(
                lines: try Row.fetchAll(db, sql: "SELECT name, stock, received FROM products ORDER BY name").map {
                    row in
                    StockInvariant.Line(
                        product: row["name"], received: row["received"], stock: row["stock"],
                        ordered: ordered[row["name"]] ?? 0)
                })
        }
    }

    /// The number of orders whose key starts with `prefix`.
    public func orderCount(keyPrefix prefix: String) async throws -> Int {
        try await database.read { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM orders WHERE substr(idempotency_key, 1, ?) = ?",
                arguments: [prefix.utf8.count, prefix]) ?? 0
        }
    }
}

/// The figures of a `saga-demo monolith` run.
public struct MonolithReport: Codable, Hashable, Sendable {
    /// The data directory.
    public var dataDirectory: String
    /// The run number; order keys are `r<run>-mono-<n>`.
    public var run: Int
    /// Orders placed.
    public var orders: Int
    /// Orders in flight at once.
    public var concurrency: Int
    /// The injected write failure rate.
    public var failureRate: Double
    /// Orders confirmed.
    public var confirmed: Int
    /// Orders refused, by failure type.
    public var refused: [String: Int]
    /// Wall-clock seconds.
    public var seconds: Double
    /// Orders per second.
    public var ordersPerSecond: Double
    /// Orders of this run in the database (should equal ``confirmed``).
    public var ordersWritten: Int
    /// The stock invariant, from the single database.
    public var invariant: StockInvariant
}

/// The `monolith` subcommand: the same load as ``LoadRun``, on the single-database shop.
public enum MonolithRun {
    /// Places `options.orders` orders with `options.concurrency` in flight on the directory's
    /// `monolith.sqlite`, and reads the figures back.
    public static func run(
        directory: DataDirectory, options: LoadOptions,
        progress: @escaping @Sendable (LoadProgress) -> Void = { _ in }
    ) async throws -> MonolithReport {
        let state = try DemoState(path: directory.path(of: ShopFiles.demo))
        defer { try? state.close() }
        let run = try await state.beginRun(mode: "monolith")
        let shop = try MonolithShop(
            path: directory.path(of: ShopFiles.monolith),
            configuration: .init(faults: WriteFaults(failureRate: options.failureRate, seed: options.seed)))
        defer { try? shop.close() }
        let generator = OrderGenerator(seed: options.seed, customers: try await shop.seed())
        let began = ContinuousClock.now
        var confirmed = 0
        var refused: [String: Int] = [:]
        var finished = 0
        try await withThrowingTaskGroup(of: String?.self) { group in
            var started = 0
            func add() {
                let index = started
                let order = generator.order(at: index)
                group.addTask {
                    do {
                        _ = try await shop.placeOrder(
                            user: order.user, product: order.product, quantity: order.quantity,
                            key: "r\(run)-mono-\(index)")
                        return nil
                    } catch let error as NonRetryableError {
                        return error.type
                    }
                }
                started += 1
            }
            while started < min(options.orders, options.concurrency) { add() }
            while let failure = try await group.next() {
                finished += 1
                if let failure { refused[failure, default: 0] += 1 } else { confirmed += 1 }
                progress(
                    LoadProgress(
                        started: started, finished: finished, completed: confirmed, compensated: finished - confirmed,
                        total: options.orders, elapsed: (ContinuousClock.now - began).timeInterval))
                if started < options.orders { add() }
            }
        }
        let seconds = (ContinuousClock.now - began).timeInterval
        return MonolithReport(
            dataDirectory: directory.path, run: run, orders: finished, concurrency: options.concurrency,
            failureRate: options.failureRate, confirmed: confirmed, refused: refused, seconds: seconds,
            ordersPerSecond: seconds > 0 ? Double(finished) / seconds : 0,
            ordersWritten: try await shop.orderCount(keyPrefix: "r\(run)-mono-"), invariant: try await shop.invariant())
    }
}
