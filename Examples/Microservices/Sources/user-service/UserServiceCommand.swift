import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ShopServices
import SignalReadiness
import UserServer

/// user-service: the shop's users over HTTP, on their own database.
struct UserServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user-service", abstract: "The shop's users over HTTP (POST /users, GET /users/{id}).")

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "The port to listen on (0: any free port; env PORT).")
    var port: Int = ProcessInfo.processInfo.environment["PORT"].flatMap(Int.init) ?? 8001

    @Option(help: "The directory of the service's database (env DATA_DIR).")
    var dataDir: String = ProcessInfo.processInfo.environment["DATA_DIR"] ?? "data/user-service"

    func run() async throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "user-service")
        logger.logLevel = .info
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let users = try UserService(path: (dataDir as NSString).appendingPathComponent("users.sqlite"))
        let host = self.host
        let app = Application(
            router: UserAPI(users: users).router(),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "user-service"),
            onServerRunning: { [logger] channel in
                let port = channel.localAddress?.port ?? 0
                // Announce only once a SIGTERM right after the line would shut down gracefully.
                if !(await SignalReadiness.waitUntilShutdownSignalsTrapped()) {
                    logger.warning(
                        "the SIGTERM and SIGINT handlers are not installed yet; a signal now would not drain")
                }
                FileHandle.standardOutput.write(Data("user-service listening on \(host):\(port)\n".utf8))
            },
            logger: logger
        )
        try await app.runService()
        try users.close()
    }
}
