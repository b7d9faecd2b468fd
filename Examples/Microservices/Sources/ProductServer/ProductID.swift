/// How the gRPC contract's `int32 product_id` maps to ``ShopServices/ProductService``'s product names.
///
/// A product id is a positive `int32`; the product service knows the product by the id's decimal
/// string, so `101` is the product named `"101"`.
///
/// ```swift
/// ProductID.name(of: 101)      // "101"
/// ProductID.id(ofName: "101")  // 101
/// ```
public enum ProductID {
    /// The product service's name for the product `id`.
    public static func name(of id: Int32) -> String {
        String(id)
    }

    /// The id of the product the product service names `name`, or `nil` when the name is not a
    /// positive decimal `int32` (a product added outside this contract).
    public static func id(ofName name: String) -> Int32? {
        guard let id = Int32(name), id > 0, String(id) == name else { return nil }
        return id
    }
}
