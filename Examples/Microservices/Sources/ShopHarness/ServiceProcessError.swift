/// Why a ``ServiceProcess`` could not start or stop.
///
/// ```swift
/// do { _ = try await process.start() } catch let error as ServiceProcessError where error.code == .notBuilt {
///     print("build the services first: \(error)")
/// }
/// ```
public struct ServiceProcessError: Error, CustomStringConvertible {
    /// What went wrong, from a fixed set (usable as a metric label).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case notBuilt, endedBeforeListening, notStarted }
        private let value: Value

        /// The executable is not in the ``ServiceProcess/binaries`` directory.
        public static let notBuilt = Code(value: .notBuilt)
        /// The process's output ended before its `… listening on HOST:PORT` line.
        public static let endedBeforeListening = Code(value: .endedBeforeListening)
        /// ``ServiceProcess/terminate()`` or ``ServiceProcess/kill()`` before ``ServiceProcess/start()``.
        public static let notStarted = Code(value: .notStarted)

        /// The code's name, e.g. `notBuilt`.
        public var description: String { value.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// The failure in one line, naming the service.
    public var description: String

    init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
