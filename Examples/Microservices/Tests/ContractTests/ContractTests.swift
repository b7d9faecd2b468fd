import Foundation
import HTTPSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import OrderServer
import Prometheus
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import ShopServices
import Synchronization
import Testing
import UserServer

/// user-service and order-service in process against `Contracts/openapi.yaml`: every documented
/// operation answers a sample request with a status the document lists for it, a body that
/// validates against the documented schema and the documented headers; and every route the routers
/// serve is in the document.
@Suite("OpenAPI contract", .timeLimit(.minutes(1)))
struct ContractTests {
    let document: OpenAPIDocument
    let checker: SchemaChecker

    init() throws {
        document = try OpenAPIDocument.load()
        checker = SchemaChecker(document: document)
    }

    // MARK: the document

    @Test func theDocumentIsOpenAPI3WithEveryReferenceResolvedAndEveryOperationTagged() throws {
        #expect(document.root["openapi"]?.stringValue?.hasPrefix("3.") == true)
        for reference in document.references {
            _ = try document.resolve(.object(["$ref": .string(reference)]))
        }
        for operation in document.operations {
            let tags = Set(document.tags(of: operation))
            #expect(!tags.isEmpty && tags.isSubset(of: ["user-service", "order-service"]), "\(operation)")
            #expect(!document.statuses(of: operation).isEmpty, "\(operation) documents no response")
        }
    }

    @Test func theCheckerFindsEveryViolationOfASchema() throws {
        let user = JSONValue.object(["$ref": "#/components/schemas/User"])
        let good = try JSONValue(json: Data(#"{"id": 1, "name": "Ada", "email": "ada@example.com"}"#.utf8))
        #expect(try checker.violations(of: good, against: user) == [])
        let bad = try JSONValue(json: Data(#"{"id": 0, "name": "", "nickname": "A"}"#.utf8))
        let violations = try checker.violations(of: bad, against: user)
        #expect(violations.contains { $0.hasPrefix("$.id:") && $0.contains("less than 1") }, "\(violations)")
        #expect(violations.contains { $0.hasPrefix("$.name:") && $0.contains("shorter than 1") }, "\(violations)")
        #expect(violations.contains { $0.contains("'email' is missing") }, "\(violations)")
        #expect(violations.contains { $0.contains("'nickname' is not in the schema") }, "\(violations)")
        #expect(violations.count == 4, "\(violations)")

        let order = JSONValue.object(["$ref": "#/components/schemas/Order"])
        let wrong = try JSONValue(
            json: Data(#"{"id": 1, "user_id": 1, "product_id": 3000000000, "quantity": "2", "saga_id": "x"}"#.utf8))
        let orderViolations = try checker.violations(of: wrong, against: order)
        #expect(orderViolations.contains { $0.hasPrefix("$.product_id:") }, "\(orderViolations)")
        #expect(orderViolations.contains { $0.hasPrefix("$.quantity:") && $0.contains("not integer") })
        #expect(orderViolations.contains { $0.hasPrefix("$.saga_id:") }, "\(orderViolations)")

        let timeline = JSONValue.object(["$ref": "#/components/schemas/SagaTimeline"])
        let unknownStatus = try JSONValue(
            json: Data(#"{"saga_id": "order-1", "name": "place-order", "status": "lost", "records": []}"#.utf8))
        let timelineViolations = try checker.violations(of: unknownStatus, against: timeline)
        #expect(timelineViolations.contains { $0.hasPrefix("$.status:") && $0.contains("not one of") })
        #expect(timelineViolations.contains { $0.hasPrefix("$.records:") && $0.contains("fewer than 1") })

        let unsupported = JSONValue.object(["type": "string", "oneOf": .array([])])
        #expect(try checker.violations(of: "a", against: unsupported).count == 1)
    }

    @Test func everyRouteIsDocumentedAndEveryDocumentedOperationIsExercised() async throws {
        var served: Set<OpenAPIDocument.Operation> = []
        try await Self.withUserAPI { api in
            for route in api.router().routes { served.insert(.init(route.method.rawValue, route.path.description)) }
        }
        try await Self.withOrderAPI { api, _, _ in
            for route in api.router().routes { served.insert(.init(route.method.rawValue, route.path.description)) }
        }
        let documented = document.operations
        #expect(served.subtracting(documented).sorted() == [], "served but not documented")
        #expect(documented.subtracting(served).sorted() == [], "documented but not served")

        let exercised = Set((Self.userSamples + Self.orderSamples + [Self.slowOrder]).map(\.operation))
        #expect(documented.subtracting(exercised).sorted() == [], "documented but never exercised")
        #expect(exercised.subtracting(documented).sorted() == [], "exercised but not documented")
        // Each service's samples exercise exactly the operations tagged with it.
        for (tag, samples) in [("user-service", Self.userSamples), ("order-service", Self.orderSamples)] {
            let tagged = documented.filter { document.tags(of: $0).contains(tag) }
            #expect(Set(samples.map(\.operation)) == tagged, "\(tag)")
        }
    }

    // MARK: user-service

    static let userSamples: [Sample] = [
        Sample(.post, "/users", body: #"{"name": " Ada Lovelace ", "email": "ada@example.com"}"#, expect: .created),
        Sample(.post, "/users", body: #"{"name": "Ada", "email": "ADA@example.com"}"#, expect: .conflict),
        Sample(.post, "/users", body: #"{"name": "Ada"}"#, expect: .badRequest),
        Sample(.post, "/users", body: #"{"name": "Ada", "email": "b@example.com", "age": 36}"#, expect: .badRequest),
        Sample(.post, "/users", body: #"{"name": "   ", "email": "c@example.com"}"#, expect: .badRequest),
        Sample(.post, "/users", body: #"{"name": "Ada", "email": "no-at-sign"}"#, expect: .badRequest),
        Sample(.post, "/users", body: #"["Ada", "d@example.com"]"#, expect: .badRequest),
        Sample(.post, "/users", body: "", expect: .badRequest),
        Sample(.post, "/users", body: Self.oversizedBody, expect: .contentTooLarge),
        Sample(.get, "/users/{id}", uri: "/users/1", expect: .ok),
        Sample(.get, "/users/{id}", uri: "/users/2", expect: .notFound),
        Sample(.get, "/users/{id}", uri: "/users/0", expect: .badRequest),
        Sample(.get, "/users/{id}", uri: "/users/one", expect: .badRequest),
        Sample(.get, "/health/live", expect: .ok),
        Sample(.get, "/health/ready", expect: .ok),
    ]

    @Test func userServiceAnswersAsDocumented() async throws {
        try await Self.withUserAPI { api in
            try await Application(router: api.router()).test(.router) { client in
                for sample in Self.userSamples { try await check(sample, on: client) }
            }
        }
    }

    // MARK: order-service

    static let orderSamples: [Sample] = [
        Sample(.post, "/orders", key: "k-1", body: Self.order(1, 101, 2), expect: .created),
        // The same key and body: the same order.
        Sample(.post, "/orders", key: "k-1", body: Self.order(1, 101, 2), expect: .created),
        Sample(.post, "/orders", key: "k:2", body: Self.order(2, 101, 1), expect: .created),
        Sample(.post, "/orders", key: "k-1", body: Self.order(1, 101, 3), expect: .unprocessableContent),
        Sample(.post, "/orders", body: Self.order(99, 101, 1), expect: .unprocessableContent),
        Sample(.post, "/orders", body: Self.order(1, 404, 1), expect: .unprocessableContent),
        // Out of stock; and over order-service's own limit per order, refused after the deduction.
        Sample(.post, "/orders", body: Self.order(1, 101, 30), expect: .conflict),
        Sample(.post, "/orders", body: Self.order(1, 101, 11), expect: .conflict),
        Sample(.post, "/orders", body: Self.order(1, 101, 0), expect: .badRequest),
        Sample(.post, "/orders", body: Self.order(1, 101, 1001), expect: .badRequest),
        Sample(.post, "/orders", body: Self.order(0, 101, 1), expect: .badRequest),
        Sample(.post, "/orders", body: Self.order(1, -1, 1), expect: .badRequest),
        Sample(.post, "/orders", body: #"{"user_id": 1, "product_id": 101, "quantity": "two"}"#, expect: .badRequest),
        Sample(.post, "/orders", body: Self.order(1, 3000000000, 1), expect: .badRequest),
        Sample(.post, "/orders", body: #"{"user_id": 1, "product_id": 101}"#, expect: .badRequest),
        Sample(
            .post, "/orders", body: #"{"user_id": 1, "product_id": 101, "quantity": 1, "note": "x"}"#,
            expect: .badRequest),
        Sample(.post, "/orders", key: "no spaces", body: Self.order(1, 101, 1), expect: .badRequest),
        Sample(
            .post, "/orders", key: String(repeating: "k", count: 101),
            body: Self.order(1, 101, 1), expect: .badRequest),
        Sample(.post, "/orders", body: Self.oversizedBody, expect: .contentTooLarge),
        Sample(.get, "/orders/{id}", uri: "/orders/1", expect: .ok),
        Sample(.get, "/orders/{id}", uri: "/orders/99", expect: .notFound),
        Sample(.get, "/orders/{id}", uri: "/orders/-1", expect: .badRequest),
        Sample(.get, "/sagas/{id}", uri: "/sagas/order-k-1", expect: .ok),
        // Percent-encoded, as encodeURIComponent writes the id `order-k:2`.
        Sample(.get, "/sagas/{id}", uri: "/sagas/order-k%3A2", expect: .ok),
        Sample(.get, "/sagas/{id}", uri: "/sagas/order-unknown", expect: .notFound),
        Sample(.get, "/health/live", expect: .ok),
        Sample(.get, "/health/ready", expect: .ok),
        Sample(.get, "/metrics", expect: .ok),
    ]

    /// An order's body.
    static func order(_ user: Int64, _ product: Int64, _ quantity: Int64) -> String {
        #"{"user_id": \#(user), "product_id": \#(product), "quantity": \#(quantity)}"#
    }

    /// An order whose deduction waits: with a short `answerWithin` it answers 202.
    static let slowOrder = Sample(
        .post, "/orders", key: "slow-1", body: Self.order(1, 102, 1), expect: .accepted)

    @Test func orderServiceAnswersAsDocumented() async throws {
        try await Self.withOrderAPI { api, hurried, stock in
            try await Application(router: api.router()).test(.router) { client in
                for sample in Self.orderSamples { try await check(sample, on: client) }
            }
            try await Application(router: hurried.router()).test(.router) { client in
                try await check(Self.slowOrder, on: client)
                stock.releaseSlowProduct()
                // The saga goes on after the 202 and completes: its timeline still conforms.
                try await check(Sample(.get, "/sagas/{id}", uri: "/sagas/order-slow-1", expect: .ok), on: client)
            }
        }
    }

    // MARK: checking one exchange

    /// A request to send and the status it should get.
    struct Sample: Sendable, CustomStringConvertible {
        var method: HTTPRequest.Method
        /// The path as the document spells it.
        var path: String
        var uri: String
        var key: String?
        var body: String?
        var expected: HTTPResponse.Status

        init(
            _ method: HTTPRequest.Method, _ path: String, uri: String? = nil, key: String? = nil, body: String? = nil,
            expect expected: HTTPResponse.Status
        ) {
            self.method = method
            self.path = path
            self.uri = uri ?? path
            self.key = key
            self.body = body
            self.expected = expected
        }

        var operation: OpenAPIDocument.Operation { .init(method.rawValue, path) }

        var description: String {
            "\(method) \(uri)\(key.map { " (Idempotency-Key: \($0))" } ?? "") \(body?.prefix(80) ?? "")"
        }
    }

    static let oversizedBody =
        #"{"name": ""# + String(repeating: "a", count: StrictJSON.maxBodySize) + #"", "email": "e@example.com"}"#

    /// Sends the sample and checks the response against the document.
    func check(_ sample: Sample, on client: any TestClientProtocol) async throws {
        var headers: HTTPFields = [:]
        if sample.body != nil { headers[.contentType] = "application/json" }
        if let key = sample.key { headers[try #require(HTTPField.Name("Idempotency-Key"))] = key }
        let response = try await client.execute(
            uri: sample.uri, method: sample.method, headers: headers, body: sample.body.map { ByteBuffer(string: $0) })
        #expect(response.status == sample.expected, "\(sample): \(String(buffer: response.body))")
        let violations = try conformanceViolations(of: response, to: sample.operation)
        #expect(violations == [], "\(sample) answered \(response.status.code)")
    }

    /// Every way the response departs from what the document says the operation answers.
    func conformanceViolations(of response: TestResponse, to operation: OpenAPIDocument.Operation) throws -> [String] {
        guard document.operation(operation) != nil else { return ["\(operation) is not in the document"] }
        let status = response.status.code
        guard let documented = try document.response(operation, status: status) else {
            return ["\(status) is not a status of \(operation): \(document.statuses(of: operation).sorted())"]
        }
        var violations: [String] = []
        for (name, header) in documented["headers"]?.objectValue ?? [:] {
            let header = try document.resolve(header)
            guard let fieldName = HTTPField.Name(name), let value = response.headers[fieldName] else {
                if header["required"]?.boolValue == true { violations.append("the header \(name) is missing") }
                continue
            }
            if let schema = header["schema"] {
                violations += try checker.violations(of: .string(value), against: schema, at: name)
            }
        }
        let body = Data(response.body.readableBytesView)
        guard let content = documented["content"]?.objectValue else {
            if !body.isEmpty { violations.append("the body should be empty: \(String(decoding: body, as: UTF8.self))") }
            return violations
        }
        let contentType = response.headers[.contentType] ?? ""
        let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard let media = content[mediaType.lowercased()], let schema = media["schema"] else {
            return violations + ["the content type '\(contentType)' is not one of \(content.keys.sorted())"]
        }
        let value: JSONValue
        switch mediaType {
        case "application/json":
            do {
                value = try JSONValue(json: body)
            } catch {
                return violations + ["the body is not JSON: \(String(decoding: body, as: UTF8.self))"]
            }
        default:
            guard let text = String(data: body, encoding: .utf8) else { return violations + ["the body is not UTF-8"] }
            value = .string(text)
        }
        return violations + (try checker.violations(of: value, against: schema))
    }

    // MARK: the services in process

    static func withUserAPI(_ body: (UserAPI) async throws -> Void) async throws {
        try await withTemporaryDirectory(prefix: "ContractTests") { directory in
            let users = try UserService(path: directory.path(of: "users.sqlite"))
            try await body(UserAPI(users: users))
            try users.close()
        }
    }

    /// order-service's API over a real SQLite saga log and fake participants; `hurried` answers 202
    /// as soon as a saga takes longer than 200 ms.
    static func withOrderAPI(
        _ body: (_ api: OrderAPI, _ hurried: OrderAPI, _ stock: ContractStock) async throws -> Void
    ) async throws {
        try await withTemporaryDirectory(prefix: "ContractTests") { directory in
            let path = directory.path(of: "sagas.sqlite")
            try OrderDatabase.prepare(path: path)
            let store = try SQLiteSagaStore(path: path)
            let orders = try OrderDatabase.Reader(path: path)
            let registry = PrometheusCollectorRegistry()
            var configuration = SagaEngine.Configuration(clock: ImmediateSagaClock(), jitterSeed: 1)
            configuration.metricsFactory = PrometheusMetricsFactory(registry: registry)
            let logger = Logger(label: "contract-tests", factory: { _ in SwiftLogNoOpLogHandler() })
            let engine = SagaEngine(store: store, configuration: configuration, logger: logger)
            let stock = ContractStock()
            let definition = PlaceOrderSaga.definition(
                users: ContractUsers(), stock: stock, options: StepOptions(retry: .exponential(maxAttempts: 3)))
            try engine.register(definition)
            let api = OrderAPI(engine: engine, definition: definition, orders: orders, registry: registry)
            let hurried = OrderAPI(
                engine: engine, definition: definition, orders: orders, registry: registry,
                answerWithin: .milliseconds(200))
            try await withRunningSagaEngine(engine) { _ in
                defer { stock.releaseSlowProduct() }
                try await body(api, hurried, stock)
            }
            try orders.close()
            try await store.close()
        }
    }
}

/// A product-service stand-in: products 101 and 102 in stock, each key deducted at most once and
/// refunded by key; a deduction of product 102 waits until the test releases it.
final class ContractStock: StockService {
    struct State {
        var stock: [Int32: Int32] = [101: 20, 102: 20]
        var deducted: [String: (product: Int32, quantity: Int32)] = [:]
        var slowReleased = false
    }

    let state = Mutex(State())

    func releaseSlowProduct() {
        state.withLock { $0.slowReleased = true }
    }

    func deduct(productID: Int32, quantity: Int32, key: String) async throws {
        while productID == 102, !state.withLock({ $0.slowReleased }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        try state.withLock { state in
            guard state.deducted[key] == nil else { return }
            guard let stock = state.stock[productID] else {
                throw NonRetryableError("no product \(productID)", type: "UnknownProduct")
            }
            guard stock >= quantity else { throw NonRetryableError("only \(stock) in stock", type: "OutOfStock") }
            state.stock[productID] = stock - quantity
            state.deducted[key] = (productID, quantity)
        }
    }

    func refund(key: String) async throws {
        state.withLock { state in
            guard let deduction = state.deducted.removeValue(forKey: key) else { return }
            state.stock[deduction.product, default: 0] += deduction.quantity
        }
    }

    func stock(productID: Int32) async throws -> Int32 { state.withLock { $0.stock[productID] ?? 0 } }
}

/// A user-service stand-in knowing users 1 and 2.
struct ContractUsers: UserDirectory {
    func requireUser(id: Int64) async throws {
        guard id == 1 || id == 2 else { throw NonRetryableError("no user \(id)", type: "UnknownUser") }
    }
}
