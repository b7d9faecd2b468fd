import ServiceMain

/// Starts `product-service` with Swift Concurrency on NIO's event loops (see `ServiceMain`).
@main
enum Entry {
    static func main() { ServiceMain.run(ProductServiceCommand.self) }
}
