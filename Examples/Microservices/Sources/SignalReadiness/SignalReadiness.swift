#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Waits until the service group's handlers for the shutdown signals are installed.
///
/// swift-service-lifecycle traps signals with Dispatch signal sources, and on Linux Dispatch installs
/// their `sigaction` handler asynchronously, a moment after the group starts. A SIGTERM in that
/// moment would still kill the process with the default disposition instead of shutting it down
/// gracefully. Each of the shop's executables announces that it is listening only once the handlers
/// are in place, so a supervisor (or a test) that sends SIGTERM after the announcement always gets a
/// graceful shutdown.
///
/// ```swift
/// onServerRunning: { channel in
///     await SignalReadiness.waitUntilShutdownSignalsTrapped()
///     print("user-service listening on \(host):\(channel.localAddress?.port ?? 0)")
/// }
/// ```
///
/// A target of its own, with no dependency, so that the three executables share it without the HTTP
/// services depending on gRPC or the other way round.
public enum SignalReadiness {
    /// Returns once neither SIGTERM nor SIGINT has the default disposition, or after about a second.
    ///
    /// - Returns: Whether both handlers were installed in time.
    @discardableResult
    public static func waitUntilShutdownSignalsTrapped() async -> Bool {
        await waitUntilTrapped([SIGTERM, SIGINT])
    }

    /// Returns once none of `signals` has the default disposition, or after about a second.
    ///
    /// - Returns: Whether every handler was installed in time.
    @discardableResult
    public static func waitUntilTrapped(_ signals: [Int32]) async -> Bool {
        for _ in 0..<1_000 {
            if signals.allSatisfy(isTrapped) { return true }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return signals.allSatisfy(isTrapped)
    }

    /// Whether `signal` no longer has the default disposition.
    public static func isTrapped(_ signal: Int32) -> Bool {
        #if canImport(Glibc)
            var current = sigaction()
            guard sigaction(signal, nil, &current) == 0 else { return false }
            return current.__sigaction_handler.sa_handler != nil
        #else
            // Elsewhere (Darwin) the group sets SIG_IGN synchronously before it starts any service.
            return true
        #endif
    }
}
