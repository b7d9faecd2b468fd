public import Foundation
public import Subprocess
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One of the shop's services as a child process: started, asked for its port, then stopped with
/// SIGTERM or killed with SIGKILL.
///
/// A service announces its port on standard output with a line that ends in `listening on HOST:PORT`
/// (product-service, user-service and order-service print it once their SIGTERM handler is
/// installed, so a SIGTERM right after ``start()`` is a graceful shutdown). The rest of the output is
/// read and dropped, so that the child never blocks on a full pipe; standard error is discarded.
///
/// ```swift
/// let product = ServiceProcess(
///     "product-service", arguments: ["--port", "0", "--data-dir", directory], binaries: buildDirectory)
/// let port = try await product.start()
/// // … gRPC to 127.0.0.1:port …
/// let status = try await product.terminate()  // .exited(0) after a graceful shutdown
/// ```
///
/// - Important: Start a `ServiceProcess` once; to run a service again, make another one.
public final class ServiceProcess: Sendable {
    /// The executable's name, looked up in ``binaries`` only.
    public let name: String
    /// The command-line arguments (without the executable).
    public let arguments: [String]
    /// The directory that holds the executable, e.g. the build directory `swift build` wrote.
    public let binaries: URL

    private enum Command: Sendable { case terminate, kill }

    private let commands: AsyncStream<Command>
    private let sendCommand: AsyncStream<Command>.Continuation
    private let running = Mutex<Task<TerminationStatus, any Error>?>(nil)
    private let pid = Mutex<pid_t?>(nil)

    /// A service that ``start()`` runs as `binaries/name arguments…`.
    ///
    /// - Parameters:
    ///   - name: The executable's name, e.g. `"order-service"`.
    ///   - arguments: Its command-line arguments.
    ///   - binaries: The directory it is in.
    public init(_ name: String, arguments: [String], binaries: URL) {
        self.name = name
        self.arguments = arguments
        self.binaries = binaries
        (commands, sendCommand) = AsyncStream<Command>.makeStream()
    }

    /// The directory of the running executable (the test bundle's, or a command's): where `swift build`
    /// puts the services too.
    ///
    /// - Parameter resolvingSymlinks: Whether to follow symbolic links to the real directory first.
    public static func directoryOfThisExecutable(resolvingSymlinks: Bool = false) -> URL {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0])
        return (resolvingSymlinks ? executable.resolvingSymlinksInPath() : executable).deletingLastPathComponent()
    }

    /// Starts the process and returns the port from its `… listening on HOST:PORT` line.
    ///
    /// ```swift
    /// let port = try await ServiceProcess("user-service", arguments: ["--port", "0"], binaries: directory).start()
    /// ```
    ///
    /// - Throws: ``ServiceProcessError`` with ``ServiceProcessError/Code/notBuilt`` when ``binaries`` has
    ///   no such executable, ``ServiceProcessError/Code/endedBeforeListening`` when the output ended
    ///   before the listening line; the launch's own error when the process could not be started.
    public func start() async throws -> Int {
        let path = binaries.appendingPathComponent(name).path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ServiceProcessError(.notBuilt, "\(name) is not built in \(binaries.path) (\(path))")
        }
        let executable = Executable.path(
            try await Executable.name(name).resolveExecutablePath(in: .custom(["PATH": binaries.path])))
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let (commands, arguments) = (self.commands, self.arguments)
        let task = Task { () throws -> TerminationStatus in
            defer {
                portSink.finish()
                self.pid.withLock { $0 = nil }
            }
            return try await run(
                executable, arguments: Arguments(arguments), input: .none, output: .sequence, error: .discarded
            ) { execution in
                self.pid.withLock { $0 = execution.processIdentifier.value }
                var lines = execution.standardOutput.strings().makeAsyncIterator()
                while let line = try await lines.next() {
                    if let port = Self.port(inListeningLine: line) {
                        portSink.yield(port)
                        break
                    }
                }
                portSink.finish()
                // Wait for a command while reading the rest of the output: once the output ends, the
                // process is ending by itself and no signal is sent any more.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await command in commands {
                            try execution.send(signal: command == .kill ? .kill : .terminate)
                            return
                        }
                    }
                    while (try? await lines.next()) != nil {}
                    group.cancelAll()
                    try await group.waitForAll()
                }
            }.terminationStatus
        }
        running.withLock { $0 = task }
        var iterator = ports.makeAsyncIterator()
        if let port = await iterator.next() { return port }
        _ = try await task.value  // a launch failure throws here
        throw ServiceProcessError(.endedBeforeListening, "\(name) ended before it printed its listening line")
    }

    /// The port at the end of a `… listening on HOST:PORT` line, or `nil` for any other line.
    static func port(inListeningLine line: String) -> Int? {
        guard line.contains("listening on"), let last = line.split(separator: ":").last else { return nil }
        return Int(last.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The CPU time (user + system) the process has used so far, in seconds, from `/proc/PID/stat`;
    /// `nil` when it is not running or the platform has no `/proc`.
    public func cpuSeconds() -> Double? {
        guard let pid = pid.withLock({ $0 }),
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let afterName = stat.range(of: ")", options: .backwards)
        else { return nil }
        // Fields after the command name: state is field 3, utime 14 and stime 15 (in clock ticks).
        let fields = stat[afterName.upperBound...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Stops the process with SIGTERM and waits for it to end.
    ///
    /// ```swift
    /// #expect(try await service.terminate() == .exited(0))
    /// ```
    ///
    /// - Returns: How it ended; when it had already ended (killed, or ended by itself), how it ended then.
    /// - Throws: ``ServiceProcessError/Code/notStarted`` before ``start()``; the signal's or the run's error.
    @discardableResult
    public func terminate() async throws -> TerminationStatus {
        try await stop(.terminate)
    }

    /// Kills the process with SIGKILL, as a crash would (no shutdown, no flush), and waits for it to end.
    ///
    /// ```swift
    /// #expect(try await service.kill() == .signaled(SIGKILL))
    /// ```
    ///
    /// - Returns: How it ended; when it had already ended, how it ended then.
    /// - Throws: ``ServiceProcessError/Code/notStarted`` before ``start()``; the signal's or the run's error.
    @discardableResult
    public func kill() async throws -> TerminationStatus {
        try await stop(.kill)
    }

    /// Stops the process where it is with SIGSTOP, as a long pause would (a frozen VM, a debugger, a
    /// stalled host): it neither runs nor answers, and keeps its sockets, until ``resume()``.
    ///
    /// ```swift
    /// try service.pause()
    /// // ... the others carry on without it ...
    /// try service.resume()
    /// ```
    ///
    /// - Throws: ``ServiceProcessError/Code/notStarted`` when the process is not running.
    public func pause() throws {
        try signal(SIGSTOP, "pause")
    }

    /// Lets a process stopped by ``pause()`` go on, with SIGCONT.
    ///
    /// - Throws: ``ServiceProcessError/Code/notStarted`` when the process is not running.
    public func resume() throws {
        try signal(SIGCONT, "resume")
    }

    private func signal(_ number: Int32, _ action: String) throws {
        guard let pid = pid.withLock({ $0 }) else {
            throw ServiceProcessError(.notStarted, "\(name) is not running: nothing to \(action)")
        }
        guard Glibc.kill(pid, number) == 0 else {
            throw ServiceProcessError(
                .notStarted, "\(name) (pid \(pid)) could not be signalled to \(action): errno \(errno)")
        }
    }

    private func stop(_ command: Command) async throws -> TerminationStatus {
        guard let task = running.withLock({ $0 }) else {
            throw ServiceProcessError(.notStarted, "\(name) was never started")
        }
        sendCommand.yield(command)
        return try await task.value
    }
}
