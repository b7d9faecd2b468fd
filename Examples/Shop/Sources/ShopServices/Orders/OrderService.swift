public import Foundation
import GRDB
import SQLiteGroupCommit
import SagaKit

/// The order service: orders, and the customers and products it knows, in its own SQLite file.
///
/// After the split of the monolith, the order service no longer reads the users or products tables:
/// it keeps its **own** `customers` table (filled when the user service registers someone, see
/// ``addCustomer(_:name:)``) and its own `catalog` of products it carries. An order is refused, for
/// good, when its user is unknown, its product is not carried, or its quantity is over the per-order
/// limit. For demonstrations, its write can be made to fail with ``WriteFaults``.
///
/// ``createOrder(user:product:quantity:key:)`` is **idempotent by key**: the key is a unique column of
/// the order row, written in the same transaction, so a repeated call returns the order the first
/// call created.
///
/// ```swift
/// let orders = try OrderService(path: "orders.sqlite")
/// try await orders.addCustomer(1, name: "Ada Lovelace")
/// try await orders.carry("tea")
/// let order = try await orders.createOrder(user: 1, product: "tea", quantity: 2, key: "order-1/create-order")
/// let again = try await orders.createOrder(user: 1, product: "tea", quantity: 2, key: "order-1/create-order")
/// assert(order == again)
/// ```
public final class OrderService: Sendable {
    /// Settings of an ``OrderService``; every property states its default.
    public struct Configuration: Sendable {
        /// The most units one order may hold. Default 10.
        public var maxQuantityPerOrder: Int
        /// Injected write failures. Default: none.
        public var faults: WriteFaults

        /// Creates a configuration; every parameter defaults as its property documents.
        public init(maxQuantityPerOrder: Int = 10, faults: WriteFaults = WriteFaults()) {
            self.maxQuantityPerOrder = maxQuantityPerOrder
            self.faults = faults
        }
    }

    /// The database file's path.
    public let path: String
    /// The settings the service was opened with.
    public let configuration: Configuration
    let database: DatabasePool
    /// Batches concurrent saga calls into shared transactions (one disk sync for many), each call
    /// still applied, or refused, on its own.
    let writer: SQLiteGroupCommitWriter

    /// The injected write failures (``Configuration/faults``).
    public var faults: WriteFaults { configuration.faults }

    /// Opens the order database at `path`, creating it if needed.
    ///
    /// - Throws: ``ShopStorageError`` when the file is not an SQLite database, belongs to another
    ///   service, or cannot be created.
    public init(path: String, configuration: Configuration = Configuration()) throws {
        self.path = path
        self.configuration = configuration
        self.database = try ServiceDatabase.open(path: path, service: "orders", migrator: Self.migrator)
        self.writer = SQLiteGroupCommitWriter(database)
    }

    /// Closes the database; later calls fail.
    public func close() throws {
        try database.close()
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("orders.v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE customers (
                        user_id INTEGER PRIMARY KEY NOT NULL,
                        name TEXT NOT NULL
                    );
                    CREATE TABLE catalog (
                        product TEXT PRIMARY KEY NOT NULL
                    );
                    CREATE TABLE orders (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        idempotency_key TEXT NOT NULL UNIQUE,
                        user_id INTEGER NOT NULL REFERENCES customers(user_id),
                        product TEXT NOT NULL REFERENCES catalog(product),
                        quantity INTEGER NOT NULL CHECK (quantity > 0),
                        created_at REAL NOT NULL
                    );
                    """)
        }
        return migrator
    }

    // MARK: Customers and catalog

    /// Records a customer the order service may take orders from (or renames one); idempotent.
    ///
    /// The user service owns users; this is the order service's own copy of what it needs, the way
    /// a service fed by "user registered" events keeps one.
    public func addCustomer(_ user: Int64, name: String) async throws {
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO customers (user_id, name) VALUES (?, ?)
                    ON CONFLICT (user_id) DO UPDATE SET name = excluded.name
                    """,
                arguments: [user, name])
        }
    }

    /// Adds a product to the catalog of products orders may hold; idempotent.
    public func carry(_ product: String) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO catalog (product) VALUES (?)", arguments: [product])
        }
    }

    // MARK: Orders

    /// Creates an order, once per key.
    ///
    /// A second call with the same key returns the order the first call created and writes nothing
    /// (injected faults do not apply to it: nothing is written).
    ///
    /// - Throws: `NonRetryableError` of type ``ShopFailure/unknownUser``,
    ///   ``ShopFailure/productNotCarried``, ``ShopFailure/quantityOverLimit``,
    ///   ``ShopFailure/invalidQuantity``, ``ShopFailure/invalidKey``,
    ///   ``ShopFailure/idempotencyKeyReused``, or ``ShopFailure/orderWriteFailed`` for an injected
    ///   fault. Nothing is written when it throws.
    public func createOrder(user: Int64, product: String, quantity: Int, key: String) async throws -> Order {
        guard !key.isEmpty else {
            throw NonRetryableError("the idempotency key is empty", type: ShopFailure.invalidKey)
        }
        let limit = configuration.maxQuantityPerOrder
        let faults = configuration.faults
        let now = Date()
        return try await writer.write { db in
            if let existing = try Self.order(db, key: key) {
                guard existing.user == user, existing.product == product, existing.quantity == quantity else {
                    throw NonRetryableError(
                        "idempotency key '\(key)' already created order #\(existing.id) for \(existing.quantity) \(existing.product) by user \(existing.user)",
                        type: ShopFailure.idempotencyKeyReused)
                }
                return existing
            }
            guard
                try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM customers WHERE user_id = ?)", arguments: [user]) == true
            else {
                throw NonRetryableError(
                    "the order service has no customer with user id \(user)", type: ShopFailure.unknownUser)
            }
            guard
                try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM catalog WHERE product = ?)", arguments: [product]) == true
            else {
                throw NonRetryableError(
                    "the order database does not carry '\(product)'", type: ShopFailure.productNotCarried)
            }
            guard quantity > 0 else {
                throw NonRetryableError(
                    "an order must hold at least 1 unit, not \(quantity)", type: ShopFailure.invalidQuantity)
            }
            guard quantity <= limit else {
                throw NonRetryableError(
                    "\(quantity) \(product) is over the limit of \(limit) units per order",
                    type: ShopFailure.quantityOverLimit)
            }
            if faults.shouldFail(key: key) {
                throw NonRetryableError(
                    "the order database refused the write (injected fault)", type: ShopFailure.orderWriteFailed)
            }
            try db.execute(
                sql: """
                    INSERT INTO orders (idempotency_key, user_id, product, quantity, created_at)
                    VALUES (?, ?, ?, ?, ?)
                    """,
                arguments: [key, user, product, quantity, now.timeIntervalSince1970])
            return Order(
                id: db.lastInsertedRowID, user: user, product: product, quantity: quantity, key: key,
                createdAt: Date(timeIntervalSince1970: now.timeIntervalSince1970))
        }
    }

    /// The order created with this idempotency key, if any.
    public func order(key: String) async throws -> Order? {
        try await database.read { db in try Self.order(db, key: key) }
    }

    /// Every order, oldest first.
    public func orders() async throws -> [Order] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM orders ORDER BY id").map(Self.order(row:))
        }
    }

    /// The number of orders whose idempotency key starts with `prefix` (all orders for `""`).
    public func orderCount(keyPrefix prefix: String = "") async throws -> Int {
        try await database.read { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM orders WHERE substr(idempotency_key, 1, ?) = ?",
                arguments: [prefix.utf8.count, prefix]) ?? 0
        }
    }

    /// Units in confirmed orders, by product.
    public func orderedQuantities() async throws -> [String: Int] {
        try await database.read { db in
            var totals: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT product, SUM(quantity) AS units FROM orders GROUP BY product")
            {
                totals[row["product"]] = row["units"]
            }
            return totals
        }
    }

    static func order(_ db: Database, key: String) throws -> Order? {
        try Row.fetchOne(db, sql: "SELECT * FROM orders WHERE idempotency_key = ?", arguments: [key]).map(order(row:))
    }

    static func order(row: Row) -> Order {
        Order(
            id: row["id"], user: row["user_id"], product: row["product"], quantity: row["quantity"],
            key: row["idempotency_key"], createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }
}

/// A confirmed order, as the order service stores it.
public struct Order: Codable, Hashable, Sendable {
    /// The order number, assigned by the order database.
    public var id: Int64
    /// The customer's user id.
    public var user: Int64
    /// The product.
    public var product: String
    /// The units ordered.
    public var quantity: Int
    /// The idempotency key the order was created with.
    public var key: String
    /// When it was written.
    public var createdAt: Date

    /// Creates an order value.
    public init(id: Int64, user: Int64, product: String, quantity: Int, key: String, createdAt: Date) {
        self.id = id
        self.user = user
        self.product = product
        self.quantity = quantity
        self.key = key
        self.createdAt = createdAt
    }
}
