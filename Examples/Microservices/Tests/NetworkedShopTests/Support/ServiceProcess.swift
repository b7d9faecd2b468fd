import Foundation
import Subprocess
import Synchronization
import Testing

/// Where the services' executables are: beside the test bundle.
enum ServiceBinaries {
    static let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    static let built = ["product-service", "user-service", "order-service"].allSatisfy {
        FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent($0).path)
    }
}

/// A service process that printed its listening line.
struct RunningService: Sendable {
    /// The port from the `… listening on HOST:PORT` line.
    var port: Int
    let sendKill: @Sendable () throws -> Void

    /// Kills the process with SIGKILL: no shutdown, no flush, whatever it was doing.
    func kill() throws { try sendKill() }
}

/// Runs a service until `body` returns, then stops it with SIGTERM and expects exit status 0 (the
/// service announces its port only once its SIGTERM handler is installed, so the shutdown is
/// graceful however early it comes). When `body` killed the service, expects death by SIGKILL.
func withService<Result: Sendable>(
    _ name: String, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @Sendable (RunningService) async throws -> Result
) async throws -> Result {
    let executable = Executable.path(
        try await Executable.name(name).resolveExecutablePath(in: .custom(["PATH": ServiceBinaries.directory.path])))
    let killed = KillSwitch()
    let outcome = try await run(
        executable, arguments: Arguments(arguments), input: .none, output: .sequence, error: .discarded
    ) { execution in
        var lines = execution.standardOutput.strings().makeAsyncIterator()
        var port: Int?
        while let line = try await lines.next() {
            if line.contains("listening on"), let last = line.split(separator: ":").last,
                let number = Int(last.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                port = number
                break
            }
        }
        guard let port else { throw ServiceDidNotStart(name: name) }
        let service = RunningService(port: port) {
            killed.set()
            try execution.send(signal: .kill)
        }
        do {
            let result = try await body(service)
            if !killed.isSet { try execution.send(signal: .terminate) }
            while try await lines.next() != nil {}
            return result
        } catch {
            killed.set()
            try? execution.send(signal: .kill)
            throw error
        }
    }
    if killed.isSet {
        #expect(outcome.terminationStatus == .signaled(SIGKILL), "\(name)", sourceLocation: sourceLocation)
    } else {
        #expect(
            outcome.terminationStatus == .exited(0), "\(name) did not shut down gracefully on SIGTERM",
            sourceLocation: sourceLocation)
    }
    return outcome.closureResult
}

/// Whether a service was killed, set from its body.
final class KillSwitch: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}

struct ServiceDidNotStart: Error, CustomStringConvertible {
    var name: String
    var description: String { "\(name) ended before it printed its listening line" }
}

/// A free TCP port on loopback, to restart a service on the same port.
func freePort() throws -> Int {
    let socket = try ServerSocketProbe()
    return socket.port
}

/// Binds port 0 on loopback and reads the port back, then closes.
struct ServerSocketProbe {
    let port: Int

    init() throws {
        let fd = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw ServiceDidNotStart(name: "a probe socket") }
        port = Int(UInt16(bigEndian: address.sin_port))
    }
}
