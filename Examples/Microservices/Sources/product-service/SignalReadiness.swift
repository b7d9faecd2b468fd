#if canImport(Glibc)
    import Glibc
#endif

/// Waits until the service group's handlers for the shutdown signals are installed.
///
/// swift-service-lifecycle traps signals with Dispatch signal sources, and on Linux Dispatch installs
/// their `sigaction` handler asynchronously, a moment after the group starts. A SIGTERM in that
/// moment would still kill the process with the default disposition instead of shutting it down
/// gracefully. The executable announces that it is listening only once the handlers are in place, so
/// a supervisor (or a test) that sends SIGTERM after the announcement always gets a graceful shutdown.
enum SignalReadiness {
    /// Returns once none of `signals` has the default disposition, or after about a second.
    ///
    /// - Returns: Whether every handler was installed in time.
    @discardableResult
    static func waitUntilTrapped(_ signals: [Int32]) async -> Bool {
        for _ in 0..<1_000 {
            if signals.allSatisfy(isTrapped) { return true }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return signals.allSatisfy(isTrapped)
    }

    /// Whether `signal` no longer has the default disposition.
    static func isTrapped(_ signal: Int32) -> Bool {
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
