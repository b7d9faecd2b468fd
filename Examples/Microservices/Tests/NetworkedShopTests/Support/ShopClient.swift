import Foundation
import ShopHarness
import Testing

/// HTTP calls to the services.
struct Client: Sendable {
    var orderPort: Int
    var userPort: Int

    typealias Answer = LoopbackHTTPClient.Answer

    /// Up to 64 connections per service, so that concurrent orders really are concurrent (the shared
    /// client would queue all but 8); 30 s per call, answers up to 1 MiB.
    static let http = LoopbackHTTPClient(configuration: .init(connectionsPerHost: 64))

    /// An order as order-service answers it.
    struct PlacedOrder: Decodable, Equatable {
        var id: Int64
        var sagaID: String

        enum CodingKeys: String, CodingKey {
            case id
            case sagaID = "saga_id"
        }
    }

    func post(_ port: Int, _ path: String, _ body: String, key: String? = nil) async throws -> Answer {
        try await Self.http.post(port, path, body, key: key)
    }

    func get(_ port: Int, _ path: String) async throws -> Answer {
        try await Self.http.get(port, path)
    }

    /// Creates `count` users (ids 1…count in a new user database).
    func createUsers(_ count: Int) async throws {
        for number in 1...count {
            let created = try await post(
                userPort, "/users", #"{"name": "User \#(number)", "email": "user\#(number)@example.com"}"#)
            #expect(created.status == 201, "\(created.body)")
        }
    }

    /// Places `order`; `nil` when the connection failed (order-service was killed under it).
    func place(_ order: TestOrder, port: Int? = nil) async -> Answer? {
        try? await post(port ?? orderPort, "/orders", order.body, key: order.key)
    }

    /// Places `orders` all at once; reports each answer to `arrived` as it comes.
    func placeConcurrently(
        _ orders: [TestOrder], arrived: AsyncStream<String>.Continuation? = nil
    ) -> Task<[String: Answer?], Never> {
        let shop = self
        return Task {
            await withTaskGroup(of: (String, Answer?).self) { group in
                for order in orders {
                    group.addTask {
                        let answer = await shop.place(order)
                        arrived?.yield(order.key)
                        return (order.key, answer)
                    }
                }
                var answers: [String: Answer?] = [:]
                for await (key, answer) in group { answers[key] = answer }
                return answers
            }
        }
    }

    /// Waits until the saga's log shows a failed attempt of `step` (product-service is down), for at
    /// most `limit`.
    func waitForAttempt(_ port: Int, saga: String, step: String, limit: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let answer = try await get(port, "/sagas/\(saga)")
            if answer.status == 200,
                let state = try? JSONDecoder().decode(SagaState.self, from: Data(answer.body.utf8)),
                state.records.contains(where: { $0.kind == "step.attempt_failed" && $0.step == step })
            {
                return
            }
            // A poll interval, not a wait for an event: the loop ends on the saga's own answer.
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("saga \(saga) never logged a failed attempt of \(step)")
    }

    /// A saga's status as `GET /sagas/{id}` answers it, and its timeline.
    struct SagaState: Decodable {
        var status: String
        var records: [Record]

        struct Record: Decodable {
            var kind: String
            var step: String?
        }

        var isFinal: Bool { ["completed", "compensated", "resolved"].contains(status) }
    }

    /// Polls `GET /sagas/{id}` until the saga has finished, for at most `limit`; returns its final
    /// state, or `nil` (with an issue recorded) when it did not finish in time.
    func finalState(_ port: Int, saga: String, limit: Duration = .seconds(90)) async throws -> SagaState? {
        let deadline = ContinuousClock.now + limit
        var last = "never answered"
        while ContinuousClock.now < deadline {
            let answer = try await get(port, "/sagas/\(saga)")
            if answer.status == 200, let state = try? JSONDecoder().decode(SagaState.self, from: Data(answer.body.utf8))
            {
                if state.isFinal { return state }
                last = state.status
            } else {
                last = "\(answer.status) \(answer.body)"
            }
            // A poll interval, not a wait for an event: the loop ends on the saga's own answer.
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("saga \(saga) did not finish within \(limit): \(last)")
        return nil
    }

    /// Every saga's final status, by saga id.
    func finalStatuses(_ port: Int, of orders: [TestOrder]) async throws -> [String: String] {
        var statuses: [String: String] = [:]
        for order in orders {
            statuses[order.sagaID] = try await finalState(port, saga: order.sagaID)?.status ?? "unfinished"
        }
        return statuses
    }
}

/// One order of a test: who orders how many of what, under which `Idempotency-Key`.
struct TestOrder: Sendable, Hashable {
    var key: String
    var userID: Int
    var productID: Int = 101
    var quantity: Int = 1

    var body: String { #"{"user_id": \#(userID), "product_id": \#(productID), "quantity": \#(quantity)}"# }
    /// The saga order-service runs for it.
    var sagaID: String { "order-\(key)" }

    /// `count` orders of one unit of product 101 by `users` users in turn, keys `prefix-1`….
    static func batch(_ prefix: String, count: Int, users: Int) -> [TestOrder] {
        (1...count).map { TestOrder(key: "\(prefix)-\($0)", userID: ($0 - 1) % users + 1) }
    }
}

extension LoopbackHTTPClient.Answer {
    /// The order in a 201 answer.
    var order: Client.PlacedOrder? {
        guard status == 201 else { return nil }
        return try? JSONDecoder().decode(Client.PlacedOrder.self, from: Data(body.utf8))
    }
}
