import Foundation
import ShopHarness
import Synchronization
import Testing

/// order-service replicas sharing one PostgreSQL saga log, as the article's `replicas: 3` runs them:
/// one killed under load, one paused past its lease. Part of the networked shop suite, so that they
/// run one at a time with its other tests.
extension NetworkedShopTests {
    /// A replica's lease and heartbeat in these tests: short, so that a takeover comes within seconds.
    static let leaseSeconds = 3.0
    static let heartbeatSeconds = 0.5
    static var lease: Duration { .milliseconds(Int(leaseSeconds * 1000)) }
    static var heartbeat: Duration { .milliseconds(Int(heartbeatSeconds * 1000)) }

    @Test(.enabled(if: SharedLog.url != nil, SharedLog.skipReason))
    func threeReplicasOnePostgresLogOneKilledUnderLoadEverySagaFinishesOnce() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await SharedLog.with { log in
            // 10 clients per replica, 4 orders each, one after the other: when the third replica dies,
            // about half of its clients have an order in flight. A client whose replica dies sends the order
            // again, with its key, to the first replica, and goes on there.
            let orders = (1...120).map { TestOrder(key: "r-\($0)", userID: ($0 - 1) % 3 + 1) }
            let statuses = try await withReplicas(3, log: log, deductReplyDelay: 150) { shop, replicas in
                try await shop.createUsers(3)
                let assigned = Dictionary(grouping: orders.indices, by: { $0 % 3 })
                let victim = replicas[2]
                let victimSagas = assigned[2, default: []].map { orders[$0].sagaID }
                let deadReplicas = DeadReplicas()
                let load = Task {
                    await withTaskGroup(of: Void.self) { group in
                        for replica in 0..<3 {
                            let mine = assigned[replica, default: []].map { orders[$0] }
                            for client in 0..<10 {
                                let queue = stride(from: client, to: mine.count, by: 10).map { mine[$0] }
                                group.addTask {
                                    for order in queue {
                                        await shop.placeWithFailover(
                                            order, at: replicas[replica].port, failover: replicas[0].port,
                                            dead: deadReplicas)
                                    }
                                }
                            }
                        }
                    }
                }
                // Deductions answer 150 ms late: kill the victim while half its clients wait for one.
                _ = try await log.waitUntil("the victim's sagas in flight") {
                    try await log.activeCount(of: victimSagas) >= 5
                }
                try await victim.kill()
                let killedAt = ContinuousClock.now
                let owners = try await log.owners(of: victimSagas)
                #expect(owners.count == 1, "the victim's sagas have owners \(owners)")
                let dead = try #require(owners.first)
                let orphans = try await log.activeCount(of: victimSagas, owner: dead)
                #expect(orphans > 0, "the victim had no saga in flight when it was killed: the test proves nothing")
                // The survivors sweep every heartbeat and claim what the dead replica left once its
                // lease has run out.
                let takeover = try await log.waitUntil("the survivors' takeover of the dead replica's sagas") {
                    try await log.activeCount(of: victimSagas, owner: dead) == 0
                }
                let tookOver = ContinuousClock.now - killedAt
                await load.value
                let answered = ContinuousClock.now - killedAt
                let finished = try await log.waitUntil("every saga finishing") {
                    try await log.count(
                        "SELECT count(*)::text FROM $schema.sagakit_sagas WHERE status IN ('running', 'compensating')")
                        == 0
                }
                print(
                    "replicas: \(orders.count) orders over 3 replicas; killed one with \(orphans) sagas in flight; "
                        + "taken over \(tookOver) after the kill (lease \(Self.lease), sweep \(Self.heartbeat)); "
                        + "every order answered \(answered) and every saga finished \(ContinuousClock.now - killedAt) after it"
                )
                #expect(takeover != nil && finished != nil)
                #expect(
                    tookOver < Self.lease + Self.heartbeat + .seconds(3),
                    "the takeover took \(tookOver), not the lease plus one sweep")
                // No survivor lost a saga to the other: one writer per saga.
                for survivor in replicas.prefix(2) {
                    let metrics = try await shop.get(survivor.port, "/metrics").body
                    #expect(!metrics.contains("sagakit_sagas_lost_total"), "\(metrics)")
                }
                let recovered = try await replicas.prefix(2).asyncMap { survivor in
                    Client.counter("sagakit_recovered_total", in: try await shop.get(survivor.port, "/metrics").body)
                }.reduce(0, +)
                #expect(recovered >= orphans, "\(recovered) sagas resumed by the survivors, \(orphans) orphaned")
                return try await log.statuses()
            }
            #expect(Set(statuses.keys) == Set(orders.map(\.sagaID)), "orders without a saga, or the reverse")
            try await log.checkLogs()
            let (placed, rows) = try await log.orders()
            try ShopLedger(productsFile: path("products/products.sqlite"), orders: placed, orderRows: rows)
                .check(sagas: statuses, openingStock: Self.replicaOpeningStock)
        }
    }

    @Test(.enabled(if: SharedLog.url != nil, SharedLog.skipReason))
    func aReplicaPausedPastItsLeaseIsFencedOutWhenItWakes() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await SharedLog.with { log in
            let orders = (1...8).map { TestOrder(key: "z-\($0)", userID: ($0 - 1) % 3 + 1) }
            let later = (1...4).map { TestOrder(key: "after-\($0)", userID: 1) }
            let statuses = try await withReplicas(2, log: log, deductReplyDelay: 1000) { shop, replicas in
                try await shop.createUsers(3)
                let (zombie, survivor) = (replicas[0], replicas[1])
                let sagas = orders.map(\.sagaID)
                let placing = Task {
                    await withTaskGroup(of: (String, Client.Answer?).self) { group in
                        for order in orders {
                            group.addTask { (order.key, await shop.place(order, port: zombie.port)) }
                        }
                        var answers: [String: Client.Answer?] = [:]
                        for await (key, answer) in group { answers[key] = answer }
                        return answers
                    }
                }
                // Deductions answer after a second: pause the replica while its sagas wait for them.
                _ = try await log.waitUntil("the zombie's sagas reaching deduct-stock") {
                    try await log.count(
                        "SELECT count(DISTINCT saga_id)::text FROM $schema.sagakit_records WHERE kind = 'step.started' AND step = 'deduct-stock'"
                    ) >= 4
                }
                try zombie.process.pause()
                let pausedAt = ContinuousClock.now
                let owners = try await log.owners(of: sagas)
                let zombieID = try #require(owners.first)
                #expect(owners.count == 1)
                let lostSagas = try await log.activeIDs(of: sagas, owner: zombieID)
                let inFlight = lostSagas.count
                #expect(inFlight >= 4)
                let takeover = try await log.waitUntil("the survivor's takeover of the paused replica's sagas") {
                    try await log.activeCount(of: sagas, owner: zombieID) == 0
                }
                let tookOver = ContinuousClock.now - pausedAt
                _ = try await log.waitUntil("the survivor finishing them") {
                    try await log.activeCount(of: sagas) == 0
                }
                let recordsOfLostSagas = try await log.recordCount(of: lostSagas)
                // The zombie wakes up: the replies it was waiting for are there, and each saga's next
                // write is refused by the fence.
                try zombie.process.resume()
                let lost = try await log.waitUntil("the zombie's writes being refused") {
                    Client.counter("sagakit_sagas_lost_total", in: try await shop.get(zombie.port, "/metrics").body)
                        >= inFlight
                }
                let answers = await placing.value
                let zombieMetrics = try await shop.get(zombie.port, "/metrics").body
                print(
                    "zombie: paused a replica with \(inFlight) sagas in flight; taken over \(tookOver) after the pause "
                        + "(lease \(Self.lease)); on waking, \(Client.counter("sagakit_sagas_lost_total", in: zombieMetrics)) of its writes refused"
                )
                #expect(lost != nil && takeover != nil)
                let survivorMetrics = try await shop.get(survivor.port, "/metrics").body
                #expect(!survivorMetrics.contains("sagakit_sagas_lost_total"), "\(survivorMetrics)")
                #expect(Client.counter("sagakit_recovered_total", in: survivorMetrics) >= inFlight)
                #expect(Client.counter("sagakit_sagas_lost_total", in: zombieMetrics) == inFlight)
                #expect(
                    try await log.recordCount(of: lostSagas) == recordsOfLostSagas,
                    "the zombie wrote to a saga it had lost")
                for (key, answer) in answers {
                    // 201 for an order the zombie had not started before the pause, 202 for one it lost
                    // (the survivor placed it): never a server error.
                    #expect(
                        answer.map { [201, 202].contains($0.status) } == true, "\(key): \(String(describing: answer))")
                }
                // Awake, the zombie is a replica like the other: it places new orders.
                for order in later {
                    #expect(await shop.place(order, port: zombie.port)?.status == 201)
                }
                return try await log.statuses()
            }
            #expect(Set(statuses.keys) == Set((orders + later).map(\.sagaID)))
            try await log.checkLogs()
            let (placed, rows) = try await log.orders()
            try ShopLedger(productsFile: path("products/products.sqlite"), orders: placed, orderRows: rows)
                .check(sagas: statuses, openingStock: Self.replicaOpeningStock)
        }
    }

    // MARK: Helpers

    static let replicaOpeningStock = 1_000

    /// Runs product-service (deductions answered `deductReplyDelay` ms late), user-service and `count`
    /// order-service replicas on `log` around `body`.
    func withReplicas<Result: Sendable>(
        _ count: Int, log: SharedLog, deductReplyDelay: Int,
        _ body: @Sendable (Client, [RunningService]) async throws -> Result
    ) async throws -> Result {
        let products = [
            "--port", "0", "--data-dir", path("products"), "--opening-stock", "\(Self.replicaOpeningStock)",
            "--deduct-reply-delay-ms", "\(deductReplyDelay)",
        ]
        return try await withService("product-service", products) { product in
            try await withService("user-service", ["--port", "0", "--data-dir", path("users")]) { user in
                let arguments = [
                    "--port", "0", "--database-url", log.serviceURL, "--product-service",
                    "127.0.0.1:\(product.port)", "--user-service", "http://127.0.0.1:\(user.port)",
                    "--lease-seconds", "\(Self.leaseSeconds)", "--heartbeat-seconds", "\(Self.heartbeatSeconds)",
                ]
                return try await withReplicas(count, arguments: arguments, started: []) { replicas in
                    try await body(Client(orderPort: replicas[0].port, userPort: user.port), replicas)
                }
            }
        }
    }

    private func withReplicas<Result: Sendable>(
        _ count: Int, arguments: [String], started: [RunningService],
        _ body: @Sendable ([RunningService]) async throws -> Result
    ) async throws -> Result {
        guard started.count < count else { return try await body(started) }
        return try await withService("order-service", arguments) { replica in
            try await withReplicas(count, arguments: arguments, started: started + [replica], body)
        }
    }
}

/// The replicas a client has seen die, so that it sends no more orders there (as a load balancer
/// takes a dead endpoint out; the HTTP client would otherwise wait out its connect timeout each time).
final class DeadReplicas: Sendable {
    private let ports = Mutex(Set<Int>())

    func contains(_ port: Int) -> Bool { ports.withLock { $0.contains(port) } }
    func insert(_ port: Int) { _ = ports.withLock { $0.insert(port) } }
}

extension Client {
    /// Places `order` at `port` (unless it is known dead); when the connection fails (the replica died
    /// under it), sends it again with its key to `failover` until an answer comes; then, for a 202,
    /// follows the saga there until it has finished.
    func placeWithFailover(_ order: TestOrder, at port: Int, failover: Int, dead: DeadReplicas) async {
        var target = dead.contains(port) ? failover : port
        var answer = await place(order, port: target)
        if answer == nil { dead.insert(target) }
        while answer == nil {
            target = failover
            answer = await place(order, port: failover)
        }
        if answer?.status == 202 {
            _ = try? await finalState(target, saga: order.sagaID)
        }
    }

    /// The sum of a Prometheus counter's samples over all its labels in a `/metrics` text (0 if absent).
    static func counter(_ name: String, in text: String) -> Int {
        text.split(separator: "\n").filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }.compactMap {
            $0.split(separator: " ").last.flatMap { Double($0) }.map { Int($0) }
        }.reduce(0, +)
    }
}

extension Sequence where Element: Sendable {
    /// The results of `transform` on each element, one after the other.
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
