import GRPCCore
import ProductContract
import ProductServer
import ShopServices
import SwiftProtobuf
import Testing

/// `product.ProductService` over a real gRPC connection: the article's calls, idempotency by key,
/// refunds and tombstones, and every refusal as the status code and message a client acts on.
@Suite("product.ProductService over gRPC", .tags(.grpc), .timeLimit(.minutes(1)))
struct ProductGRPCServiceTests {
    @Test func getStockAnswersTheArticlesProduct() async throws {
        try await withTestServer { server in
            let response = try await server.products.getStock(.init(product: 101))
            #expect(response.stock == 100)
        }
    }

    @Test func deductStockAppliesOncePerKey() async throws {
        try await withTestServer { server in
            let request = Product_DeductStockRequest(product: 101, quantity: 3, key: "order-1/deduct-stock")
            let first = try await server.products.deductStock(request)
            let second = try await server.products.deductStock(request)
            #expect(first.success && !first.replay)
            #expect(second.success && second.replay)
            #expect(try await server.products.getStock(.init(product: 101)).stock == 97)
        }
    }

    @Test func anAbsentQuantityDeductsOneUnit() async throws {
        try await withTestServer { server in
            var request = Product_DeductStockRequest()
            request.productID = 102
            request.idempotencyKey = "order-2/deduct-stock"
            let response = try await server.products.deductStock(request)
            #expect(response.success)
            #expect(try await server.products.getStock(.init(product: 102)).stock == 49)
            // The key names a deduction of 1: an explicit 1 is the same deduction.
            let again = try await server.products.deductStock(
                .init(product: 102, quantity: 1, key: "order-2/deduct-stock"))
            #expect(again.replay)
        }
    }

    @Test func refundStockRefundsADeductedKeyOnce() async throws {
        try await withTestServer { server in
            _ = try await server.products.deductStock(.init(product: 103, quantity: 4, key: "order-3/deduct-stock"))
            #expect(try await server.products.getStock(.init(product: 103)).stock == 6)

            let first = try await server.products.refundStock(.init(key: "order-3/deduct-stock"))
            #expect(first.outcome == .refunded)
            #expect(first.productID == 103)
            #expect(first.quantity == 4)
            let second = try await server.products.refundStock(.init(key: "order-3/deduct-stock"))
            #expect(second.outcome == .alreadyRefunded)
            #expect(second.quantity == 0)
            #expect(try await server.products.getStock(.init(product: 103)).stock == 10)
        }
    }

    @Test func aRefundBeforeItsDeductionLeavesATombstoneThatRefusesIt() async throws {
        try await withTestServer { server in
            let refund = try await server.products.refundStock(.init(key: "order-4/deduct-stock"))
            #expect(refund.outcome == .nothingDeducted)
            #expect(refund.productID == 0)
            #expect(refund.quantity == 0)
            #expect(try await server.service.movement(key: "order-4/deduct-stock")?.state == .tombstone)

            let error = try #require(
                await rpcError {
                    try await server.products.deductStock(.init(product: 101, quantity: 2, key: "order-4/deduct-stock"))
                })
            #expect(error.code == .failedPrecondition)
            #expect(error.message.contains("tombstone"), "\(error.message)")
            #expect(try errorReason(error) == ShopFailure.deductionCancelled)
            #expect(try await server.products.getStock(.init(product: 101)).stock == 100)
        }
    }

    @Test func anUnknownProductIsNotFound() async throws {
        try await withTestServer { server in
            let read = try #require(await rpcError { try await server.products.getStock(.init(product: 999)) })
            #expect(read.code == .notFound)
            #expect(read.message.contains("999"), "\(read.message)")
            #expect(try errorReason(read) == ShopFailure.unknownProduct)

            let deduct = try #require(
                await rpcError {
                    try await server.products.deductStock(.init(product: 999, key: "order-5/deduct-stock"))
                })
            #expect(deduct.code == .notFound)
            #expect(deduct.message.contains("999"), "\(deduct.message)")
        }
    }

    @Test func notEnoughStockIsAFailedPreconditionThatChangesNothing() async throws {
        try await withTestServer { server in
            let error = try #require(
                await rpcError {
                    try await server.products.deductStock(
                        .init(product: 103, quantity: 11, key: "order-6/deduct-stock"))
                })
            #expect(error.code == .failedPrecondition)
            #expect(error.message == "only 10 103 left, 11 requested")
            #expect(try errorReason(error) == ShopFailure.outOfStock)
            #expect(try await server.products.getStock(.init(product: 103)).stock == 10)
            #expect(try await server.service.movement(key: "order-6/deduct-stock") == nil)
        }
    }

    @Test func aKeyReusedForAnotherDeductionAlreadyExists() async throws {
        try await withTestServer { server in
            _ = try await server.products.deductStock(.init(product: 101, quantity: 2, key: "order-7/deduct-stock"))
            for other in [
                Product_DeductStockRequest(product: 101, quantity: 3, key: "order-7/deduct-stock"),
                Product_DeductStockRequest(product: 102, quantity: 2, key: "order-7/deduct-stock"),
            ] {
                let error = try #require(await rpcError { try await server.products.deductStock(other) })
                #expect(error.code == .alreadyExists)
                #expect(error.message.contains("order-7/deduct-stock"), "\(error.message)")
                #expect(try errorReason(error) == ShopFailure.idempotencyKeyReused)
            }
            #expect(try await server.products.getStock(.init(product: 101)).stock == 98)
        }
    }

    @Test(arguments: [
        (Product_DeductStockRequest(product: 0, key: "k"), "product_id must be a positive id, got 0"),
        (Product_DeductStockRequest(product: -5, key: "k"), "product_id must be a positive id, got -5"),
        (
            Product_DeductStockRequest(product: 101, quantity: -1, key: "k"),
            "quantity must be from 1 to 1000000 (absent or 0 means 1), got -1"
        ),
        (
            Product_DeductStockRequest(product: 101, quantity: 1_000_001, key: "k"),
            "quantity must be from 1 to 1000000 (absent or 0 means 1), got 1000001"
        ),
        (Product_DeductStockRequest(product: 101, quantity: 1, key: ""), "idempotency_key must not be empty"),
        (
            Product_DeductStockRequest(product: 101, quantity: 1, key: String(repeating: "k", count: 257)),
            "idempotency_key must be at most 256 bytes, got 257"
        ),
    ])
    func aBadDeductionIsAnInvalidArgument(request: Product_DeductStockRequest, message: String) async throws {
        try await withTestServer { server in
            let error = try #require(await rpcError { try await server.products.deductStock(request) })
            #expect(error.code == .invalidArgument)
            #expect(error.message == message)
            #expect(try await server.products.getStock(.init(product: 101)).stock == 100)
        }
    }

    @Test func badReadsAndRefundsAreInvalidArguments() async throws {
        try await withTestServer { server in
            let read = try #require(await rpcError { try await server.products.getStock(.init(product: 0)) })
            #expect(read.code == .invalidArgument)
            #expect(read.message == "product_id must be a positive id, got 0")
            #expect(try errorReason(read) == "InvalidProductID")

            let refund = try #require(await rpcError { try await server.products.refundStock(.init(key: "")) })
            #expect(refund.code == .invalidArgument)
            #expect(refund.message == "idempotency_key must not be empty")
            #expect(try errorReason(refund) == ShopFailure.invalidKey)
        }
    }

    @Test func aStorageFailureIsUnavailable() async throws {
        try await withTestServer { server in
            try server.service.close()
            for call in [
                { _ = try await server.products.getStock(.init(product: 101)) },
                { _ = try await server.products.deductStock(.init(product: 101, key: "order-8/deduct-stock")) },
                { _ = try await server.products.refundStock(.init(key: "order-8/deduct-stock")) },
            ] as [@Sendable () async throws -> Void] {
                let error = try #require(await rpcError(call))
                #expect(error.code == .unavailable)
                #expect(error.message.hasPrefix("the product database failed: "), "\(error.message)")
                #expect(try errorReason(error) == "StorageUnavailable")
            }
        }
    }
}
