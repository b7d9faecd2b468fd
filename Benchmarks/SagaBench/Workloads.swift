import Foundation
import Logging
import SagaKit
import SagaKitSQLite
import ShopDemo
import ShopServices
import Synchronization

/// The deduction the engine-only saga's first step returns, shaped like the shop's.
struct BenchDeduction: Codable, Sendable {
    var key: String
    var product: String
    var quantity: Int
}

/// Failures injected into the engine-only saga's pivot: every order whose `user` is a multiple of ten
/// when the mix is on, so the 10% mix is exact and reproducible.
struct BenchPivotFailure: Error {}

/// A gate the engine-only pivot can wait on (to hold sagas in flight for the memory section).
final class PivotGate: Sendable {
    private struct State {
        var closed = false
        var waiting: [CheckedContinuation<Void, Never>] = []
        var entered = 0
    }
    private let state = Mutex(State())

    func close() { state.withLock { $0.closed = true } }

    /// Calls that reached the pivot while the gate was closed.
    var entered: Int { state.withLock { $0.entered } }

    func pass() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wait = state.withLock { state -> Bool in
                guard state.closed else { return false }
                state.entered += 1
                state.waiting.append(continuation)
                return true
            }
            if !wait { continuation.resume() }
        }
    }

    func open() {
        let waiting = state.withLock { state in
            state.closed = false
            defer { state.waiting = [] }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }
}

/// The shop's place-order shape (a compensatable step, then the pivot) with participants that do no
/// I/O: what is left is SagaKit's own cost and its log's durability.
struct EngineOnlySaga: Sendable {
    let definition: SagaDefinition<PlaceOrder, OrderConfirmation>

    init(failTenPercent: Bool, gate: PivotGate? = nil) {
        let deduct = SagaStep<PlaceOrder, BenchDeduction>.compensatable(PlaceOrderSaga.deductStockStep) { context in
            BenchDeduction(
                key: context.idempotencyKey, product: context.input.product, quantity: context.input.quantity)
        } compensation: { _, _ in
        }
        let create = SagaStep<PlaceOrder, OrderConfirmation>.pivot(PlaceOrderSaga.createOrderStep) { context in
            if let gate { await gate.pass() }
            if failTenPercent, context.input.user % 10 == 0 {
                throw NonRetryableError("injected order-write failure", type: ShopFailure.orderWriteFailed)
            }
            let deduction = try context.output(of: deduct)
            return OrderConfirmation(
                orderID: context.input.user, user: context.input.user, product: context.input.product,
                quantity: context.input.quantity, deductionKey: deduction.key, orderKey: context.idempotencyKey)
        }
        definition = SagaDefinition(PlaceOrderSaga.name, returning: create) {
            deduct
            create
        }
    }
}

let silentLogger = Logger(label: "saga-bench", factory: { _ in SwiftLogNoOpLogHandler() })

/// Runs `engine` while `body` runs, then stops it by cancellation.
func withEngineRunning<T: Sendable>(_ engine: SagaEngine, _ body: @escaping @Sendable () async throws -> T)
    async throws -> T
{
    try await ShopRuntime.withEngineRunning(engine, body)
}

/// What one timed load produced.
struct LoadSample: Sendable {
    var sagas: Int
    var completed: Int
    var compensated: Int
    var errors: Int
    var seconds: Double
    var latenciesMS: [Double]
    var cpuSeconds = 0.0

    var throughput: Double { seconds > 0 ? Double(sagas) / seconds : 0 }
}

/// Keeps `concurrency` sagas in flight, starting new ones until `duration` has passed (and at least
/// `minimum` have started), then waits for the last; every saga's latency is start to outcome.
func timedLoad(
    concurrency: Int, duration: Duration, minimum: Int, firstIndex: Int = 0,
    place: @escaping @Sendable (Int) async -> SagaStatus?
) async -> LoadSample {
    let clock = ContinuousClock()
    let began = clock.now
    var sample = LoadSample(sagas: 0, completed: 0, compensated: 0, errors: 0, seconds: 0, latenciesMS: [])
    await withTaskGroup(of: (SagaStatus?, Double).self) { group in
        var started = 0
        func launch() {
            let index = firstIndex + started
            started += 1
            group.addTask {
                let start = clock.now
                let status = await place(index)
                return (status, (clock.now - start).milliseconds)
            }
        }
        while started < concurrency { launch() }
        while let (status, latency) = await group.next() {
            sample.sagas += 1
            sample.latenciesMS.append(latency)
            switch status {
            case .completed?: sample.completed += 1
            case .compensated?: sample.compensated += 1
            default: sample.errors += 1
            }
            if started < minimum || clock.now - began < duration { launch() }
        }
    }
    sample.seconds = (clock.now - began).seconds
    return sample
}

/// Runs a saga and maps its outcome to a status (`nil` for an error).
func status<Output>(_ body: () async throws -> SagaOutcome<Output>) async -> SagaStatus? {
    do {
        return try await body().status
    } catch {
        return nil
    }
}

func storeConfiguration(_ synchronous: SQLiteSagaStore.Configuration.Synchronous) -> SQLiteSagaStore.Configuration {
    var configuration = SQLiteSagaStore.Configuration()
    configuration.synchronous = synchronous
    return configuration
}

func engineConfiguration() -> SagaEngine.Configuration {
    var configuration = SagaEngine.Configuration(maxConcurrentSagas: 4096)
    configuration.jitterSeed = 42
    return configuration
}

/// A fresh scratch directory under `root`.
func scratch(_ root: String, _ name: String) throws -> String {
    let path = (root as NSString).appendingPathComponent(name)
    try? FileManager.default.removeItem(atPath: path)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// An order with a product and quantity drawn from the index; `user` is the index, so the engine-only
/// failure mix fails exactly one in ten.
func benchOrder(_ index: Int) -> PlaceOrder {
    let products = ["tea", "coffee", "cocoa"]
    return PlaceOrder(user: Int64(index), product: products[index % 3], quantity: 1 + index % 3)
}
