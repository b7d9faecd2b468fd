import ArgumentParser
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `shop bench`: the networked shop's throughput and latency table, at several concurrencies, with
/// each service's CPU per order, optionally beside saga-bench's in-process full shop from the same run.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure orders/s, p50 and p99 over HTTP and gRPC on loopback at several concurrencies.",
        discussion: """
            Each row starts the three services afresh (every database synchronous=FULL, product 101 with \
            enough stock never to run out), registers 4 users, warms up, then keeps CONCURRENCY orders in \
            flight for --seconds; a row is the median of --repeats such loads, with latencies pooled over \
            them (exact percentiles: every answer is kept). Build in release for figures that mean \
            anything: scripts/bench.sh does, and runs saga-bench's in-process full shop beside it.
            """)

    @Option(help: "Comma-separated concurrencies.") var concurrencies = "1,16,64,256"
    @Option(help: "Seconds of each timed load.") var seconds = 5.0
    @Option(help: "Timed loads per row; the row reports their median.") var repeats = 3
    @Option(help: "saga-bench's --json report of the in-process full shop, to print the ratio to it.")
    var beside: String?
    @Option(help: "Also write the rows as JSON to this path.") var json: String?
    @Option(help: "The directory for the services' data (default: a new one under the system's temporary directory).")
    var dataDir: String?

    /// Enough units of product 101 that no load runs out.
    static let openingStock = 1_000_000_000

    func parsedConcurrencies() throws -> [Int] {
        try concurrencies.split(separator: ",").map { text in
            guard let number = Int(text), number > 0 else {
                throw ValidationError("--concurrencies takes positive numbers, got '\(text)'")
            }
            return number
        }
    }

    func validate() throws {
        _ = try parsedConcurrencies()
        guard seconds > 0, repeats > 0 else { throw ValidationError("--seconds and --repeats must be positive") }
    }

    /// One row of the table.
    struct Row: Codable {
        var concurrency: Int
        var ordersPerSecond: Double
        var p50MS: Double
        var p99MS: Double
        var ordersTimed: Int
        /// Answers other than 201 (each load's orders should all be created).
        var failed: Int
        /// CPU time (user + system) per order, in microseconds, by process: the three services and
        /// the load generator (this process).
        var cpuMicrosPerOrder: [String: Double]
        /// saga-bench's in-process full shop at the same concurrency, when `--beside` gave it.
        var inProcessSagasPerSecond: Double?
        var inProcessP99MS: Double?
        var ratioToInProcess: Double? { inProcessSagasPerSecond.map { ordersPerSecond / $0 } }
    }

    func run() async throws {
        let base = dataDir ?? ShopCommand.defaultDataDirectory("bench")
        let inProcess = try beside.map(InProcessReport.load)
        say("# shop bench: the networked shop on loopback (release build expected)\n")
        say("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores; data: \(base)")
        if let inProcess { say("in-process figures: \(beside ?? "") (saga-bench, started \(inProcess.startedAt))") }
        say()
        say(
            "| conc. | orders/s | p50 ms | p99 ms | orders timed | not 201 | CPU µs/order: order-svc | product-svc | user-svc | load gen | in-process sagas/s | in-process p99 ms | networked ÷ in-process |"
        )
        say("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        var rows: [Row] = []
        for concurrency in try parsedConcurrencies() {
            var row = try await measure(concurrency: concurrency, base: base)
            let match = inProcess?.fullShop(concurrency: concurrency)
            row.inProcessSagasPerSecond = match?.sagasPerSecond
            row.inProcessP99MS = match?.p99MS
            rows.append(row)
            let cpu = row.cpuMicrosPerOrder
            func figure(_ value: Double?, _ digits: Int = 0) -> String {
                value.map { String(format: "%.\(digits)f", $0) } ?? "-"
            }
            say(
                "| \(concurrency) | \(figure(row.ordersPerSecond)) | \(figure(row.p50MS, 2)) | \(figure(row.p99MS, 2)) | "
                    + "\(row.ordersTimed) | \(row.failed) | \(figure(cpu["order-service"])) | "
                    + "\(figure(cpu["product-service"])) | \(figure(cpu["user-service"])) | \(figure(cpu["load"])) | "
                    + "\(figure(row.inProcessSagasPerSecond)) | \(figure(row.inProcessP99MS, 2)) | "
                    + "\(figure(row.ratioToInProcess, 2)) |")
        }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(rows).write(to: URL(fileURLWithPath: json))
            say("\nJSON written to \(json)")
        }
        guard rows.allSatisfy({ $0.failed == 0 }) else {
            say("\nsome orders were not created: see the 'not 201' column")
            throw ExitCode(1)
        }
    }

    /// The median of `repeats` timed loads at `concurrency`, each on a fresh shop.
    func measure(concurrency: Int, base: String) async throws -> Row {
        var rates: [Double] = []
        var samples: [LoadDriver.Sample] = []
        var cpu: [String: Double] = [:]
        for repeat_ in 1...repeats {
            let directory = Shop.path(base, "c\(concurrency)-\(repeat_)")
            let shop = try await Shop.start(dataDirectory: directory, openingStock: Self.openingStock)
            let result: LoadDriver.Result
            var used: [String: Double] = [:]
            do {
                try await shop.registerUsers(4)
                _ = try await LoadDriver(shop: shop, concurrency: min(concurrency, 64), users: 4, prefix: "warm")
                    .run(limit: min(200, 4 * concurrency))
                let servicesBefore = shop.cpuSeconds()
                let loadBefore = ownCPUSeconds()
                result = try await LoadDriver(shop: shop, concurrency: concurrency, users: 4, prefix: "bench")
                    .run(until: .now + .milliseconds(Int(seconds * 1000)))
                for (name, after) in shop.cpuSeconds() { used[name] = after - (servicesBefore[name] ?? after) }
                used["load"] = ownCPUSeconds() - loadBefore
            } catch {
                await shop.stop()
                throw error
            }
            await shop.stop()
            let invariant = try shop.invariant(product: 101, opening: Self.openingStock)
            guard invariant.holds else { throw ShopError("the stock invariant broke: \(invariant)") }
            rates.append(result.ordersPerSecond)
            samples += result.samples
            for (name, seconds) in used { cpu[name, default: 0] += seconds }
        }
        let pooled = LoadDriver.Result(samples: samples, elapsed: .zero)
        let timed = samples.count
        return Row(
            concurrency: concurrency, ordersPerSecond: rates.sorted()[rates.count / 2],
            p50MS: pooled.percentile(0.5).milliseconds, p99MS: pooled.percentile(0.99).milliseconds,
            ordersTimed: timed, failed: samples.filter { $0.status != 201 }.count,
            cpuMicrosPerOrder: cpu.mapValues { timed > 0 ? $0 * 1e6 / Double(timed) : 0 })
    }

    /// User plus system CPU time of this process (the load generator) so far.
    func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}

/// The part of saga-bench's `--json` report that `bench` compares with.
struct InProcessReport: Decodable {
    struct Row: Decodable {
        var mode: String
        var synchronous: String
        var concurrency: Int
        var failureMix: Bool
        var sagasPerSecond: Double
        var p99MS: Double
    }

    var startedAt: String
    var throughput: [Row]

    static func load(_ path: String) throws -> InProcessReport {
        do {
            return try JSONDecoder().decode(Self.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw ShopError("--beside \(path) is not a saga-bench --json report: \(error)")
        }
    }

    /// The in-process full shop at `concurrency`, synchronous=FULL, without the failure mix.
    func fullShop(concurrency: Int) -> Row? {
        throughput.first {
            $0.mode == "full-shop" && $0.synchronous.lowercased() == "full" && !$0.failureMix
                && $0.concurrency == concurrency
        }
    }
}
