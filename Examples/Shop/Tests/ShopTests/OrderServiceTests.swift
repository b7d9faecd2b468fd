import Foundation
import SagaKit
import Testing

@testable import ShopServices

@Suite("Order service", .tags(.services), .timeLimit(.minutes(1)))
struct OrderServiceTests {
    let directory: TemporaryDirectory
    let orders: OrderService

    init() async throws {
        directory = try TemporaryDirectory()
        orders = try OrderService(path: directory.file("orders.sqlite"))
        try await orders.addCustomer(1, name: "Ada Lovelace")
        try await orders.carry("tea")
    }

    @Test func createsAnOrderOncePerKey() async throws {
        let first = try await orders.createOrder(user: 1, product: "tea", quantity: 2, key: "o1")
        let second = try await orders.createOrder(user: 1, product: "tea", quantity: 2, key: "o1")
        #expect(first == second)
        #expect(try await orders.orders() == [first])
        #expect(try await orders.order(key: "o1") == first)
        #expect(try await orders.orderedQuantities() == ["tea": 2])
    }

    @Test func refusesAnUnknownUser() async throws {
        let error = await shopFailure {
            _ = try await orders.createOrder(user: 99, product: "tea", quantity: 1, key: "o")
        }
        #expect(error?.type == ShopFailure.unknownUser)
        #expect(try await orders.orders().isEmpty)
    }

    @Test func refusesAProductItDoesNotCarry() async throws {
        let error = await shopFailure {
            _ = try await orders.createOrder(user: 1, product: "matcha", quantity: 1, key: "o")
        }
        #expect(error?.type == ShopFailure.productNotCarried)
        #expect(try await orders.orders().isEmpty)
    }

    @Test func refusesAQuantityOverTheLimit() async throws {
        let error = await shopFailure {
            _ = try await orders.createOrder(user: 1, product: "tea", quantity: 11, key: "o")
        }
        #expect(error?.type == ShopFailure.quantityOverLimit)
        #expect(error?.message == "11 tea is over the limit of 10 units per order")
        _ = try await orders.createOrder(user: 1, product: "tea", quantity: 10, key: "at-the-limit")
        let zero = await shopFailure {
            _ = try await orders.createOrder(user: 1, product: "tea", quantity: 0, key: "z")
        }
        #expect(zero?.type == ShopFailure.invalidQuantity)
        #expect(try await orders.orders().map(\.key) == ["at-the-limit"])
    }

    @Test func refusesAKeyReusedForAnotherOrder() async throws {
        _ = try await orders.createOrder(user: 1, product: "tea", quantity: 1, key: "o1")
        let error = await shopFailure {
            _ = try await orders.createOrder(user: 1, product: "tea", quantity: 3, key: "o1")
        }
        #expect(error?.type == ShopFailure.idempotencyKeyReused)
        #expect(try await orders.orderedQuantities() == ["tea": 1])
    }

    @Test func addingACustomerOrAProductTwiceChangesNothing() async throws {
        try await orders.addCustomer(1, name: "Ada Lovelace")
        try await orders.carry("tea")
        _ = try await orders.createOrder(user: 1, product: "tea", quantity: 1, key: "o1")
        #expect(try await orders.orderCount() == 1)
    }

    @Test func anInjectedFaultFailsTheNextWriteAndWritesNothing() async throws {
        orders.faults.failNextWrites(1)
        let error = await shopFailure {
            _ = try await orders.createOrder(user: 1, product: "tea", quantity: 1, key: "o1")
        }
        #expect(error?.type == ShopFailure.orderWriteFailed)
        #expect(error?.isRetryable == false)
        #expect(try await orders.orders().isEmpty)
        #expect(orders.faults.injectedCount == 1)
        // Only the next write: the same order goes through now.
        _ = try await orders.createOrder(user: 1, product: "tea", quantity: 1, key: "o1")
        #expect(try await orders.orderCount() == 1)
    }

    @Test func aReplayIsNotAWriteSoFaultsDoNotApply() async throws {
        let order = try await orders.createOrder(user: 1, product: "tea", quantity: 1, key: "o1")
        orders.faults.failNextWrites(1)
        #expect(try await orders.createOrder(user: 1, product: "tea", quantity: 1, key: "o1") == order)
        #expect(orders.faults.injectedCount == 0)
    }

    @Test func seededFailureRateDecidesByKeyAndSeed() async throws {
        let keys = (0..<400).map { "order-\($0)/create-order" }
        let faults = WriteFaults(failureRate: 0.25, seed: 7)
        let failing = keys.filter { faults.shouldFail(key: $0) }
        #expect((60...140).contains(failing.count), "about a quarter of 400: \(failing.count)")
        // The same seed fails the same keys, in any order; another seed fails others.
        let again = WriteFaults(failureRate: 0.25, seed: 7)
        #expect(keys.reversed().filter { again.shouldFail(key: $0) } == failing.reversed())
        let other = WriteFaults(failureRate: 0.25, seed: 8)
        #expect(keys.filter { other.shouldFail(key: $0) } != failing)
        #expect(WriteFaults(failureRate: 0, seed: 7).injectedCount == 0)
        #expect(keys.allSatisfy { WriteFaults(failureRate: 1, seed: 1).shouldFail(key: $0) })
    }
}
