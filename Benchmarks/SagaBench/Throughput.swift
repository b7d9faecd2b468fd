import Foundation
import SagaKit
import SagaKitSQLite
import ShopServices
import Synchronization

/// Numbers the timed loads of a run, to give each its own saga ids.
let loadNumber = Atomic<Int>(0)

/// One row of a throughput table: the median of repeated timed loads, with latencies pooled over them.
struct ThroughputRow: Codable, Sendable {
    var mode: String
    var synchronous: String
    var concurrency: Int
    var failureMix: Bool
    var logEventsBefore: Int?
    var sagasPerSecond: Double
    var p50MS: Double
    var p99MS: Double
    var sagasTimed: Int
    var compensated: Int
    var errors: Int
    /// The single-row durable commit rate measured just before this row's loads.
    var rawCommitsPerSecond: Double
    var ratioToRaw: Double { rawCommitsPerSecond > 0 ? sagasPerSecond / rawCommitsPerSecond : 0 }
    /// Process CPU time (user + system) per saga during the timed loads, in microseconds: robust to
    /// the disk's drift and to other processes competing for the cores.
    var cpuMicrosPerSaga: Double
    /// Log transactions per saga (the group commit's batching), from the store's counter.
    var logCommitsPerSaga: Double
}

enum Mode: String, Codable, Sendable {
    case engineOnly = "engine-only"
    case fullShop = "full-shop"
    /// Diagnostic: the engine-only saga over `InMemorySagaStore`, so the figure is SagaKit's CPU cost alone.
    case inMemory = "in-memory"
}

struct ThroughputPlan: Sendable {
    var duration: Duration
    var repeats: Int
    var rawDuration: Duration
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(sorted.count - 1, max(0, rank))]
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1
        ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// Opens what one timed load needs (a fresh saga log, and for the full shop fresh service databases),
/// runs `repeats` loads, and closes it all.
func measureThroughput(
    mode: Mode, synchronous: SQLiteSagaStore.Configuration.Synchronous, concurrency: Int, failureMix: Bool,
    plan: ThroughputPlan, root: String, probe: RawCommitProbe, existingLog: (path: String, events: Int)? = nil
) async throws -> ThroughputRow {
    let raw = try probe.measure(for: plan.rawDuration)
    var rates: [Double] = []
    var latencies: [Double] = []
    var timed = 0
    var compensated = 0
    var errors = 0
    var commits = 0
    var cpu = 0.0
    var logEvents: Int?
    for _ in 0..<plan.repeats {
        let directory = try scratch(root, "cell")
        var logPath = (directory as NSString).appendingPathComponent("sagas.sqlite")
        if let existingLog {
            logPath = existingLog.path
            logEvents = existingLog.events
        }
        // Unique across the whole run: a row measured on an existing log must not attach to its sagas.
        let prefix = "s\(loadNumber.add(1, ordering: .relaxed).newValue)-"
        let store = try SQLiteSagaStore(path: logPath, configuration: storeConfiguration(synchronous))
        let engine = SagaEngine(
            store: mode == .inMemory ? InMemorySagaStore() : store, configuration: engineConfiguration(),
            logger: silentLogger)
        let place: @Sendable (Int) async -> SagaStatus?
        var closeServices: () throws -> Void = {}
        switch mode {
        case .engineOnly, .inMemory:
            let saga = EngineOnlySaga(failTenPercent: failureMix)
            try engine.register(saga.definition)
            place = { index in
                await status {
                    try await engine.execute(saga.definition, id: prefix + "\(index)", input: benchOrder(index))
                }
            }
        case .fullShop:
            let products = try ProductService(path: (directory as NSString).appendingPathComponent("products.sqlite"))
            let orders = try OrderService(
                path: (directory as NSString).appendingPathComponent("orders.sqlite"),
                configuration: .init(faults: WriteFaults(failureRate: failureMix ? 0.1 : 0, seed: 42)))
            for product in ["tea", "coffee", "cocoa"] {
                try await products.addProduct(product, openingStock: 1_000_000_000)
                try await orders.carry(product)
            }
            try await orders.addCustomer(1, name: "Bench")
            let saga = PlaceOrderSaga(products: products, orders: orders)
            try engine.register(saga.definition)
            place = { index in
                var order = benchOrder(index)
                order.user = 1
                return await status { try await engine.execute(saga.definition, id: prefix + "\(index)", input: order) }
            }
            closeServices = {
                try products.close()
                try orders.close()
            }
        }
        let (sample, logCommits) = try await withEngineRunning(engine) {
            // A short warm-up so the first repeat does not pay for page-cache misses and lazy setup.
            _ = await timedLoad(
                concurrency: min(concurrency, 64), duration: .zero, minimum: min(200, 4 * concurrency),
                firstIndex: 10_000_000, place: place)
            let before = store.committedTransactionCount
            let cpuBefore = processCPUSeconds()
            var sample = await timedLoad(
                concurrency: concurrency, duration: plan.duration, minimum: concurrency, place: place)
            sample.cpuSeconds = processCPUSeconds() - cpuBefore
            return (sample, store.committedTransactionCount - before)
        }
        commits += logCommits
        cpu += sample.cpuSeconds
        try await store.close()
        try closeServices()
        rates.append(sample.throughput)
        latencies += sample.latenciesMS
        timed += sample.sagas
        compensated += sample.compensated
        errors += sample.errors
    }
    latencies.sort()
    return ThroughputRow(
        mode: mode.rawValue, synchronous: "\(synchronous)", concurrency: concurrency, failureMix: failureMix,
        logEventsBefore: logEvents, sagasPerSecond: median(rates), p50MS: percentile(latencies, 0.5),
        p99MS: percentile(latencies, 0.99), sagasTimed: timed, compensated: compensated, errors: errors,
        rawCommitsPerSecond: raw, cpuMicrosPerSaga: timed > 0 ? cpu * 1e6 / Double(timed) : 0,
        logCommitsPerSaga: timed > 0 ? Double(commits) / Double(timed) : 0)
}

/// User plus system CPU time of the whole process so far.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
