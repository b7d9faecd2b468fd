import Foundation
import GRDB
import SagaKit
import SagaKitSQLite
import ShopDemo
import ShopServices
import Subprocess
import Testing

/// The demo's load mode as a real process, killed with SIGKILL again and again while sagas are in
/// flight, restarted on the same data directory each time; then the databases must agree.
@Suite(
    "kill -9", .tags(.load), .timeLimit(.minutes(5)),
    .enabled(if: demoExecutable != nil, "the saga-demo executable is not built beside the tests"))
struct KillNineTests {
    /// Cycles per run; `SAGAKIT_KILL_CYCLES` raises it for soak runs.
    static var cycles: Int { ProcessInfo.processInfo.environment["SAGAKIT_KILL_CYCLES"].flatMap(Int.init) ?? 20 }

    @Test func theStockInvariantSurvivesRepeatedKill9() async throws {
        let directory = try TemporaryDirectory()
        let data = directory.file("data")
        var generator = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 1...1_000_000, using: &generator)
        print("kill -9 cycles: \(Self.cycles), seed \(seed)")
        var resumedTotal = 0
        let demoURL = try #require(demoExecutable)
        let demo = try await executable(at: demoURL)
        for cycle in 1...Self.cycles {
            let killed = try await run(
                demo,
                arguments: [
                    "load", "--until-killed", "--json", "--data-dir", data, "--concurrency", "16", "--fail-rate",
                    "0.1", "--seed", "\(seed &+ UInt64(cycle))",
                ],
                input: .none, output: .sequence, error: .discarded
            ) { execution in
                // Recovery has run once the "resumed" event is out; then let some orders finish, a
                // different number each cycle (none at all in some), and kill the process mid-flight.
                var lines = execution.standardOutput.strings().makeAsyncIterator()
                let resumed = try await Self.line(from: &lines) { $0.contains("\"event\":\"resumed\"") }
                if cycle % 3 != 0 {
                    _ = try await Self.line(from: &lines) { $0.contains("\"event\":\"progress\"") }
                }
                try execution.send(signal: .kill)
                return resumed
            }
            #expect(killed.closureResult != nil, "cycle \(cycle): the demo did not start")
            if let resumed = killed.closureResult, let count = Self.number("resumed", in: resumed) {
                resumedTotal += count
            }
            #expect(
                killed.terminationStatus == .signaled(SIGKILL),
                "cycle \(cycle) ended on its own: \(killed.terminationStatus)")
        }

        // A last run resumes what the last kill left and checks the stock invariant.
        let check = try await runProcess(demoURL, ["check", "--data-dir", data, "--json"])
        #expect(check.status == 0, "\(check.stdout)\n\(check.stderr)")

        // From the databases themselves: every saga ended, and the orders match the completed sagas.
        let store = try SQLiteSagaStore(path: (data as NSString).appendingPathComponent("sagas.sqlite"))
        let unfinished = try await store.sagas(matching: SagaQuery(status: [.running, .compensating, .needsAttention]))
        let completed = try await store.sagas(matching: SagaQuery(status: [.completed], limit: 10_000_000)).count
        let compensated = try await store.sagas(matching: SagaQuery(status: [.compensated], limit: 10_000_000)).count
        try await store.close()
        #expect(unfinished.isEmpty, "\(unfinished.map(\.id))")
        #expect(completed > 0)
        let ordersFile = (data as NSString).appendingPathComponent("orders.sqlite")
        let orders = try Self.scalar("SELECT COUNT(*) FROM orders", in: ordersFile)
        #expect(orders == completed, "orders in the database \(orders), completed sagas \(completed)")
        let invariant = try await Self.invariant(in: data)
        #expect(invariant.holds, "\(invariant)")
        print(
            "kill -9: \(Self.cycles) kills, \(resumedTotal) sagas resumed on restart; \(completed) completed, \(compensated) compensated"
        )
    }

    /// The next line of a child's output that satisfies `predicate`; `nil` if the output ends first.
    static func line(
        from lines: inout SubprocessOutputSequence.StringSequence<UTF8>.AsyncIterator,
        where predicate: (String) -> Bool
    ) async throws -> String? {
        while let line = try await lines.next() {
            if predicate(line) { return line }
        }
        return nil
    }

    static func number(_ key: String, in line: String) -> Int? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            return nil
        }
        if let nested = object[key] as? [String: Any] { return nested[key] as? Int }
        return object[key] as? Int
    }

    /// Reads one number with SQL of the test's own, read-only.
    static func scalar(_ sql: String, in path: String) throws -> Int {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        return try queue.read { db in try Int.fetchOne(db, sql: sql) ?? -1 }
    }

    static func invariant(in data: String) async throws -> StockInvariant {
        let products = try ProductService(path: (data as NSString).appendingPathComponent("products.sqlite"))
        let orders = try OrderService(path: (data as NSString).appendingPathComponent("orders.sqlite"))
        return try await StockInvariant.check(products: products, orders: orders)
    }
}
