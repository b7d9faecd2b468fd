import Foundation
import GRDB

/// Where `GET /orders/{id}` and `orders_created_total` read the orders: SQLite (``OrderDatabase``)
/// or PostgreSQL (``PostgresOrders``), beside the saga log.
public protocol OrderReading: Sendable {
    /// The order with this number.
    func order(id: Int64) async throws -> PlacedOrder?
    /// Orders created, by product, for `orders_created_total`.
    func createdByProduct() async throws -> [Int32: Int]
}

/// order-service's orders, kept in the saga log's own SQLite file so that writing an order and
/// logging the step's outcome commit in one transaction (`SagaStep.local`).
public enum OrderDatabase {
    /// Creates order-service's table in the log file at `path` if it is not there yet. Call it
    /// before the saga store opens the file.
    public static func prepare(path: String) throws {
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("orders.v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE shop_orders (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        saga_id TEXT NOT NULL UNIQUE,
                        user_id INTEGER NOT NULL,
                        product_id INTEGER NOT NULL,
                        quantity INTEGER NOT NULL CHECK (quantity > 0),
                        created_at REAL NOT NULL
                    )
                    """)
        }
        try migrator.migrate(queue)
    }

    /// Writes the order of saga `sagaID`, inside the local step's transaction.
    static func insert(_ order: PlaceOrder, sagaID: String, in db: Database) throws -> PlacedOrder {
        try db.execute(
            sql: "INSERT INTO shop_orders (saga_id, user_id, product_id, quantity, created_at) VALUES (?, ?, ?, ?, ?)",
            arguments: [sagaID, order.userID, order.productID, order.quantity, Date().timeIntervalSince1970])
        return PlacedOrder(
            id: db.lastInsertedRowID, userID: order.userID, productID: order.productID, quantity: order.quantity,
            sagaID: sagaID)
    }

    /// A reader of the orders, beside the saga store's own connections.
    public final class Reader: OrderReading {
        let pool: DatabasePool

        /// Opens a read-only pool on the log file.
        public init(path: String) throws {
            var configuration = Configuration()
            configuration.readonly = true
            pool = try DatabasePool(path: path, configuration: configuration)
        }

        /// The order with this number.
        public func order(id: Int64) async throws -> PlacedOrder? {
            try await pool.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM shop_orders WHERE id = ?", arguments: [id]).map(Self.order)
            }
        }

        /// Orders created, by product, for `orders_created_total`.
        public func createdByProduct() async throws -> [Int32: Int] {
            try await pool.read { db in
                var counts: [Int32: Int] = [:]
                for row in try Row.fetchAll(
                    db, sql: "SELECT product_id, COUNT(*) AS n FROM shop_orders GROUP BY product_id")
                {
                    counts[row["product_id"]] = row["n"]
                }
                return counts
            }
        }

        /// Closes the pool.
        public func close() throws { try pool.close() }

        static func order(_ row: Row) -> PlacedOrder {
            PlacedOrder(
                id: row["id"], userID: row["user_id"], productID: row["product_id"], quantity: row["quantity"],
                sagaID: row["saga_id"])
        }
    }
}
