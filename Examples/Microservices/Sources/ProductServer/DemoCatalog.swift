public import ShopServices

/// The products a new product database starts with, so that the service answers the article's
/// examples (product 101) out of the box.
///
/// ```swift
/// let products = try ProductService(path: "data/products.sqlite")
/// if try await DemoCatalog.seedIfEmpty(products) { print("seeded the demo catalog") }
/// ```
public enum DemoCatalog {
    /// One product of the demo catalog.
    public struct Item: Hashable, Sendable {
        /// The product's id in the gRPC contract.
        public var productID: Int32
        /// The units it starts with.
        public var openingStock: Int

        /// Creates a catalog item.
        public init(productID: Int32, openingStock: Int) {
            self.productID = productID
            self.openingStock = openingStock
        }
    }

    /// Product 101 with 100 units (the article's product), 102 with 50 and 103 with 10.
    public static let items: [Item] = [
        Item(productID: 101, openingStock: 100),
        Item(productID: 102, openingStock: 50),
        Item(productID: 103, openingStock: 10),
    ]

    /// Adds ``items`` when the database holds no product at all; leaves a used database alone.
    ///
    /// - Parameters:
    ///   - products: The product service to seed.
    ///   - openingStock: The units every item starts with instead of its own ``Item/openingStock``
    ///     (a load test gives enough not to run out); `nil` keeps each item's.
    /// - Returns: Whether the catalog was added.
    @discardableResult
    public static func seedIfEmpty(_ products: ProductService, openingStock: Int? = nil) async throws -> Bool {
        guard try await products.stockLevels().isEmpty else { return false }
        for item in items {
            try await products.addProduct(
                ProductID.name(of: item.productID), openingStock: openingStock ?? item.openingStock)
        }
        return true
    }
}
