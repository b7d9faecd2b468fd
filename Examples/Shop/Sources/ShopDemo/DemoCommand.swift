public import Logging
import ShopServices

/// A command line of `saga-demo` that cannot be run, in one line (no usage dump, no stack trace).
///
/// ```swift
/// do { _ = try DemoCommand.parse(["--orders", "many"]) }
/// catch { print("saga-demo: error: \(error.message)") }
/// ```
public struct DemoUsageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What is wrong, in one line.
    public var message: String

    /// Creates a usage error.
    public init(_ message: String) {
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// The parsed command line of `saga-demo`.
///
/// Hand-written (the example takes no dependency beyond SagaKit's own): options take their value as
/// the next argument or after `=`, each may be given once, and anything unknown or out of range is an
/// error naming the argument.
///
/// ```swift
/// let command = try DemoCommand.parse(["load", "--orders", "500", "--fail-rate=0.2"])
/// assert(command.mode == .load && command.orders == 500)
/// ```
public struct DemoCommand: Hashable, Sendable {
    /// What `saga-demo` does.
    public struct Mode: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, CaseIterable { case tour, load, check, monolith }
        private let base: Base

        /// The guided tour (the default): scenarios 1 to 4.
        public static let tour = Mode(base: .tour)
        /// The load run only; with `--until-killed`, until the process is killed.
        public static let load = Mode(base: .load)
        /// Resume unfinished sagas and check the stock invariant; no new orders.
        public static let check = Mode(base: .check)
        /// The single-database shop, for contrast.
        public static let monolith = Mode(base: .monolith)

        init?(name: String) {
            guard let base = Base(rawValue: name) else { return nil }
            self.base = base
        }

        private init(base: Base) { self.base = base }

        /// The subcommand's name.
        public var description: String { base.rawValue }
    }

    /// The subcommand. Default ``Mode/tour``.
    public var mode: Mode = .tour
    /// `--orders`: orders in the load run. Default 500 (tour) or 1000 (load, monolith).
    public var orders: Int
    /// `--concurrency`: orders in flight at once. Default 16.
    public var concurrency = 16
    /// `--fail-rate`: probability an order write fails, 0 to 1. Default 0.1.
    public var failureRate = 0.1
    /// `--seed`: seed of the orders' choices and of the faults. Default 42.
    public var seed: UInt64 = 42
    /// `--data-dir`: the data directory. Default `nil`: a fresh one under the temporary directory.
    public var dataDirectory: String?
    /// `--crash-at`: where scenario 3 (tour) stops its engine, or where `load` kills its own process.
    /// Default `nil` (the tour uses ``CrashPoint/beforeCreate``).
    public var crashPoint: CrashPoint?
    /// `--until-killed` (load): keep placing orders until the process is killed. Default `false`.
    public var untilKilled = false
    /// `--json`: machine-readable output on standard output. Default `false`.
    public var json = false
    /// `--log-level`: the level of SagaKit's log on standard error. Default `warning`.
    public var logLevel: Logger.Level = .warning
    /// `--help`: print the usage and exit.
    public var showsHelp = false

    /// The default command: the guided tour.
    public init() {
        orders = 500
    }

    /// The usage text `--help` prints.
    public static let usage = """
        usage: saga-demo [tour|load|check|monolith] [options]

        The SagaKit shop: product, order and user services, each over its own SQLite file, and the
        place-order saga (deduct-stock, then create-order; a failed order refunds the stock).

        subcommands:
          tour        the guided tour (default): a successful order, a failed order write refunded,
                      a crash between deduct-stock and create-order recovered by a second engine,
                      and a load run ending with the stock invariant checked
          load        the load run only (see --until-killed)
          check       resume unfinished sagas of --data-dir and check the stock invariant
          monolith    the single-database shop (one transaction per order), for contrast

        options:
          --orders N           orders in the load run (default 500 for tour, 1000 for load and monolith)
          --concurrency N      orders in flight at once, 1 to 4096 (default 16)
          --fail-rate P        probability an order write fails, 0 to 1 (default 0.1)
          --seed N             seed of the orders and the faults (default 42)
          --data-dir PATH      data directory (default: a fresh one under the temporary directory);
                               a second run on it resumes the sagas it left unfinished
          --crash-at POINT     tour: where scenario 3 stops its engine (default before-create);
                               load: the process kills itself (SIGKILL) when a saga reaches POINT.
                               POINT: after-start, after-deduct, before-create (= after-deduct-logged),
                               after-create, before-refund, after-refund
          --until-killed       load: keep placing orders until the process is killed
          --json               machine-readable output on standard output
          --log-level LEVEL    SagaKit's log on standard error: trace, debug, info, notice, warning
                               (default), error, critical
          -h, --help           print this help

        exit status: 0 success; 1 a runtime error; 2 bad command line; 3 the stock invariant does not
        hold or sagas were left unfinished.
        """

    /// Parses the arguments after the program name.
    ///
    /// - Throws: ``DemoUsageError`` naming the first bad argument.
    public static func parse(_ arguments: [String]) throws(DemoUsageError) -> DemoCommand {
        var command = DemoCommand()
        var ordersGiven = false
        var seen = Set<String>()
        var index = 0
        if let first = arguments.first, !first.hasPrefix("-") {
            guard let mode = Mode(name: first) else {
                throw DemoUsageError("unknown subcommand '\(first)'; expected tour, load, check or monolith")
            }
            command.mode = mode
            index = 1
        }
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "-h" || argument == "--help" {
                command.showsHelp = true
                continue
            }
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw DemoUsageError(
                    argument.hasPrefix("-")
                        ? "unknown option '\(argument)'; see 'saga-demo --help'"
                        : "unexpected argument '\(argument)'; the subcommand comes first")
            }
            var name = argument
            var inline: String?
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inline = String(argument[argument.index(after: equals)...])
            }
            guard Self.options.contains(name) else {
                throw DemoUsageError("unknown option '\(name)'; see 'saga-demo --help'")
            }
            guard seen.insert(name).inserted else { throw DemoUsageError("option '\(name)' is given twice") }
            if Self.flags.contains(name) {
                if inline != nil { throw DemoUsageError("option '\(name)' takes no value") }
                switch name {
                case "--json": command.json = true
                default: command.untilKilled = true
                }
                continue
            }
            let value: String
            if let inline {
                value = inline
            } else {
                guard index < arguments.count else { throw DemoUsageError("option '\(name)' needs a value") }
                value = arguments[index]
                index += 1
            }
            switch name {
            case "--orders":
                command.orders = try integer(value, for: name, in: 0...10_000_000)
                ordersGiven = true
            case "--concurrency":
                command.concurrency = try integer(value, for: name, in: 1...4096)
            case "--fail-rate":
                guard let rate = Double(value), rate.isFinite, (0...1).contains(rate) else {
                    throw DemoUsageError("invalid value '\(value)' for --fail-rate: expected a number from 0 to 1")
                }
                command.failureRate = rate
            case "--seed":
                guard let seed = UInt64(value) else {
                    throw DemoUsageError(
                        "invalid value '\(value)' for --seed: expected a whole number from 0 to \(UInt64.max)")
                }
                command.seed = seed
            case "--data-dir":
                guard !value.isEmpty else { throw DemoUsageError("option '--data-dir' needs a non-empty path") }
                command.dataDirectory = value
            case "--crash-at":
                guard let point = CrashPoint(name: value) else {
                    throw DemoUsageError(
                        "unknown crash point '\(value)'; expected one of \(CrashPoint.allCases.map(\.name).joined(separator: ", "))"
                    )
                }
                command.crashPoint = point
            default:
                guard let level = Logger.Level(rawValue: value) else {
                    throw DemoUsageError(
                        "invalid value '\(value)' for --log-level: expected trace, debug, info, notice, warning, error or critical"
                    )
                }
                command.logLevel = level
            }
        }
        if command.showsHelp { return command }
        if !ordersGiven, command.mode == .load || command.mode == .monolith { command.orders = 1000 }
        try command.checkApplicability(given: seen)
        return command
    }

    /// Rejects options that the chosen subcommand does not use.
    private func checkApplicability(given: Set<String>) throws(DemoUsageError) {
        let allowed: Set<String>
        switch mode {
        case .load: allowed = Self.options
        case .check: allowed = ["--data-dir", "--json", "--log-level"]
        case .monolith: allowed = Self.options.subtracting(["--crash-at", "--until-killed"])
        default: allowed = Self.options.subtracting(["--until-killed"])
        }
        if let misplaced = given.sorted().first(where: { !allowed.contains($0) }) {
            throw DemoUsageError("option '\(misplaced)' does not apply to 'saga-demo \(mode)'")
        }
        if untilKilled, given.contains("--orders") {
            throw DemoUsageError("options '--orders' and '--until-killed' exclude each other")
        }
        if mode == .check, dataDirectory == nil {
            throw DemoUsageError("'saga-demo check' needs --data-dir: the directory to check")
        }
        if untilKilled, dataDirectory == nil {
            throw DemoUsageError("'saga-demo load --until-killed' needs --data-dir, so that a restart can resume")
        }
    }

    private static let flags: Set<String> = ["--json", "--until-killed"]
    private static let options: Set<String> = [
        "--orders", "--concurrency", "--fail-rate", "--seed", "--data-dir", "--crash-at", "--until-killed", "--json",
        "--log-level",
    ]

    private static func integer(_ value: String, for name: String, in range: ClosedRange<Int>) throws(DemoUsageError)
        -> Int
    {
        guard let number = Int(value), range.contains(number) else {
            throw DemoUsageError(
                "invalid value '\(value)' for \(name): expected a whole number from \(range.lowerBound) to \(range.upperBound)"
            )
        }
        return number
    }
}
