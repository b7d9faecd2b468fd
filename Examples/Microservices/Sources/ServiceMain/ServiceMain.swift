public import ArgumentParser
import Dispatch
import Foundation
import NIOCore
import NIOPosix

/// The entry point the shop's executables share: Swift Concurrency runs on NIO's event loops.
///
/// The HTTP server (Hummingbird), the HTTP client (AsyncHTTPClient) and gRPC's transport all run on
/// `MultiThreadedEventLoopGroup.singleton`. By default every request then hops from an event loop
/// to Swift Concurrency's own thread pool and back, and on two cores those thread switches cost
/// more than the work. Installing the event loop group as the global executor removes the hops
/// (`shop bench` measured about 1.2× the orders per second, and a lower CPU time per order). It has
/// to happen on the main thread before any task runs, so the executables start from a synchronous
/// `main`:
///
/// ```swift
/// @main
/// enum Entry {
///     static func main() { ServiceMain.run(OrderServiceCommand.self) }
/// }
/// ```
///
/// Code that blocks a thread then blocks an event loop: the services keep blocking work (SQLite)
/// on GRDB's own queues.
public enum ServiceMain {
    /// Installs the event loop group as the global executor, runs `command` (parsing the process's
    /// arguments, as `AsyncParsableCommand.main()` does) and exits with its status.
    public static func run<Command: AsyncParsableCommand>(_ command: Command.Type) -> Never {
        if !NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor() {
            FileHandle.standardError.write(
                Data("note: NIO's event loops could not become the global executor; running on the default one\n".utf8))
        }
        Task {
            await command.main()
            exit(0)
        }
        dispatchMain()
    }
}
