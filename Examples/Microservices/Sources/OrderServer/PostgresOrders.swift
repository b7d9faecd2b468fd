import Foundation
import Logging
public import PostgresNIO
public import SagaKitPostgres

/// order-service's orders on PostgreSQL: the `shop_orders` table in the saga log's database, written by
/// the place-order saga's local step (`SagaStep.postgresLocal`) in the transaction of its outcome
/// record, so that several order-service replicas sharing the log write each order exactly once.
public struct PostgresOrders: OrderReading {
    let store: PostgresSagaStore
    let logger: Logger

    /// Orders in the database of `store`.
    public init(store: PostgresSagaStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Creates `shop_orders` if it is not there yet. Replicas that start together take turns under an
    /// advisory lock, as the saga store's own migrations do.
    public func prepare() async throws {
        try await store.withConnection { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                try await connection.query("SELECT pg_advisory_xact_lock(hashtext('shop_orders.v1'))", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS shop_orders (
                        id bigserial PRIMARY KEY,
                        saga_id text NOT NULL UNIQUE,
                        user_id bigint NOT NULL,
                        product_id integer NOT NULL,
                        quantity integer NOT NULL CHECK (quantity > 0),
                        created_at timestamptz NOT NULL DEFAULT now()
                    )
                    """, logger: logger)
                try await connection.query("COMMIT", logger: logger)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// Writes the order of saga `sagaID` on `connection`, inside the local step's transaction.
    static func insert(_ order: PlaceOrder, sagaID: String, on connection: PostgresConnection, logger: Logger)
        async throws -> PlacedOrder
    {
        let rows = try await connection.query(
            """
            INSERT INTO shop_orders (saga_id, user_id, product_id, quantity)
            VALUES (\(sagaID), \(order.userID), \(order.productID), \(order.quantity))
            RETURNING id
            """, logger: logger)
        for try await id in rows.decode(Int64.self) {
            return PlacedOrder(
                id: id, userID: order.userID, productID: order.productID, quantity: order.quantity, sagaID: sagaID)
        }
        throw OrderNotWritten(sagaID: sagaID)
    }

    public func order(id: Int64) async throws -> PlacedOrder? {
        try await store.withConnection { connection in
            let rows = try await connection.query(
                "SELECT id, user_id, product_id, quantity, saga_id FROM shop_orders WHERE id = \(id)", logger: logger)
            for try await (id, user, product, quantity, saga) in rows.decode((Int64, Int64, Int32, Int32, String).self)
            {
                return PlacedOrder(id: id, userID: user, productID: product, quantity: quantity, sagaID: saga)
            }
            return nil
        }
    }

    public func createdByProduct() async throws -> [Int32: Int] {
        try await store.withConnection { connection in
            var counts: [Int32: Int] = [:]
            let rows = try await connection.query(
                "SELECT product_id, count(*) FROM shop_orders GROUP BY product_id", logger: logger)
            for try await (product, count) in rows.decode((Int32, Int).self) { counts[product] = count }
            return counts
        }
    }
}

/// The insert returned no row: never expected, and rolled back with the step.
struct OrderNotWritten: Error, CustomStringConvertible {
    var sagaID: String
    var description: String { "the order of saga '\(sagaID)' was not written" }
}
