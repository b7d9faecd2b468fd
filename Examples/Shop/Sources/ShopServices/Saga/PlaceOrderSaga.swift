public import SagaKit

/// The input of the place-order saga: who orders how many units of what.
///
/// It is logged when the saga starts and handed to every step, also after a crash, so it is a plain
/// `Codable` value.
public struct PlaceOrder: Codable, Hashable, Sendable {
    /// The customer's user id (from the user service).
    public var user: Int64
    /// The product's name.
    public var product: String
    /// The units ordered.
    public var quantity: Int

    /// Creates an order request.
    public init(user: Int64, product: String, quantity: Int) {
        self.user = user
        self.product = product
        self.quantity = quantity
    }
}

/// What a placed order returns: the place-order saga's output.
public struct OrderConfirmation: Codable, Hashable, Sendable {
    /// The order number the order service assigned.
    public var orderID: Int64
    /// The customer's user id.
    public var user: Int64
    /// The product.
    public var product: String
    /// The units ordered, and deducted from stock.
    public var quantity: Int
    /// The idempotency key of the stock deduction (and of its refund, had there been one).
    public var deductionKey: String
    /// The idempotency key the order was created with.
    public var orderKey: String

    /// Creates a confirmation.
    public init(orderID: Int64, user: Int64, product: String, quantity: Int, deductionKey: String, orderKey: String) {
        self.orderID = orderID
        self.user = user
        self.product = product
        self.quantity = quantity
        self.deductionKey = deductionKey
        self.orderKey = orderKey
    }
}

/// The place-order saga over a product service and an order service.
///
/// Two steps:
/// 1. `deduct-stock` (compensatable) asks the product service to take the units out of stock; its
///    compensation asks for a refund **with the same idempotency key**, so a refund undoes exactly
///    that deduction, once, and is a no-op (leaving a tombstone) if the deduction never happened.
/// 2. `create-order` (the pivot) asks the order service to write the order. If it fails for good,
///    the engine compensates `deduct-stock`: the stock is refunded. Once it succeeds, the order stands.
///
/// ```swift
/// let saga = PlaceOrderSaga(products: products, orders: orders)
/// let engine = SagaEngine(store: try SQLiteSagaStore(path: "sagas.sqlite"), logger: logger)
/// try engine.register(saga.definition)
/// // with the engine running:
/// switch try await engine.execute(saga.definition, id: "order-42", input: PlaceOrder(user: 1, product: "tea", quantity: 2)) {
/// case .completed(let confirmation): print("order #\(confirmation.orderID)")
/// case .compensated(let failure): print("refunded: \(failure.cause.message)")
/// default: break
/// }
/// ```
///
/// - Important: The saga and step names below are written to the saga log and identify in-flight
///   sagas across restarts and versions: never rename them.
public struct PlaceOrderSaga: Sendable {
    /// The saga's stable name.
    public static let name = "place-order"
    /// The first step's stable name.
    public static let deductStockStep = "deduct-stock"
    /// The pivot's stable name.
    public static let createOrderStep = "create-order"

    /// Deducts the stock; compensated by a refund with the same key.
    public let deductStock: SagaStep<PlaceOrder, StockDeduction>
    /// Writes the order: the point of no return.
    public let createOrder: SagaStep<PlaceOrder, OrderConfirmation>
    /// The saga: `deduct-stock`, then `create-order`, returning the order confirmation.
    public let definition: SagaDefinition<PlaceOrder, OrderConfirmation>

    /// Builds the saga over these services.
    ///
    /// Build it again over new service instances after a restart: the structure, and so the
    /// definition's fingerprint, is the same, and the new engine resumes the logged sagas with it.
    ///
    /// - Parameter options: Retry and timeout settings for both steps (not part of the fingerprint).
    public init(products: ProductService, orders: OrderService, options: StepOptions = StepOptions()) {
        let deductStock = SagaStep<PlaceOrder, StockDeduction>.compensatable(Self.deductStockStep, options: options) {
            context in
            try await products.deductStock(
                product: context.input.product, quantity: context.input.quantity, key: context.idempotencyKey)
        } compensation: { _, context in
            // The deduction's own key: refunds that deduction, at most once; a no-op (and a tombstone)
            // if it never happened. The logged output is not needed, and is nil when the action's
            // outcome was never logged.
            _ = try await products.refundStock(key: context.idempotencyKey)
        }

        let createOrder = SagaStep<PlaceOrder, OrderConfirmation>.pivot(Self.createOrderStep, options: options) {
            context in
            let deduction = try context.output(of: deductStock)
            let order = try await orders.createOrder(
                user: context.input.user, product: context.input.product, quantity: context.input.quantity,
                key: context.idempotencyKey)
            return OrderConfirmation(
                orderID: order.id, user: order.user, product: order.product, quantity: order.quantity,
                deductionKey: deduction.key, orderKey: order.key)
        }

        self.deductStock = deductStock
        self.createOrder = createOrder
        self.definition = SagaDefinition(Self.name, returning: createOrder) {
            deductStock  // compensatable: refunded if the order cannot be written
            createOrder  // pivot: once the order is written, it stands
        }
    }
}
