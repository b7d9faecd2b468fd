import Foundation
import ShopHarness
import Subprocess
import Synchronization
import Testing

/// Where the services' executables are: beside the test bundle.
enum ServiceBinaries {
    static let directory = ServiceProcess.directoryOfThisExecutable()
    static let built = ["product-service", "user-service", "order-service"].allSatisfy {
        FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent($0).path)
    }
}

/// A service process that printed its listening line.
struct RunningService: Sendable {
    /// The port from the `… listening on HOST:PORT` line.
    var port: Int
    let process: ServiceProcess
    let killed: KillSwitch

    /// Kills the process with SIGKILL (no shutdown, no flush, whatever it was doing) and waits for it
    /// to end.
    func kill() async throws {
        killed.set()
        try await process.kill()
    }
}

/// Runs a service until `body` returns, then stops it with SIGTERM and expects exit status 0 (the
/// service announces its port only once its SIGTERM handler is installed, so the shutdown is
/// graceful however early it comes). When `body` killed the service, expects death by SIGKILL.
func withService<Result: Sendable>(
    _ name: String, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @Sendable (RunningService) async throws -> Result
) async throws -> Result {
    let process = ServiceProcess(name, arguments: arguments, binaries: ServiceBinaries.directory)
    let service = RunningService(port: try await process.start(), process: process, killed: KillSwitch())
    let result: Result
    do {
        result = try await body(service)
    } catch {
        _ = try? await process.kill()
        throw error
    }
    // After a kill, `terminate()` sends nothing and answers how the kill ended the process.
    let status = try await process.terminate()
    if service.killed.isSet {
        #expect(status == .signaled(SIGKILL), "\(name)", sourceLocation: sourceLocation)
    } else {
        #expect(status == .exited(0), "\(name) did not shut down gracefully on SIGTERM", sourceLocation: sourceLocation)
    }
    return result
}

/// Whether a service was killed, set from its body.
final class KillSwitch: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}

/// A free TCP port on loopback, to restart a service on the same port.
func freePort() throws -> Int {
    let socket = try ServerSocketProbe()
    return socket.port
}

/// The probe socket could not bind a port.
struct ProbeFailed: Error {}

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
        guard bound else { throw ProbeFailed() }
        port = Int(UInt16(bigEndian: address.sin_port))
    }
}
