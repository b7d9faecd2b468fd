import Foundation
import SagaKit
import ShopDemo
import ShopServices
import Testing

/// The demo's tour scenarios, run through the same functions `saga-demo` calls, checked against the
/// SQLite files and the saga log rather than against anything printed.
@Suite("Guided tour", .tags(.tour), .timeLimit(.minutes(3)))
struct TourScenarioTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }

    /// Opens the shop, runs `body` with its engine running, closes it.
    func withShop<T: Sendable>(
        _ data: DataDirectory, options: ShopRuntime.Options = ShopRuntime.Options(),
        _ body: @escaping @Sendable (ShopRuntime) async throws -> T
    ) async throws -> T {
        let shop = try await ShopRuntime.open(data, mode: "test", options: options)
        do {
            let result = try await shop.withEngineRunning { try await body(shop) }
            try await shop.close()
            return result
        } catch {
            try? await shop.close()
            throw error
        }
    }

    @Test func scenario1SuccessfulOrderDeductsOnceAndWritesOneOrder() async throws {
        let data = try directory.dataDirectory()
        let report = try await withShop(data) { try await ShopTour.successfulOrder($0) }
        let files = DatabaseFiles(directory: data)
        #expect(try files.stock("tea") == 998)
        #expect(try files.orders(key: "r1-tour-1/create-order") == 1)
        #expect(try files.movement("r1-tour-1/deduct-stock") == "deducted")
        #expect(try await files.status(of: "r1-tour-1") == .completed)
        #expect(
            try await files.records(of: "r1-tour-1").map(\.kind) == [
                .sagaStarted, .stepStarted, .stepSucceeded, .stepStarted, .stepSucceeded, .sagaCompleted,
            ])
        #expect(try files.stockImbalance().values.allSatisfy { $0 == 0 })
        #expect(report.sagaID == "r1-tour-1")
    }

    @Test func scenario2FailedOrderWriteRefundsTheStock() async throws {
        let data = try directory.dataDirectory()
        _ = try await withShop(data) { try await ShopTour.failedOrderWrite($0) }
        let files = DatabaseFiles(directory: data)
        #expect(try files.stock("coffee") == 1000)
        #expect(try files.orders(key: "r1-tour-2/create-order") == 0)
        #expect(try files.movement("r1-tour-2/deduct-stock") == "refunded")
        let saga = try #require(try await files.sagas().first { $0.id == "r1-tour-2" })
        #expect(saga.status == .compensated)
        #expect(saga.lastError?.type == ShopFailure.orderWriteFailed)
        #expect(
            try await files.records(of: "r1-tour-2").map(\.kind) == [
                .sagaStarted, .stepStarted, .stepSucceeded, .stepStarted, .stepFailed, .compensationStarted,
                .compensationSucceeded, .sagaCompensated,
            ])
        #expect(try files.stockImbalance().values.allSatisfy { $0 == 0 })
    }

    @Test(arguments: CrashPoint.allCases)
    func scenario3RecoversFromACrashAt(_ point: CrashPoint) async throws {
        let data = try directory.dataDirectory()
        let report = try await ShopTour.crashAndRecover(directory: data, at: point)
        let sagaID = report.sagaID
        let files = DatabaseFiles(directory: data)
        let forward = !point.isOnCompensationPath
        #expect(try files.stock("cocoa") == (forward ? 999 : 1000), "deducted once, or refunded once")
        #expect(try files.orders(key: "\(sagaID)/create-order") == (forward ? 1 : 0))
        #expect(try files.movement("\(sagaID)/deduct-stock") == (forward ? "deducted" : "refunded"))
        #expect(try await files.status(of: sagaID) == (forward ? .completed : .compensated))
        #expect(try await files.sagas(SagaQuery(status: [.running, .compensating], limit: .max)).isEmpty)
        let records = try await files.records(of: sagaID)
        #expect(records.filter { $0.kind == .sagaStarted }.count == 1)
        let retried = records.contains {
            ($0.kind == .stepStarted || $0.kind == .compensationStarted) && $0.attempt == 2
        }
        #expect(retried, "recovery ran the interrupted call again, with the same key")
        #expect(try files.stockImbalance().values.allSatisfy { $0 == 0 })
        #expect(report.notes.contains { $0.contains("1 saga resumed") })
    }

    @Test func theWholeTourLeavesEverySagaSettledAndTheInvariantHolding() async throws {
        let data = try directory.dataDirectory()
        let load = LoadOptions(orders: 60, concurrency: 8, failureRate: 0.3, seed: 5)
        let report = try await ShopTour.run(directory: data, load: load)
        let files = DatabaseFiles(directory: data)
        let sagas = try await files.sagas()
        #expect(sagas.count == 63)
        #expect(sagas.allSatisfy { $0.status == .completed || $0.status == .compensated })
        let loadSagas = sagas.filter { $0.id.hasPrefix("r1-load-") }
        let completed = loadSagas.filter { $0.status == .completed }.count
        #expect(loadSagas.count == 60)
        #expect(completed > 0 && completed < 60, "some orders fail at a 30% failure rate")
        #expect(try files.orders(keyPrefix: "r1-load-") == completed)
        #expect(try files.stockImbalance().values.allSatisfy { $0 == 0 })
        #expect(report.load?.invariant.holds == true)
        #expect(report.load?.completed == completed)
    }

    @Test(.timeLimit(.minutes(1)))
    func aSecondRunResumesWhatTheFirstLeftUnfinished() async throws {
        let data = try directory.dataDirectory()
        // A first run dies between deduct-stock and create-order, and nothing recovers it.
        let trigger = CrashTrigger()
        trigger.arm(.beforeCreate)
        let shop = try await ShopRuntime.open(data, mode: "test", options: .init(crashTrigger: trigger))
        let order = PlaceOrder(user: shop.customers[0].id, product: "tea", quantity: 4)
        await #expect(throws: SagaError.self) {
            try await shop.withEngineRunning { try await shop.placeOrder(order, sagaID: "left-behind") }
        }
        try await shop.close()
        let files = DatabaseFiles(directory: data)
        #expect(try await files.status(of: "left-behind") == .running)
        #expect(try files.stock("tea") == 996)

        // The next run's tour resumes it first.
        let reopened = try DataDirectory.prepare(data.path)
        #expect(!reopened.isNew)
        let report = try await ShopTour.run(directory: reopened, load: LoadOptions(orders: 0))
        #expect(report.run == 2)
        #expect(report.resumed.resumed == 1 && report.resumed.completed == 1)
        #expect(try await files.status(of: "left-behind") == .completed)
        #expect(try files.orders(key: "left-behind/create-order") == 1)
        #expect(try files.stock("tea") == 994, "4 for the resumed order, 2 for the tour's first scenario")
        #expect(try files.stockImbalance().values.allSatisfy { $0 == 0 })
    }
}
