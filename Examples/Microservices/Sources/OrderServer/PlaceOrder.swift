public import Logging
public import SagaKit
import SagaKitPostgres
import SagaKitSQLite

/// Where order-service keeps its orders, and so how the place-order saga writes one: in the saga log's
/// own database, in the transaction of the step's outcome record.
public struct OrderStorage: Sendable {
    enum Base: Sendable {
        case sqlite
        case postgres(Logger)
    }

    let base: Base

    /// `shop_orders` in the SQLite log file (`SagaStep.local`).
    public static let sqlite = OrderStorage(base: .sqlite)

    /// `shop_orders` in the PostgreSQL log database (`SagaStep.postgresLocal`), for replicas sharing it.
    public static func postgres(logger: Logger) -> OrderStorage { OrderStorage(base: .postgres(logger)) }
}

/// An order as `POST /orders` takes it, and the place-order saga's logged input.
public struct PlaceOrder: Codable, Hashable, Sendable {
    /// The customer, a user of user-service.
    public var userID: Int64
    /// The product, as product-service numbers it (the article's `product_id`).
    public var productID: Int32
    /// The units ordered.
    public var quantity: Int32

    /// Creates an order.
    public init(userID: Int64, productID: Int32, quantity: Int32) {
        self.userID = userID
        self.productID = productID
        self.quantity = quantity
    }

    enum CodingKeys: String, CodingKey {
        case userID = "user_id"
        case productID = "product_id"
        case quantity
    }
}

/// A placed order: the place-order saga's output, and what `GET /orders/{id}` answers.
public struct PlacedOrder: Codable, Hashable, Sendable {
    /// The order number.
    public var id: Int64
    /// The customer.
    public var userID: Int64
    /// The product.
    public var productID: Int32
    /// The units ordered, deducted from stock.
    public var quantity: Int32
    /// The saga that placed it.
    public var sagaID: String

    /// Creates a placed order.
    public init(id: Int64, userID: Int64, productID: Int32, quantity: Int32, sagaID: String) {
        self.id = id
        self.userID = userID
        self.productID = productID
        self.quantity = quantity
        self.sagaID = sagaID
    }

    enum CodingKeys: String, CodingKey {
        case id
        case userID = "user_id"
        case productID = "product_id"
        case quantity
        case sagaID = "saga_id"
    }
}

/// The networked place-order saga: check the customer with user-service, deduct the stock with
/// product-service (refunded by the same key if the order cannot be written), then write the order
/// in order-service's own tables, in the saga log's database (SQLite or PostgreSQL), in the same
/// transaction as the step's outcome record: exactly once.
///
/// - Important: The names below are written to the saga log: never rename them.
public enum PlaceOrderSaga {
    /// The saga's stable name.
    public static let name = "place-order"

    /// The saga over these participants.
    ///
    /// - Parameters:
    ///   - users: user-service.
    ///   - stock: product-service.
    ///   - options: Retry and timeout settings of the remote steps (not part of the fingerprint).
    ///   - storage: Where the orders are written. Default ``OrderStorage/sqlite``.
    ///   - maxQuantityPerOrder: order-service's own rule, checked when it writes the order, after the
    ///     stock was deducted: a larger order is refused there and its stock refunded (the article's
    ///     failure: the order write fails after the deduction).
    public static func definition(
        users: any UserDirectory, stock: any StockService, options: StepOptions, storage: OrderStorage = .sqlite,
        maxQuantityPerOrder: Int32 = 10
    ) -> SagaDefinition<PlaceOrder, PlacedOrder> {
        let checkUser = SagaStep<PlaceOrder, Int64>.compensatable("check-user", options: options) { context in
            try await users.requireUser(id: context.input.userID)
            return context.input.userID
        } compensation: { _, _ in
            // A read has nothing to undo.
        }
        let deductStock = SagaStep<PlaceOrder, NoOutput>.compensatable("deduct-stock", options: options) { context in
            try await stock.deduct(
                productID: context.input.productID, quantity: context.input.quantity, key: context.idempotencyKey)
            return NoOutput()
        } compensation: { _, context in
            // The deduction's own key: refunds that deduction at most once, and leaves a tombstone if
            // it never happened, so a late deduction with the key is refused.
            try await stock.refund(key: context.idempotencyKey)
        }
        @Sendable func checkQuantity(_ order: PlaceOrder) throws {
            guard order.quantity <= maxQuantityPerOrder else {
                throw NonRetryableError(
                    "order-service writes at most \(maxQuantityPerOrder) units in one order, not \(order.quantity)",
                    type: "QuantityOverLimit")
            }
        }
        let createOrder: SagaStep<PlaceOrder, PlacedOrder>
        switch storage.base {
        case .sqlite:
            createOrder = .local("create-order", kind: .pivot) { db, context in
                try checkQuantity(context.input)
                return try OrderDatabase.insert(context.input, sagaID: context.sagaID, in: db)
            }
        case .postgres(let logger):
            createOrder = .postgresLocal("create-order", kind: .pivot) { connection, context in
                try checkQuantity(context.input)
                return try await PostgresOrders.insert(
                    context.input, sagaID: context.sagaID, on: connection, logger: logger)
            }
        }
        return SagaDefinition(name, returning: createOrder) {
            checkUser
            deductStock
            createOrder
        }
    }
}
