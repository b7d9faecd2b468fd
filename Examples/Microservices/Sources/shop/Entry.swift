import ServiceMain

/// Starts `shop` with Swift Concurrency on NIO's event loops (see `ServiceMain`).
@main
enum Entry {
    static func main() { ServiceMain.run(ShopCommand.self) }
}
