/// A failure the shop command reports in one line.
struct ShopError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
