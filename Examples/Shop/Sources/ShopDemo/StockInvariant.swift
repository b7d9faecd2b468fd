public import ShopServices

/// The shop's stock invariant, read from the databases: for every product, the units it ever received
/// (opening stock plus deliveries) equal the units in stock plus the units in confirmed orders.
///
/// It holds whenever no saga is between its deduction and its order or refund: a failed order whose
/// deduction was never refunded breaks it, and so does a deduction made twice.
///
/// ```swift
/// let invariant = try await StockInvariant.check(products: shop.products, orders: shop.orders)
/// print(invariant.holds ? "stock invariant holds" : "stock invariant BROKEN")
/// ```
public struct StockInvariant: Codable, Hashable, Sendable {
    /// One product's figures.
    public struct Line: Codable, Hashable, Sendable {
        /// The product.
        public var product: String
        /// Units ever received, from the product database.
        public var received: Int
        /// Units in stock, from the product database.
        public var stock: Int
        /// Units in confirmed orders, from the order database.
        public var ordered: Int
        /// Whether `received == stock + ordered`.
        public var holds: Bool { received == stock + ordered }

        /// Creates a line.
        public init(product: String, received: Int, stock: Int, ordered: Int) {
            self.product = product
            self.received = received
            self.stock = stock
            self.ordered = ordered
        }

        private enum CodingKeys: String, CodingKey { case product, received, stock, ordered, holds }

        /// Decodes a line; `holds` is derived.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            product = try container.decode(String.self, forKey: .product)
            received = try container.decode(Int.self, forKey: .received)
            stock = try container.decode(Int.self, forKey: .stock)
            ordered = try container.decode(Int.self, forKey: .ordered)
        }

        /// Encodes the figures and whether they hold.
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(product, forKey: .product)
            try container.encode(received, forKey: .received)
            try container.encode(stock, forKey: .stock)
            try container.encode(ordered, forKey: .ordered)
            try container.encode(holds, forKey: .holds)
        }
    }

    /// Per product, by name.
    public var lines: [Line]

    /// Units ever received, all products.
    public var received: Int { lines.reduce(0) { $0 + $1.received } }
    /// Units in stock, all products.
    public var stock: Int { lines.reduce(0) { $0 + $1.stock } }
    /// Units in confirmed orders, all products.
    public var ordered: Int { lines.reduce(0) { $0 + $1.ordered } }
    /// Whether the invariant holds for every product.
    public var holds: Bool { lines.allSatisfy(\.holds) }

    /// Creates an invariant from its lines.
    public init(lines: [Line]) {
        self.lines = lines
    }

    /// Reads stock from the product database and confirmed orders from the order database.
    public static func check(products: ProductService, orders: OrderService) async throws -> StockInvariant {
        let levels = try await products.stockLevels()
        let ordered = try await orders.orderedQuantities()
        var lines = levels.map { level in
            Line(
                product: level.product, received: level.received, stock: level.stock,
                ordered: ordered[level.product] ?? 0)
        }
        // An order for a product the product service does not know breaks the invariant too.
        for (product, units) in ordered where !levels.contains(where: { $0.product == product }) {
            lines.append(Line(product: product, received: 0, stock: 0, ordered: units))
        }
        return StockInvariant(lines: lines.sorted { $0.product < $1.product })
    }

    private enum CodingKeys: String, CodingKey { case lines, received, stock, ordered, holds }

    /// Decodes the lines; the totals are derived.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        lines = try container.decode([Line].self, forKey: .lines)
    }

    /// Encodes the lines and the totals, for `--json`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(lines, forKey: .lines)
        try container.encode(received, forKey: .received)
        try container.encode(stock, forKey: .stock)
        try container.encode(ordered, forKey: .ordered)
        try container.encode(holds, forKey: .holds)
    }
}
