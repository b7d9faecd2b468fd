public import Foundation
import HTTPSupport
import HTTPTypes
public import Hummingbird
public import Prometheus
public import SagaKit

/// order-service's HTTP API: `POST /orders` runs the place-order saga and answers with its
/// outcome; `GET /orders/{id}`, `GET /sagas/{id}` (the saga's timeline), health and `/metrics`.
public struct OrderAPI: Sendable {
    let engine: SagaEngine
    let definition: SagaDefinition<PlaceOrder, PlacedOrder>
    let orders: any OrderReading
    let registry: PrometheusCollectorRegistry
    /// How long `POST /orders` waits for the saga before answering 202 with its id.
    public var answerWithin: Duration

    /// Creates the API.
    public init(
        engine: SagaEngine, definition: SagaDefinition<PlaceOrder, PlacedOrder>, orders: any OrderReading,
        registry: PrometheusCollectorRegistry, answerWithin: Duration = .seconds(10)
    ) {
        self.engine = engine
        self.definition = definition
        self.orders = orders
        self.registry = registry
        self.answerWithin = answerWithin
    }

    /// The largest quantity one order may hold.
    public static let maxQuantity: Int32 = 1_000

    /// The routes.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.post("orders") { request, _ in try await placeOrder(request) }
        router.get("orders/:id") { _, context -> PlacedOrder in
            let id = try Self.positiveID(context.parameters.get("id"), what: "an order id")
            guard let order = try await orders.order(id: id) else {
                throw HTTPError(.notFound, message: "no order with id \(id)")
            }
            return order
        }
        router.get("sagas/:id") { _, context -> SagaTimeline in
            // The path parameter arrives percent-encoded: `order-a%3Ab` (as encodeURIComponent writes it)
            // names the saga `order-a:b`.
            let raw = context.parameters.get("id") ?? ""
            let id = raw.removingPercentEncoding ?? raw
            guard let summary = try await engine.summary(of: id) else {
                throw HTTPError(.notFound, message: "no saga with id '\(id)'")
            }
            return SagaTimeline(summary: summary, records: try await engine.history(of: id))
        }
        router.get("health/live") { _, _ in HTTPResponse.Status.ok }
        router.get("health/ready") { _, _ in
            _ = try await engine.summary(of: "readiness-probe")  // the saga log answers
            return HTTPResponse.Status.ok
        }
        router.get("metrics") { _, _ in
            var text = "# HELP orders_created_total Orders created, by product.\n# TYPE orders_created_total counter\n"
            for (product, count) in try await orders.createdByProduct().sorted(by: { $0.key < $1.key }) {
                text += "orders_created_total{product_id=\"\(product)\"} \(count)\n"
            }
            text += registry.emitToString()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
        return router
    }

    static func positiveID(_ text: String?, what: String) throws -> Int64 {
        guard let text, let id = Int64(text), id > 0 else {
            throw HTTPError(.badRequest, message: "\(what) is a positive whole number")
        }
        return id
    }

    /// The `Idempotency-Key` header: 1 to 100 letters, digits and `.-_:`.
    static func idempotencyKey(_ request: Request) throws -> String {
        guard let name = HTTPField.Name("Idempotency-Key"), let key = request.headers[name] else {
            return UUID().uuidString
        }
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: ".-_:"))
        guard (1...100).contains(key.count), key.unicodeScalars.allSatisfy({ allowed.contains($0) && $0.isASCII })
        else {
            throw HTTPError(
                .badRequest, message: "the Idempotency-Key header must be 1 to 100 letters, digits or .-_:")
        }
        return key
    }

    func placeOrder(_ request: Request) async throws -> Response {
        let key = try Self.idempotencyKey(request)
        let order = try await StrictJSON.decode(
            PlaceOrder.self, fields: ["user_id", "product_id", "quantity"], from: request)
        guard order.userID > 0 else { throw HTTPError(.badRequest, message: "'user_id' must be positive") }
        guard order.productID > 0 else { throw HTTPError(.badRequest, message: "'product_id' must be positive") }
        guard (1...Self.maxQuantity).contains(order.quantity) else {
            throw HTTPError(.badRequest, message: "'quantity' must be from 1 to \(Self.maxQuantity)")
        }
        let sagaID = "order-\(key)"
        if let existing = try await loggedInput(of: sagaID), existing != order {
            throw HTTPError(
                .unprocessableContent,
                message: "the Idempotency-Key '\(key)' was used for another order; use a new key for a new order")
        }
        let handle = try await engine.start(definition, id: sagaID, input: order)
        let outcome = try await withThrowingTaskGroup(of: SagaOutcome<PlacedOrder>?.self) { group in
            group.addTask {
                do {
                    return try await handle.outcome()
                } catch let error as SagaError where error.code == .interrupted || error.code == .ownershipLost {
                    // Another order-service sharing the saga log runs it (it was started there, or taken
                    // over from here): still being placed, so the answer is 202 and where to follow it.
                    return nil
                }
            }
            group.addTask {
                try await Task.sleep(for: answerWithin)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        var headers: HTTPFields = [:]
        if let name = HTTPField.Name("Saga-ID") { headers[name] = sagaID }
        switch outcome {
        case .completed(let placed)?:
            headers[.location] = "/orders/\(placed.id)"
            return try Self.json(placed, status: .created, headers: headers)
        case .compensated(let failure)?:
            let status: HTTPResponse.Status =
                failure.cause.type == "UnknownUser" || failure.cause.type == "UnknownProduct"
                ? .unprocessableContent : .conflict
            return try Self.json(
                ErrorBody(message: "order refused, stock refunded: \(failure.cause.message)"),
                status: status, headers: headers)
        default:
            headers[.location] = "/sagas/\(sagaID)"
            return try Self.json(
                Accepted(sagaID: sagaID, status: try await engine.summary(of: sagaID)?.status.rawValue ?? "running"),
                status: .accepted, headers: headers)
        }
    }

    /// The input a saga with this id was started with, if it exists.
    func loggedInput(of sagaID: String) async throws -> PlaceOrder? {
        guard try await engine.summary(of: sagaID) != nil else { return nil }
        let first = try await engine.history(of: sagaID).first
        return try first.map { try $0.decodePayload(as: PlaceOrder.self) }
    }

    /// An order still being placed (or waiting for a person): where to follow it.
    struct Accepted: Codable {
        var sagaID: String
        var status: String

        enum CodingKeys: String, CodingKey {
            case sagaID = "saga_id"
            case status
        }
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status, headers: HTTPFields) throws -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Response(
            status: status, headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

extension PlacedOrder: ResponseEncodable {}

/// A saga's timeline, as `GET /sagas/{id}` answers it.
public struct SagaTimeline: ResponseCodable, Sendable {
    /// One record of the saga log.
    public struct Entry: Codable, Sendable {
        public var sequence: Int
        public var at: Date
        public var kind: String
        public var step: String?
        public var attempt: Int?
        public var error: String?
        public var note: String?
    }

    public var sagaID: String
    public var name: String
    public var status: String
    public var records: [Entry]

    init(summary: SagaSummary, records: [SagaLogRecord]) {
        sagaID = summary.id
        name = summary.name
        status = summary.status.rawValue
        self.records = records.map {
            Entry(
                sequence: $0.sequence, at: $0.timestamp, kind: $0.kind.rawValue, step: $0.step, attempt: $0.attempt,
                error: $0.error.map { "\($0.type): \($0.message)" }, note: $0.note)
        }
    }

    enum CodingKeys: String, CodingKey {
        case sagaID = "saga_id"
        case name, status, records
    }
}
