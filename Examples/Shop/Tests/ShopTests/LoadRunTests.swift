import Foundation
import SagaKit
import ShopDemo
import ShopServices
import Testing

@Suite("Load run", .tags(.load), .timeLimit(.minutes(3)))
struct LoadRunTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }

    func load(_ data: DataDirectory, _ options: LoadOptions, trigger: CrashTrigger? = nil) async throws -> LoadReport {
        let shop = try await ShopRuntime.open(data, mode: "test", options: .init(crashTrigger: trigger))
        do {
            let report = try await shop.withEngineRunning { try await LoadRun.run(shop, options: options) }
            try await shop.close()
            return report
        } catch {
            try? await shop.close()
            throw error
        }
    }

    /// A property of the load, over several seeds: with failures injected, every saga ends completed
    /// or compensated, every completed saga has exactly its order, and the stock adds up.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func afterALoadWithFailuresEverySagaIsSettledAndTheStockAddsUp(seed: UInt64) async throws {
        let data = try directory.dataDirectory("seed-\(seed)")
        let report = try await load(data, LoadOptions(orders: 120, concurrency: 12, failureRate: 0.3, seed: seed))
        let files = DatabaseFiles(directory: data)
        let sagas = try await files.sagas().filter { $0.id.hasPrefix("r1-load-") }
        #expect(sagas.count == 120)
        #expect(sagas.allSatisfy { $0.status == .completed || $0.status == .compensated })
        let completed = sagas.filter { $0.status == .completed }
        #expect(!completed.isEmpty && completed.count < 120)
        for saga in sagas {
            #expect(
                try files.orders(key: "\(saga.id)/create-order") == (saga.status == .completed ? 1 : 0), "\(saga.id)")
        }
        #expect(try files.stockImbalance().values.allSatisfy { $0 == 0 })
        #expect(report.completed == completed.count && report.ordersWritten == completed.count)
        #expect(report.invariant.holds && report.unfinishedInLog == 0 && report.errors == 0)
        #expect((report.failures[ShopFailure.orderWriteFailed] ?? 0) > 0)
    }

    @Test func theSameSeedDrawsTheSameOrders() {
        let one = OrderGenerator(seed: 9, customers: [1, 2, 3])
        let two = OrderGenerator(seed: 9, customers: [1, 2, 3])
        let orders = (0..<50).map(one.order(at:))
        #expect(orders == (0..<50).reversed().map(two.order(at:)).reversed())
        #expect(orders != (0..<50).map(OrderGenerator(seed: 10, customers: [1, 2, 3]).order(at:)))
        #expect(orders.allSatisfy { (1...3).contains($0.quantity) && [1, 2, 3].contains($0.user) })
    }

    /// The engine dies in the middle of a load (as `load --crash-at` does, minus the SIGKILL), and
    /// the next open resumes every saga it left.
    @Test(arguments: [CrashPoint.afterDeduct, .beforeCreate, .afterCreate, .beforeRefund])
    func aCrashMidLoadIsResumedByTheNextOpen(at point: CrashPoint) async throws {
        let data = try directory.dataDirectory()
        let trigger = CrashTrigger()
        trigger.arm(point)
        let first = try await load(
            data, LoadOptions(orders: 80, concurrency: 16, failureRate: 0.3, seed: 4), trigger: trigger)
        #expect(trigger.crashed)
        #expect(first.errors > 0, "the callers of the sagas in flight got errors")

        let shop = try await ShopRuntime.open(data, mode: "test")
        #expect(!shop.unfinishedAtOpen.isEmpty)
        let resumed = try await shop.withEngineRunning { try await shop.resumeUnfinished() }
        try await shop.close()
        #expect(resumed.resumed == shop.unfinishedAtOpen.count)
        #expect(resumed.completed + resumed.compensated == resumed.resumed)

        let files = DatabaseFiles(directory: data)
        let sagas = try await files.sagas()
        #expect(sagas.allSatisfy { $0.status == .completed || $0.status == .compensated })
        for saga in sagas {
            #expect(
                try files.orders(key: "\(saga.id)/create-order") == (saga.status == .completed ? 1 : 0), "\(saga.id)")
        }
        #expect(try files.stockImbalance().values.allSatisfy { $0 == 0 })
    }

    @Test func theMonolithKeepsItsInvariantByRollingBack() async throws {
        let data = try directory.dataDirectory()
        let report = try await MonolithRun.run(
            directory: data, options: LoadOptions(orders: 100, concurrency: 8, failureRate: 0.3, seed: 2))
        #expect(report.orders == 100)
        #expect(report.confirmed == report.ordersWritten)
        #expect((report.refused[ShopFailure.orderWriteFailed] ?? 0) > 0)
        #expect(report.invariant.holds)

        // One failed write, on its own: the deduction made in the same transaction is rolled back.
        let faults = WriteFaults()
        let shop = try MonolithShop(path: data.path(of: ShopFiles.monolith), configuration: .init(faults: faults))
        let before = try await shop.invariant().lines.first { $0.product == "tea" }?.stock
        faults.failNextWrites(1)
        let error = await shopFailure {
            _ = try await shop.placeOrder(user: 1, product: "tea", quantity: 2, key: "rolled-back")
        }
        #expect(error?.type == ShopFailure.orderWriteFailed)
        #expect(try await shop.invariant().lines.first { $0.product == "tea" }?.stock == before)
        #expect(try await shop.orderCount(keyPrefix: "rolled-back") == 0)
        try shop.close()
    }
}
