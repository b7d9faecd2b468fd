import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import OrderServer
import Prometheus
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Synchronization
import Testing

/// A product-service stand-in: applies each key at most once, refunds by key (a tombstone when
/// nothing was deducted), and can lose the reply of a deduction it applied.
final class FakeStock: StockService {
    struct State {
        var stock: [Int32: Int32] = [101: 5]
        var deducted: [String: (product: Int32, quantity: Int32)] = [:]
        var refunded: Set<String> = []
        var tombstones: Set<String> = []
        var loseNextReplies = 0
        var calls = 0
    }

    let state = Mutex(State())

    func deduct(productID: Int32, quantity: Int32, key: String) async throws {
        let lost = try state.withLock { state -> Bool in
            state.calls += 1
            if state.tombstones.contains(key) || state.refunded.contains(key) {
                throw NonRetryableError("the deduction was cancelled by a refund", type: "OutOfStock")
            }
            if state.deducted[key] == nil {
                guard let stock = state.stock[productID] else {
                    throw NonRetryableError("no product \(productID)", type: "UnknownProduct")
                }
                guard stock >= quantity else {
                    throw NonRetryableError("only \(stock) in stock", type: "OutOfStock")
                }
                state.stock[productID] = stock - quantity
                state.deducted[key] = (productID, quantity)
            }
            guard state.loseNextReplies > 0 else { return false }
            state.loseNextReplies -= 1
            return true
        }
        if lost { throw RemoteCallError(service: "product-service", detail: "the reply was lost") }
    }

    func refund(key: String) async throws {
        state.withLock { state in
            guard let deduction = state.deducted[key] else {
                state.tombstones.insert(key)
                return
            }
            guard state.refunded.insert(key).inserted else { return }
            state.stock[deduction.product, default: 0] += deduction.quantity
        }
    }

    func stock(productID: Int32) async throws -> Int32 { state.withLock { $0.stock[productID] ?? 0 } }
}

/// A user-service stand-in knowing users 1 and 2.
struct FakeUsers: UserDirectory {
    func requireUser(id: Int64) async throws {
        guard id == 1 || id == 2 else { throw NonRetryableError("no user \(id)", type: "UnknownUser") }
    }
}

/// order-service's API in process, over a real SQLite saga log and fake participants.
@Suite("order-service API", .timeLimit(.minutes(1)))
struct OrderAPITests {
    let stock = FakeStock()

    func withAPI(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await withTemporaryDirectory(prefix: "OrderAPITests") { directory in
            let path = directory.path(of: "sagas.sqlite")
            try OrderDatabase.prepare(path: path)
            let store = try SQLiteSagaStore(path: path)
            let orders = try OrderDatabase.Reader(path: path)
            let registry = PrometheusCollectorRegistry()
            var configuration = SagaEngine.Configuration(clock: ImmediateSagaClock(), jitterSeed: 1)
            configuration.metricsFactory = PrometheusMetricsFactory(registry: registry)
            let logger = Logger(label: "order-tests", factory: { _ in SwiftLogNoOpLogHandler() })
            let engine = SagaEngine(store: store, configuration: configuration, logger: logger)
            let definition = PlaceOrderSaga.definition(
                users: FakeUsers(), stock: stock, options: StepOptions(retry: .exponential(maxAttempts: 4)))
            try engine.register(definition)
            let api = OrderAPI(engine: engine, definition: definition, orders: orders, registry: registry)
            try await withRunningSagaEngine(engine) { _ in
                try await Application(router: api.router()).test(.router, body)
            }
            try orders.close()
            try await store.close()
        }
    }

    static func post(
        _ client: any TestClientProtocol, _ body: String, key: String? = nil
    ) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let key, let name = HTTPField.Name("Idempotency-Key") { headers[name] = key }
        return try await client.execute(uri: "/orders", method: .post, headers: headers, body: ByteBuffer(string: body))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(response.body.readableBytesView))
    }

    static func message(_ response: TestResponse) throws -> String {
        try decode(ErrorEnvelope.self, response).error.message
    }

    struct ErrorEnvelope: Decodable {
        struct Detail: Decodable { var message: String }
        var error: Detail
    }

    @Test func anOrderIsPlacedReadAndCounted() async throws {
        try await withAPI { client in
            let response = try await Self.post(client, #"{"user_id": 1, "product_id": 101, "quantity": 2}"#, key: "k-1")
            #expect(response.status == .created)
            let order = try Self.decode(PlacedOrder.self, response)
            #expect(order.quantity == 2 && order.productID == 101 && order.sagaID == "order-k-1")
            let read = try await client.execute(uri: "/orders/\(order.id)", method: .get)
            #expect(try Self.decode(PlacedOrder.self, read) == order)
            let timeline = try await client.execute(uri: "/sagas/order-k-1", method: .get)
            #expect(String(buffer: timeline.body).contains("saga.completed"))
            let scraped = try await client.execute(uri: "/metrics", method: .get)
            let metrics = String(buffer: scraped.body)
            #expect(metrics.contains(#"orders_created_total{product_id="101"} 1"#), "\(metrics)")
            // The same key and body again: the same order, not a second one.
            let again = try await Self.post(client, #"{"user_id": 1, "product_id": 101, "quantity": 2}"#, key: "k-1")
            #expect(try Self.decode(PlacedOrder.self, again).id == order.id)
            let left = try await stock.stock(productID: 101)
            #expect(left == 3)
        }
    }

    @Test func anOrderForMoreThanTheStockIsRefusedAndNothingIsKept() async throws {
        try await withAPI { client in
            let response = try await Self.post(client, #"{"user_id": 1, "product_id": 101, "quantity": 9}"#)
            #expect(response.status == .conflict)
            let message = try Self.message(response)
            #expect(message.contains("only 5 in stock"), "\(message)")
            let left = try await stock.stock(productID: 101)
            #expect(left == 5)
            #expect(stock.state.withLock { $0.tombstones.count } == 1, "the refund left a tombstone")
        }
    }

    @Test func anUnknownUserOrProductIsRefused() async throws {
        try await withAPI { client in
            let user = try await Self.post(client, #"{"user_id": 9, "product_id": 101, "quantity": 1}"#)
            #expect(user.status == .unprocessableContent)
            #expect(stock.state.withLock { $0.calls } == 0, "no deduction for an unknown user")
            let product = try await Self.post(client, #"{"user_id": 1, "product_id": 7, "quantity": 1}"#)
            #expect(product.status == .unprocessableContent)
        }
    }

    @Test func aLostReplyIsRetriedWithTheSameKeyAndDeductsOnce() async throws {
        stock.state.withLock { $0.loseNextReplies = 2 }
        try await withAPI { client in
            let response = try await Self.post(client, #"{"user_id": 2, "product_id": 101, "quantity": 1}"#)
            #expect(response.status == .created)
            #expect(stock.state.withLock { ($0.calls, $0.deducted.count) } == (3, 1))
            let left = try await stock.stock(productID: 101)
            #expect(left == 4)
        }
    }

    @Test(arguments: [
        (#"{"user_id": 1, "product_id": 101}"#, "'quantity' is missing"),
        (#"{"user_id": 1, "product_id": 101, "quantity": 0}"#, "'quantity' must be from 1"),
        (#"{"user_id": 1, "product_id": 101, "quantity": -4}"#, "'quantity' must be from 1"),
        (#"{"user_id": 1, "product_id": 101, "quantity": 99999999999}"#, "does not fit"),
        (#"{"user_id": 1, "product_id": 101, "quantity": "2"}"#, "'quantity' must be a whole number"),
        (#"{"user_id": 1, "product_id": 101, "quantity": 1, "coupon": "x"}"#, "unknown field 'coupon'"),
        (#"{"user_id": 0, "product_id": 101, "quantity": 1}"#, "'user_id' must be positive"),
        ("[1, 2]", "must be a JSON object"),
        ("{", "not valid JSON"),
    ])
    func badOrdersAreRefusedWithAMessage(body: String, problem: String) async throws {
        try await withAPI { client in
            let response = try await Self.post(client, body)
            #expect(response.status == .badRequest, "\(body)")
            let message = try Self.message(response)
            #expect(message.contains(problem), "\(body): \(message)")
        }
    }

    @Test func aKeyReusedForAnotherOrderOrMalformedIsRefused() async throws {
        try await withAPI { client in
            let first = try await Self.post(client, #"{"user_id": 1, "product_id": 101, "quantity": 1}"#, key: "k")
            #expect(first.status == .created)
            let reused = try await Self.post(client, #"{"user_id": 1, "product_id": 101, "quantity": 2}"#, key: "k")
            #expect(reused.status == .unprocessableContent)
            let message = try Self.message(reused)
            #expect(message.contains("was used for another order"))
            let malformed = try await Self.post(
                client, #"{"user_id": 1, "product_id": 101, "quantity": 1}"#, key: "a b")
            #expect(malformed.status == .badRequest)
        }
    }

    @Test func unknownOrdersAndSagasAre404() async throws {
        try await withAPI { client in
            let unknownOrder = try await client.execute(uri: "/orders/99", method: .get)
            let badOrder = try await client.execute(uri: "/orders/x", method: .get)
            let unknownSaga = try await client.execute(uri: "/sagas/order-nope", method: .get)
            let ready = try await client.execute(uri: "/health/ready", method: .get)
            #expect(unknownOrder.status == .notFound && badOrder.status == .badRequest)
            #expect(unknownSaga.status == .notFound && ready.status == .ok)
        }
    }
}
