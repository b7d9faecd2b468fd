import SagaKit

/// The stable failure types the shop's services throw, as the `type` of a `NonRetryableError`.
///
/// A business failure is one that no retry can fix: the services throw SagaKit's `NonRetryableError`
/// for them, so that a saga step failing this way goes straight to compensation, and the saga log
/// records the type below (never a Swift type name, which could change with a refactoring).
///
/// ```swift
/// do {
///     _ = try await products.deductStock(product: "tea", quantity: 500, key: "order-1/deduct-stock")
/// } catch let error as NonRetryableError where error.type == ShopFailure.outOfStock {
///     print(error.message)  // only 8 tea left, 500 requested
/// }
/// ```
///
/// - Important: These strings are written to the saga log and read by dashboards and tests. Never
///   rename one; add a new one instead.
public enum ShopFailure {
    /// The product service has fewer units than requested.
    public static let outOfStock = "OutOfStock"
    /// The product service does not know the product.
    public static let unknownProduct = "UnknownProduct"
    /// A quantity of zero or less.
    public static let invalidQuantity = "InvalidQuantity"
    /// An empty idempotency key.
    public static let invalidKey = "InvalidKey"
    /// A deduction arrived after a refund with the same key: the refund's tombstone cancels it.
    public static let deductionCancelled = "DeductionCancelled"
    /// An idempotency key came back with different parameters (another product, quantity or user).
    public static let idempotencyKeyReused = "IdempotencyKeyReused"
    /// The order service has no customer with that user id.
    public static let unknownUser = "UnknownUser"
    /// The order service's database does not carry the product.
    public static let productNotCarried = "ProductNotCarried"
    /// More units than one order may hold.
    public static let quantityOverLimit = "QuantityOverLimit"
    /// The order database refused the write (an injected fault; see ``WriteFaults``).
    public static let orderWriteFailed = "OrderWriteFailed"
    /// Another user already registered this email address.
    public static let duplicateEmail = "DuplicateEmail"
    /// The email address is malformed.
    public static let invalidEmail = "InvalidEmail"
    /// The user's name is empty or too long.
    public static let invalidName = "InvalidName"

    /// Whether `error` is a business failure of type `type`.
    ///
    /// ```swift
    /// if ShopFailure.is(error, ShopFailure.outOfStock) { restock() }
    /// ```
    public static func `is`(_ error: any Error, _ type: String) -> Bool {
        (error as? NonRetryableError)?.type == type
    }
}
