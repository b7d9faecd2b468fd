import Foundation
import SagaKit
import ShopServices
import Testing

@Suite("Product service", .tags(.services), .timeLimit(.minutes(1)))
struct ProductServiceTests {
    let directory: TemporaryDirectory
    let products: ProductService

    init() async throws {
        directory = try TemporaryDirectory()
        products = try ProductService(path: directory.file("products.sqlite"))
        try await products.addProduct("tea", openingStock: 10)
    }

    @Test func deductsStockOncePerKey() async throws {
        let first = try await products.deductStock(product: "tea", quantity: 3, key: "k1")
        let second = try await products.deductStock(product: "tea", quantity: 3, key: "k1")
        #expect(!first.isReplay)
        #expect(second.isReplay)
        #expect(second.key == first.key && second.quantity == 3)
        #expect(try await products.getStock("tea") == 7)
        #expect(try await products.movements().count == 1)
    }

    @Test func refundsOncePerKey() async throws {
        _ = try await products.deductStock(product: "tea", quantity: 4, key: "k1")
        let first = try await products.refundStock(key: "k1")
        let second = try await products.refundStock(key: "k1")
        #expect(first.result == .refunded && first.quantity == 4)
        #expect(second.result == .alreadyRefunded && second.quantity == 0)
        #expect(try await products.getStock("tea") == 10)
        #expect(try await products.movement(key: "k1")?.state == .refunded)
    }

    @Test func deductAgainAfterRefundChangesNothing() async throws {
        _ = try await products.deductStock(product: "tea", quantity: 2, key: "k1")
        _ = try await products.refundStock(key: "k1")
        let replay = try await products.deductStock(product: "tea", quantity: 2, key: "k1")
        #expect(replay.isReplay)
        #expect(try await products.getStock("tea") == 10)
    }

    @Test func refundOfUnknownKeyIsANoOpThatLeavesATombstone() async throws {
        let refund = try await products.refundStock(key: "never-deducted")
        #expect(refund.result == .nothingDeducted && refund.quantity == 0)
        #expect(try await products.getStock("tea") == 10)
        let tombstone = try await products.movement(key: "never-deducted")
        #expect(tombstone?.state == .tombstone)
        #expect(tombstone?.product == nil)
        // Refunding it again is still a no-op.
        #expect(try await products.refundStock(key: "never-deducted").result == .nothingDeducted)
    }

    @Test func tombstoneBlocksALateDeduction() async throws {
        _ = try await products.refundStock(key: "late")
        let error = await shopFailure {
            _ = try await products.deductStock(product: "tea", quantity: 1, key: "late")
        }
        #expect(error?.type == ShopFailure.deductionCancelled)
        #expect(try await products.getStock("tea") == 10)
        #expect(try await products.movement(key: "late")?.state == .tombstone)
    }

    @Test func refusesToGoBelowZero() async throws {
        let error = await shopFailure {
            _ = try await products.deductStock(product: "tea", quantity: 11, key: "big")
        }
        #expect(error?.type == ShopFailure.outOfStock)
        #expect(error?.isRetryable == false)
        #expect(error?.message == "only 10 tea left, 11 requested")
        #expect(try await products.getStock("tea") == 10)
        #expect(try await products.movement(key: "big") == nil, "a refused deduction records nothing")
        // Exactly all of it is fine.
        _ = try await products.deductStock(product: "tea", quantity: 10, key: "all")
        #expect(try await products.getStock("tea") == 0)
    }

    @Test func refusesUnknownProductsBadQuantitiesAndReusedKeys() async throws {
        #expect(
            await shopFailure { _ = try await products.deductStock(product: "gold", quantity: 1, key: "a") }?.type
                == ShopFailure.unknownProduct)
        #expect(
            await shopFailure { _ = try await products.deductStock(product: "tea", quantity: 0, key: "b") }?.type
                == ShopFailure.invalidQuantity)
        #expect(
            await shopFailure { _ = try await products.deductStock(product: "tea", quantity: 1, key: "") }?.type
                == ShopFailure.invalidKey)
        _ = try await products.deductStock(product: "tea", quantity: 1, key: "c")
        #expect(
            await shopFailure { _ = try await products.deductStock(product: "tea", quantity: 2, key: "c") }?.type
                == ShopFailure.idempotencyKeyReused)
        #expect(try await products.getStock("tea") == 9)
    }

    @Test func addingAProductTwiceKeepsItsStock() async throws {
        _ = try await products.deductStock(product: "tea", quantity: 1, key: "k")
        #expect(try await products.addProduct("tea", openingStock: 10) == false)
        #expect(try await products.getStock("tea") == 9)
        try await products.receive("tea", quantity: 5)
        #expect(try await products.stockLevels() == [StockLevel(product: "tea", stock: 14, received: 15)])
    }

    @Test func stateSurvivesReopening() async throws {
        _ = try await products.deductStock(product: "tea", quantity: 2, key: "k1")
        try products.close()
        let reopened = try ProductService(path: directory.file("products.sqlite"))
        #expect(try await reopened.getStock("tea") == 8)
        #expect(try await reopened.deductStock(product: "tea", quantity: 2, key: "k1").isReplay)
        #expect(try await reopened.getStock("tea") == 8)
    }

    @Test func refusesAFileThatIsNotItsDatabase() async throws {
        let notes = directory.file("notes.sqlite")
        try Data("not a database".utf8).write(to: URL(fileURLWithPath: notes))
        #expect(throws: ShopStorageError.self) { try ProductService(path: notes) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: notes)) == Data("not a database".utf8))

        let orders = directory.file("orders.sqlite")
        _ = try OrderService(path: orders)
        let error = #expect(throws: ShopStorageError.self) { try ProductService(path: orders) }
        #expect(error?.message.contains("is the orders database, not the products database") == true)
    }
}
