import Foundation
import Logging
import SagaKit
import SagaKitSQLite
import ShopDemo
import ShopServices
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `saga-demo`: runs a ``DemoCommand`` and returns the process's exit status.
enum SagaDemo {
    static let usageStatus: Int32 = 2
    static let failureStatus: Int32 = 1
    static let brokenStatus: Int32 = 3

    static func main(_ arguments: [String]) async -> Int32 {
        let command: DemoCommand
        do {
            command = try DemoCommand.parse(arguments)
        } catch {
            Console.error(error.message)
            return usageStatus
        }
        if command.showsHelp {
            Console.out(DemoCommand.usage)
            return 0
        }
        let directory: DataDirectory
        do {
            directory = try DataDirectory.prepare(command.dataDirectory ?? DataDirectory.freshPath())
        } catch {
            Console.error(error.message)
            return failureStatus
        }
        var logger = Logger(label: "saga-demo", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = command.logLevel
        do {
            switch command.mode {
            case .load: return try await load(command, directory: directory, logger: logger)
            case .check: return try await check(command, directory: directory, logger: logger)
            case .monolith: return try await monolith(command, directory: directory)
            default: return try await tour(command, directory: directory, logger: logger)
            }
        } catch {
            Console.error(describe(error))
            return failureStatus
        }
    }

    // MARK: Modes

    static func tour(_ command: DemoCommand, directory: DataDirectory, logger: Logger) async throws -> Int32 {
        let load = LoadOptions(
            orders: command.orders, concurrency: command.concurrency, failureRate: command.failureRate,
            seed: command.seed)
        let options = ShopRuntime.Options(seed: command.seed, maxConcurrentSagas: command.concurrency, logger: logger)
        if !command.json { TextReport.directory(directory) }
        let observer: any TourObserver = command.json ? SilentTourObserver() : TextTourObserver(isNew: directory.isNew)
        let report = try await ShopTour.run(
            directory: directory, crashPoint: command.crashPoint ?? .beforeCreate, load: load, options: options,
            observer: observer)
        if command.json { Console.json(report) }
        let broken = report.load.map { !$0.invariant.holds || $0.unfinishedInLog > 0 } ?? false
        return broken ? brokenStatus : 0
    }

    static func load(_ command: DemoCommand, directory: DataDirectory, logger: Logger) async throws -> Int32 {
        var options = ShopRuntime.Options(seed: command.seed, maxConcurrentSagas: command.concurrency, logger: logger)
        if let point = command.crashPoint {
            let trigger = CrashTrigger { point, sagaID in
                Console.err("saga-demo: crashing on purpose: saga \(sagaID) reached \(point) (SIGKILL)\n")
                kill(getpid(), SIGKILL)
            }
            trigger.arm(point)
            options.crashTrigger = trigger
        }
        let shop = try await ShopRuntime.open(directory, mode: "load", options: options)
        let loadOptions = LoadOptions(
            orders: command.orders, concurrency: command.concurrency, failureRate: command.failureRate,
            seed: command.seed, untilKilled: command.untilKilled)
        if !command.json {
            TextReport.directory(directory)
            Console.out("run \(shop.run): saga ids r\(shop.run)-load-<n>")
        }
        let json = command.json
        let (resumed, report) = try await shop.closing {
            try await shop.withEngineRunning {
                let resumed = try await shop.resumeUnfinished()
                if json, command.untilKilled {
                    Console.json(KilledRunEvent(event: "resumed", run: shop.run, resumed: resumed))
                } else if !json {
                    TextReport.resumed(resumed, isNew: directory.isNew)
                }
                if !json {
                    Console.out(
                        command.untilKilled
                            ? "placing orders until killed (concurrency \(command.concurrency), \(command.failureRate * 100)% of writes fail)…"
                            : "placing \(command.orders) orders (concurrency \(command.concurrency), \(command.failureRate * 100)% of writes fail)…"
                    )
                }
                let bar = ProgressBar()
                let ticker = Ticker(run: shop.run, json: json)
                let report = try await LoadRun.run(shop, options: loadOptions) { progress in
                    if command.untilKilled {
                        ticker.update(progress)
                    } else if !json {
                        bar.update(progress)
                    }
                }
                bar.finish()
                return (resumed, report)
            }
        }
        if json {
            Console.json(LoadOutput(dataDirectory: directory.path, resumed: resumed, load: report))
        } else {
            TextReport.load(report)
        }
        return report.invariant.holds && report.unfinishedInLog == 0 ? 0 : brokenStatus
    }

    static func check(_ command: DemoCommand, directory: DataDirectory, logger: Logger) async throws -> Int32 {
        let options = ShopRuntime.Options(seed: command.seed, logger: logger)
        let shop = try await ShopRuntime.open(directory, mode: "check", options: options)
        let output = try await shop.closing {
            let resumed = try await shop.withEngineRunning { try await shop.resumeUnfinished() }
            let unfinished = try await shop.store.sagas(
                matching: SagaQuery(status: [.running, .compensating], limit: .max)
            ).count
            let attention = try await shop.store.sagas(matching: SagaQuery(status: [.needsAttention], limit: .max))
                .count
            let completed = try await shop.store.sagas(matching: SagaQuery(status: [.completed], limit: .max)).count
            let orders = try await shop.orders.orderCount()
            return CheckOutput(
                dataDirectory: directory.path, resumed: resumed, unfinishedInLog: unfinished, needsAttention: attention,
                completedSagas: completed, ordersInDatabase: orders,
                invariant: try await StockInvariant.check(products: shop.products, orders: shop.orders))
        }
        if command.json {
            Console.json(output)
        } else {
            TextReport.directory(directory)
            TextReport.resumed(output.resumed, isNew: directory.isNew)
            Console.out(
                "sagas: \(output.completedSagas) completed in the log, \(output.ordersInDatabase) orders in \(ShopFiles.orders); "
                    + "\(output.unfinishedInLog) unfinished, \(output.needsAttention) need attention")
            TextReport.invariant(output.invariant, source: "\(ShopFiles.products) and \(ShopFiles.orders)")
        }
        return output.invariant.holds && output.unfinishedInLog == 0 ? 0 : brokenStatus
    }

    static func monolith(_ command: DemoCommand, directory: DataDirectory) async throws -> Int32 {
        let options = LoadOptions(
            orders: command.orders, concurrency: command.concurrency, failureRate: command.failureRate,
            seed: command.seed)
        let bar = ProgressBar()
        if !command.json {
            Console.out("SagaKit shop demo — the monolith: users, products and orders in one SQLite file")
            Console.out("data directory: \(directory.path)\(directory.isNew ? " (new)" : " (existing)")")
            Console.out(
                "placing \(command.orders) orders (concurrency \(command.concurrency), \(command.failureRate * 100)% of writes fail), one transaction each…"
            )
        }
        let json = command.json
        let report = try await MonolithRun.run(directory: directory, options: options) { progress in
            if !json { bar.update(progress) }
        }
        bar.finish()
        if json {
            Console.json(report)
        } else {
            TextReport.monolith(report)
        }
        return report.invariant.holds ? 0 : brokenStatus
    }

    // MARK: Helpers

    /// One line for any error: the message without the type's decoration where there is one.
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as SagaStoreError:
            error.code == .inUse
                ? "the data directory is in use by another saga-demo: \(error.message)" : error.message
        case let error as SagaError: error.message
        case let error as NonRetryableError: error.message
        default: String(describing: error)
        }
    }
}

/// `load --json` output.
struct LoadOutput: Encodable {
    var dataDirectory: String
    var resumed: ResumeReport
    var load: LoadReport
}

/// `check --json` output.
struct CheckOutput: Encodable {
    var dataDirectory: String
    var resumed: ResumeReport
    var unfinishedInLog: Int
    var needsAttention: Int
    var completedSagas: Int
    var ordersInDatabase: Int
    var invariant: StockInvariant
}

/// A line of `load --until-killed --json`.
struct KilledRunEvent: Encodable {
    var event: String
    var run: Int
    var resumed: ResumeReport?
    var finished: Int?
    var completed: Int?
    var compensated: Int?
    var sagasPerSecond: Double?

    init(event: String, run: Int, resumed: ResumeReport) {
        self.event = event
        self.run = run
        self.resumed = resumed
    }

    init(run: Int, progress: LoadProgress) {
        self.event = "progress"
        self.run = run
        self.finished = progress.finished
        self.completed = progress.completed
        self.compensated = progress.compensated
        self.sagasPerSecond = progress.elapsed > 0 ? Double(progress.finished) / progress.elapsed : 0
    }
}

/// Prints one status line a second while the load runs until killed.
final class Ticker: Sendable {
    private let last = Mutex<ContinuousClock.Instant?>(nil)
    let run: Int
    let json: Bool

    init(run: Int, json: Bool) {
        self.run = run
        self.json = json
    }

    func update(_ progress: LoadProgress) {
        let now = ContinuousClock.now
        let due = last.withLock { last -> Bool in
            if let previous = last, now - previous < .seconds(1) { return false }
            last = now
            return true
        }
        guard due else { return }
        if json {
            Console.json(KilledRunEvent(run: run, progress: progress))
        } else {
            let rate = progress.elapsed > 0 ? Double(progress.finished) / progress.elapsed : 0
            Console.out(
                "\(progress.finished) orders: \(progress.completed) completed, \(progress.compensated) compensated — \(Int(rate.rounded())) sagas/s"
            )
        }
    }
}
