public import Foundation
import GRDB
import SQLiteGroupCommit
import SagaKit

/// The product service: stock per product, in its own SQLite file.
///
/// Deductions and refunds are **idempotent by key**. Each applied key is recorded in the
/// `stock_movements` table in the same transaction as the stock change it made, so a repeated call
/// finds the key and changes nothing. That is what lets the saga engine call
/// ``deductStock(product:quantity:key:)`` again after a crash, and run the compensation
/// ``refundStock(key:)`` more than once, without ever deducting or refunding twice.
///
/// ```swift
/// let products = try ProductService(path: "products.sqlite")
/// try await products.addProduct("tea", openingStock: 10)
/// let deduction = try await products.deductStock(product: "tea", quantity: 2, key: "order-1/deduct-stock")
/// _ = try await products.refundStock(key: deduction.key)   // back to 10
/// _ = try await products.refundStock(key: deduction.key)   // still 10: already refunded
/// ```
///
/// ## A refund that overtakes its deduction
///
/// A refund for a key that was never deducted changes no stock, but it is not forgotten: it leaves a
/// **tombstone** for the key. A deduction that arrives later with that key (a delayed request, a
/// retry still in flight when the saga gave up on it) then finds the tombstone and is refused with
/// ``ShopFailure/deductionCancelled`` instead of taking stock that nobody will ever give back. This is
/// the classic countermeasure for a compensation that overtakes its action: without it, "refund
/// first, deduct second" would lose the units for good.
///
/// - Important: The key names one deduction. Reusing it with another product or quantity is refused
///   with ``ShopFailure/idempotencyKeyReused``.
public final class ProductService: Sendable {
    /// The database file's path.
    public let path: String
    let database: DatabasePool
    /// Batches concurrent saga calls into shared transactions (one disk sync for many), each call
    /// still applied, or refused, on its own.
    let writer: SQLiteGroupCommitWriter
    /// A deliberately broken behaviour, for the shop's property test to catch; never set otherwise.
    let plantedBug: PlantedBug?

    /// A bug the shop's property test plants to show it is caught.
    package enum PlantedBug: Sendable {
        /// A refund of a key already refunded gives the units back again: a refund that is not
        /// idempotent.
        case refundIgnoresItsKey
    }

    /// Opens the product database at `path`, creating it if needed.
    ///
    /// - Throws: ``ShopStorageError`` when the file is not an SQLite database, belongs to another
    ///   service, or cannot be created.
    public convenience init(path: String) throws {
        try self.init(path: path, plantedBug: nil)
    }

    /// Opens the product database with a planted bug (the shop's tests only).
    package init(path: String, plantedBug: PlantedBug?) throws {
        self.path = path
        self.database = try ServiceDatabase.open(path: path, service: "products", migrator: Self.migrator)
        self.writer = SQLiteGroupCommitWriter(database)
        self.plantedBug = plantedBug
    }

    /// Closes the database; later calls fail.
    public func close() throws {
        try database.close()
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("products.v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE products (
                        name TEXT PRIMARY KEY NOT NULL,
                        stock INTEGER NOT NULL CHECK (stock >= 0),
                        received INTEGER NOT NULL CHECK (received >= 0)
                    );
                    CREATE TABLE stock_movements (
                        idempotency_key TEXT PRIMARY KEY NOT NULL,
                        state TEXT NOT NULL CHECK (state IN ('deducted', 'refunded', 'tombstone')),
                        product TEXT REFERENCES products(name),
                        quantity INTEGER NOT NULL,
                        deducted_at REAL,
                        settled_at REAL
                    );
                    """)
        }
        return migrator
    }

    // MARK: Catalog

    /// Adds a product with its opening stock; does nothing if the product exists.
    ///
    /// Returns whether the product was added. Safe to call on every start.
    @discardableResult
    public func addProduct(_ product: String, openingStock: Int) async throws -> Bool {
        guard openingStock >= 0 else {
            throw NonRetryableError("opening stock must not be negative", type: ShopFailure.invalidQuantity)
        }
        return try await database.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO products (name, stock, received) VALUES (?, ?, ?)",
                arguments: [product, openingStock, openingStock])
            return db.changesCount > 0
        }
    }

    /// Adds `quantity` units to a product's stock (a delivery); counted in ``StockLevel/received``.
    public func receive(_ product: String, quantity: Int) async throws {
        guard quantity > 0 else {
            throw NonRetryableError("a delivery must hold at least one unit", type: ShopFailure.invalidQuantity)
        }
        try await database.write { db in
            try db.execute(
                sql: "UPDATE products SET stock = stock + ?, received = received + ? WHERE name = ?",
                arguments: [quantity, quantity, product])
            guard db.changesCount > 0 else { throw Self.unknownProduct(product) }
        }
    }

    // MARK: Reading

    /// The units of `product` in stock.
    ///
    /// - Throws: `NonRetryableError` of type ``ShopFailure/unknownProduct``.
    public func getStock(_ product: String) async throws -> Int {
        try await database.read { db in
            guard
                let stock = try Int.fetchOne(db, sql: "SELECT stock FROM products WHERE name = ?", arguments: [product])
            else { throw Self.unknownProduct(product) }
            return stock
        }
    }

    /// Every product's stock, and how many units it ever received, by name.
    public func stockLevels() async throws -> [StockLevel] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT name, stock, received FROM products ORDER BY name").map { row in
                StockLevel(product: row["name"], stock: row["stock"], received: row["received"])
            }
        }
    }

    /// What the service recorded for an idempotency key, or `nil` if it never saw it.
    public func movement(key: String) async throws -> StockMovement? {
        try await database.read { db in try Self.movement(db, key: key) }
    }

    /// Every recorded movement, oldest first.
    public func movements() async throws -> [StockMovement] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM stock_movements ORDER BY rowid").map(Self.movement(row:))
        }
    }

    // MARK: Deducting and refunding

    /// Takes `quantity` units of `product` out of stock, once per key.
    ///
    /// A second call with the same key returns the first call's deduction (with
    /// ``StockDeduction/isReplay`` set) and changes nothing, even if the deduction has been refunded
    /// since.
    ///
    /// - Throws: `NonRetryableError` of type ``ShopFailure/outOfStock`` (stock would go below zero),
    ///   ``ShopFailure/unknownProduct``, ``ShopFailure/invalidQuantity``, ``ShopFailure/invalidKey``,
    ///   ``ShopFailure/idempotencyKeyReused``, or ``ShopFailure/deductionCancelled`` when a refund with
    ///   this key came first (see "A refund that overtakes its deduction" above).
    public func deductStock(product: String, quantity: Int, key: String) async throws -> StockDeduction {
        guard !key.isEmpty else {
            throw NonRetryableError("the idempotency key is empty", type: ShopFailure.invalidKey)
        }
        guard quantity > 0 else {
            throw NonRetryableError(
                "cannot deduct \(quantity) \(product): the quantity must be at least 1",
                type: ShopFailure.invalidQuantity)
        }
        let now = Date()
        return try await writer.write { db in
            if let movement = try Self.movement(db, key: key) {
                if movement.state == .tombstone {
                    throw NonRetryableError(
                        "stock deduction '\(key)' arrived after its refund; the refund's tombstone cancels it",
                        type: ShopFailure.deductionCancelled)
                }
                guard movement.product == product, movement.quantity == quantity else {
                    throw NonRetryableError(
                        "idempotency key '\(key)' already deducted \(movement.quantity) \(movement.product ?? "?"), not \(quantity) \(product)",
                        type: ShopFailure.idempotencyKeyReused)
                }
                return StockDeduction(key: key, product: product, quantity: quantity, isReplay: true)
            }
            guard
                let stock = try Int.fetchOne(
                    db, sql: "SELECT stock FROM products WHERE name = ?", arguments: [product])
            else { throw Self.unknownProduct(product) }
            guard stock >= quantity else {
                throw NonRetryableError(
                    "only \(stock) \(product) left, \(quantity) requested", type: ShopFailure.outOfStock)
            }
            try db.execute(
                sql: "UPDATE products SET stock = stock - ? WHERE name = ?", arguments: [quantity, product])
            try db.execute(
                sql: """
                    INSERT INTO stock_movements (idempotency_key, state, product, quantity, deducted_at)
                    VALUES (?, 'deducted', ?, ?, ?)
                    """,
                arguments: [key, product, quantity, now.timeIntervalSince1970])
            return StockDeduction(key: key, product: product, quantity: quantity, isReplay: false)
        }
    }

    /// Gives back what the deduction with this key took, once.
    ///
    /// Refunding twice changes nothing the second time. Refunding a key that was never deducted
    /// changes no stock and leaves a tombstone, so that a deduction arriving later with the key is
    /// refused (see "A refund that overtakes its deduction" above). A refund never fails for a
    /// business reason: only a storage failure (retryable) can make it throw.
    public func refundStock(key: String) async throws -> StockRefund {
        guard !key.isEmpty else {
            throw NonRetryableError("the idempotency key is empty", type: ShopFailure.invalidKey)
        }
        let now = Date()
        return try await writer.write { db in
            guard let movement = try Self.movement(db, key: key) else {
                try db.execute(
                    sql: """
                        INSERT INTO stock_movements (idempotency_key, state, product, quantity, settled_at)
                        VALUES (?, 'tombstone', NULL, 0, ?)
                        """,
                    arguments: [key, now.timeIntervalSince1970])
                return StockRefund(key: key, result: .nothingDeducted, product: nil, quantity: 0)
            }
            switch movement.state {
            case .deducted:
                try db.execute(
                    sql: "UPDATE products SET stock = stock + ? WHERE name = ?",
                    arguments: [movement.quantity, movement.product])
                try db.execute(
                    sql: "UPDATE stock_movements SET state = 'refunded', settled_at = ? WHERE idempotency_key = ?",
                    arguments: [now.timeIntervalSince1970, key])
                return StockRefund(
                    key: key, result: .refunded, product: movement.product, quantity: movement.quantity)
            case .refunded where self.plantedBug == .refundIgnoresItsKey:
                try db.execute(
                    sql: "UPDATE products SET stock = stock + ? WHERE name = ?",
                    arguments: [movement.quantity, movement.product])
                return StockRefund(
                    key: key, result: .refunded, product: movement.product, quantity: movement.quantity)
            case .refunded:
                return StockRefund(key: key, result: .alreadyRefunded, product: movement.product, quantity: 0)
            default:
                return StockRefund(key: key, result: .nothingDeducted, product: nil, quantity: 0)
            }
        }
    }

    // MARK: Rows

    static func unknownProduct(_ product: String) -> NonRetryableError {
        NonRetryableError("the product service has no product '\(product)'", type: ShopFailure.unknownProduct)
    }

    static func movement(_ db: Database, key: String) throws -> StockMovement? {
        try Row.fetchOne(db, sql: "SELECT * FROM stock_movements WHERE idempotency_key = ?", arguments: [key])
            .map(movement(row:))
    }

    static func movement(row: Row) -> StockMovement {
        let deducted: Double? = row["deducted_at"]
        let settled: Double? = row["settled_at"]
        return StockMovement(
            key: row["idempotency_key"],
            state: StockMovement.State(rawValue: row["state"]),
            product: row["product"],
            quantity: row["quantity"],
            deductedAt: deducted.map(Date.init(timeIntervalSince1970:)),
            settledAt: settled.map(Date.init(timeIntervalSince1970:))
        )
    }
}

/// One product's stock, and every unit it ever received (opening stock plus deliveries).
///
/// The shop's invariant, once no saga is in flight: `received == stock + units in confirmed orders`.
public struct StockLevel: Codable, Hashable, Sendable {
    /// The product's name.
    public var product: String
    /// Units in stock now.
    public var stock: Int
    /// Units ever received: the opening stock plus deliveries.
    public var received: Int

    /// Creates a stock level.
    public init(product: String, stock: Int, received: Int) {
        self.product = product
        self.stock = stock
        self.received = received
    }
}

/// What ``ProductService/deductStock(product:quantity:key:)`` did: the deduct-stock step's output,
/// logged by the saga engine.
public struct StockDeduction: Codable, Hashable, Sendable {
    /// The idempotency key the deduction was made with.
    public var key: String
    /// The product.
    public var product: String
    /// The units deducted.
    public var quantity: Int
    /// Whether this call found the key already applied and changed nothing.
    public var isReplay: Bool

    /// Creates a deduction receipt.
    public init(key: String, product: String, quantity: Int, isReplay: Bool) {
        self.key = key
        self.product = product
        self.quantity = quantity
        self.isReplay = isReplay
    }
}

/// What ``ProductService/refundStock(key:)`` did.
public struct StockRefund: Hashable, Sendable {
    /// The three things a refund can find.
    public struct Result: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String {
            case refunded, alreadyRefunded = "already refunded", nothingDeducted = "nothing deducted"
        }
        private let base: Base

        /// The deduction was undone now: its units are back in stock.
        public static let refunded = Result(base: .refunded)
        /// The deduction had been undone before; nothing changed.
        public static let alreadyRefunded = Result(base: .alreadyRefunded)
        /// No deduction was made with this key; nothing changed, and a tombstone now blocks one.
        public static let nothingDeducted = Result(base: .nothingDeducted)

        /// What the refund found, in words.
        public var description: String { base.rawValue }
    }

    /// The idempotency key.
    public var key: String
    /// What the refund found.
    public var result: Result
    /// The product, when a deduction was made with the key.
    public var product: String?
    /// Units put back in stock by this call (0 unless ``Result/refunded``).
    public var quantity: Int
}

/// What the product service recorded for one idempotency key.
public struct StockMovement: Hashable, Sendable {
    /// Where a key stands.
    public struct State: Hashable, Sendable, CustomStringConvertible {
        /// The value stored in the `state` column.
        public let rawValue: String
        init(rawValue: String) { self.rawValue = rawValue }

        /// The stock was deducted and not refunded.
        public static let deducted = State(rawValue: "deducted")
        /// The stock was deducted, then refunded.
        public static let refunded = State(rawValue: "refunded")
        /// A refund came for a key never deducted: a later deduction with the key is refused.
        public static let tombstone = State(rawValue: "tombstone")

        /// The stored value.
        public var description: String { rawValue }
    }

    /// The idempotency key.
    public var key: String
    /// Where it stands.
    public var state: State
    /// The product deducted (`nil` for a tombstone).
    public var product: String?
    /// The units deducted (0 for a tombstone).
    public var quantity: Int
    /// When the deduction was applied.
    public var deductedAt: Date?
    /// When it was refunded, or when the tombstone was written.
    public var settledAt: Date?
}
