import Foundation
import Subprocess
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One of the shop's services as a child process: started, asked for its port (from its
/// `… listening on HOST:PORT` line), then stopped with SIGTERM or killed with SIGKILL.
final class ServiceProcess: Sendable {
    enum Command: Sendable { case terminate, kill }

    let name: String
    let arguments: [String]
    private let commands: AsyncStream<Command>
    private let send: AsyncStream<Command>.Continuation
    private let task = Mutex<Task<TerminationStatus, any Error>?>(nil)
    private let pid = Mutex<pid_t?>(nil)

    init(_ name: String, _ arguments: [String]) {
        self.name = name
        self.arguments = arguments
        (commands, send) = AsyncStream<Command>.makeStream()
    }

    /// The directory of this executable, where `swift build` put the services too.
    static let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent()

    /// Starts the process and returns the port it listens on.
    func start() async throws -> Int {
        let path = Self.binaries.appendingPathComponent(name).path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ShopError(
                "\(name) is not built beside shop (\(path)); run `swift build --package-path Examples/Microservices`")
        }
        let executable = Executable.path(
            try await Executable.name(name).resolveExecutablePath(in: .custom(["PATH": Self.binaries.path])))
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let commands = self.commands
        let name = self.name
        let arguments = self.arguments
        let running = Task {
            let result = try await run(
                executable, arguments: Arguments(arguments), input: .none, output: .sequence, error: .discarded
            ) { execution in
                self.pid.withLock { $0 = execution.processIdentifier.value }
                var lines = execution.standardOutput.strings().makeAsyncIterator()
                while let line = try await lines.next() {
                    if line.contains("listening on"), let last = line.split(separator: ":").last,
                        let port = Int(last.trimmingCharacters(in: .whitespacesAndNewlines))
                    {
                        portSink.yield(port)
                        break
                    }
                }
                portSink.finish()
                // Drain the rest of the output while waiting for a command, so the child never blocks.
                let drain = Task { while (try? await lines.next()) != nil {} }
                for await command in commands {
                    try execution.send(signal: command == .kill ? .kill : .terminate)
                    break
                }
                await drain.value
            }
            return result.terminationStatus
        }
        task.withLock { $0 = running }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            throw ShopError("\(name) ended before it printed its listening line")
        }
        return port
    }

    /// The CPU time (user + system) the process has used so far, in seconds, from `/proc/PID/stat`;
    /// `nil` when it is not running or the platform has no `/proc`.
    func cpuSeconds() -> Double? {
        guard let pid = pid.withLock({ $0 }),
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let afterName = stat.range(of: ")", options: .backwards)
        else { return nil }
        // Fields after the command name: state is field 3, utime 14 and stime 15 (in clock ticks).
        let fields = stat[afterName.upperBound...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Stops the process gracefully and waits for it to end.
    @discardableResult
    func terminate() async -> TerminationStatus? {
        send.yield(.terminate)
        return try? await task.withLock { $0 }?.value
    }

    /// Kills the process (SIGKILL) and waits for it to end.
    @discardableResult
    func kill() async -> TerminationStatus? {
        send.yield(.kill)
        return try? await task.withLock { $0 }?.value
    }
}

/// A failure the shop command reports in one line.
struct ShopError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
