public import GRPCCore
import GRPCProtobuf
public import Logging
public import ProductContract
public import ShopServices
import SwiftProtobuf

/// The gRPC `product.ProductService` over the shop's ``ShopServices/ProductService``.
///
/// Every call goes to the product service, which keeps its idempotency: a `DeductStock` key is
/// applied at most once, recorded in the same transaction as the stock change, and a `RefundStock`
/// of a key never deducted leaves a tombstone that refuses a later `DeductStock` with that key.
/// This type only checks the request, maps ids to product names (see ``ProductID``) and maps
/// failures to gRPC status codes a client can act on, each with a message and a
/// `google.rpc.ErrorInfo` detail whose `reason` is the shop's stable failure type
/// (``ShopServices/ShopFailure``), in the domain ``errorDomain``:
///
/// | failure | status | `ErrorInfo.reason` |
/// |---|---|---|
/// | `product_id` not positive | `INVALID_ARGUMENT` | `InvalidProductID` |
/// | quantity negative or over ``maximumQuantity`` | `INVALID_ARGUMENT` | `InvalidQuantity` |
/// | empty key, or longer than ``maximumKeyLength`` bytes | `INVALID_ARGUMENT` | `InvalidKey` |
/// | unknown product | `NOT_FOUND` | `UnknownProduct` |
/// | not enough stock | `FAILED_PRECONDITION` | `OutOfStock` |
/// | key tombstoned by an earlier refund | `FAILED_PRECONDITION` | `DeductionCancelled` |
/// | key reused for another product or quantity | `ALREADY_EXISTS` | `IdempotencyKeyReused` |
/// | the database failed | `UNAVAILABLE` | `StorageUnavailable` |
///
/// `ALREADY_EXISTS`, not `FAILED_PRECONDITION`, marks a reused key: the key names a deduction that
/// exists with other parameters, a client bug that no change of state will fix, and keeping it
/// apart from out-of-stock lets a client tell the two without parsing the message.
///
/// ```swift
/// let products = try ProductService(path: "data/products.sqlite")
/// let service = ProductGRPCService(products: products, logger: logger)
/// let server = GRPCServer(transport: transport, services: [service, HealthService()])
/// ```
///
/// - Important: After `UNAVAILABLE`, `DEADLINE_EXCEEDED` or a lost connection, a deduction's outcome
///   is unknown: retry it with the same idempotency key, or refund that key.
public struct ProductGRPCService: Product_ProductService.SimpleServiceProtocol {
    /// The most units one `DeductStock` may take: 1,000,000.
    public static let maximumQuantity: Int32 = 1_000_000
    /// The longest idempotency key accepted, in UTF-8 bytes: 256.
    public static let maximumKeyLength = 256
    /// The `ErrorInfo.domain` of this service's error details: `product-service.shop`.
    public static let errorDomain = "product-service.shop"

    let products: ProductService
    let logger: Logger

    /// Creates the gRPC service over `products`; it logs refusals at `debug` and storage failures
    /// at `warning`.
    public init(products: ProductService, logger: Logger) {
        self.products = products
        self.logger = logger
    }

    /// The units of one product in stock (saturating at `Int32.max`).
    public func getStock(
        request: Product_GetStockRequest,
        context: ServerContext
    ) async throws -> Product_GetStockResponse {
        let product = try Self.productName(request.productID)
        let stock = try await mappingFailures("GetStock", product: request.productID) {
            try await products.getStock(product)
        }
        return .with { $0.stock = Int32(clamping: stock) }
    }

    /// Deducts the request's quantity (absent or 0 means 1) once per idempotency key.
    public func deductStock(
        request: Product_DeductStockRequest,
        context: ServerContext
    ) async throws -> Product_DeductStockResponse {
        let product = try Self.productName(request.productID)
        let quantity = try Self.quantity(request.quantity)
        let key = try Self.key(request.idempotencyKey)
        let deduction = try await mappingFailures("DeductStock", product: request.productID, key: key) {
            try await products.deductStock(product: product, quantity: quantity, key: key)
        }
        logger.debug(
            "deducted stock",
            metadata: [
                "product.id": "\(request.productID)", "product.quantity": "\(quantity)",
                "product.idempotency_key": "\(key)", "product.replay": "\(deduction.isReplay)",
            ])
        return .with {
            $0.success = true
            $0.replay = deduction.isReplay
        }
    }

    /// Refunds the deduction made with the request's idempotency key, once.
    public func refundStock(
        request: Product_RefundStockRequest,
        context: ServerContext
    ) async throws -> Product_RefundStockResponse {
        let key = try Self.key(request.idempotencyKey)
        let refund = try await mappingFailures("RefundStock", key: key) {
            try await products.refundStock(key: key)
        }
        logger.debug(
            "refunded stock",
            metadata: [
                "product.idempotency_key": "\(key)", "product.refund": "\(refund.result)",
                "product.quantity": "\(refund.quantity)",
            ])
        return .with {
            $0.outcome = Self.outcome(refund.result)
            $0.productID = refund.product.flatMap(ProductID.id(ofName:)) ?? 0
            $0.quantity = Int32(clamping: refund.quantity)
        }
    }

    // MARK: Requests

    static func productName(_ id: Int32) throws -> String {
        guard id > 0 else {
            throw ProductRPCFailure.invalidArgument(
                "product_id must be a positive id, got \(id)", reason: "InvalidProductID")
        }
        return ProductID.name(of: id)
    }

    static func quantity(_ quantity: Int32) throws -> Int {
        if quantity == 0 { return 1 }
        guard quantity > 0, quantity <= maximumQuantity else {
            throw ProductRPCFailure.invalidArgument(
                "quantity must be from 1 to \(maximumQuantity) (absent or 0 means 1), got \(quantity)",
                reason: ShopFailure.invalidQuantity)
        }
        return Int(quantity)
    }

    static func key(_ key: String) throws -> String {
        guard !key.isEmpty else {
            throw ProductRPCFailure.invalidArgument("idempotency_key must not be empty", reason: ShopFailure.invalidKey)
        }
        guard key.utf8.count <= maximumKeyLength else {
            throw ProductRPCFailure.invalidArgument(
                "idempotency_key must be at most \(maximumKeyLength) bytes, got \(key.utf8.count)",
                reason: ShopFailure.invalidKey)
        }
        return key
    }

    static func outcome(_ result: StockRefund.Result) -> Product_RefundStockResponse.Outcome {
        switch result {
        case .refunded: .refunded
        case .alreadyRefunded: .alreadyRefunded
        case .nothingDeducted: .nothingDeducted
        default: .unspecified
        }
    }

    // MARK: Failures

    /// Runs `operation`, turning what it throws into the status a client can act on.
    func mappingFailures<T>(
        _ method: String, product: Int32? = nil, key: String? = nil, _ operation: () async throws -> T
    ) async throws -> T {
        do {
            return try await operation()
        } catch {
            let failure = ProductRPCFailure(error)
            var metadata: Logger.Metadata = ["rpc.method": "\(method)", "rpc.status": "\(failure.status.code)"]
            if let product { metadata["product.id"] = "\(product)" }
            if let key { metadata["product.idempotency_key"] = "\(key)" }
            if failure.status.code == .unavailable {
                logger.warning("product storage failed: \(failure.status.message)", metadata: metadata)
            } else {
                logger.debug("refused: \(failure.status.message)", metadata: metadata)
            }
            throw failure.status
        }
    }
}
