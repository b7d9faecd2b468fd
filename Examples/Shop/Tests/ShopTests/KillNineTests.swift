import Foundation
import GRDB
import SagaKit
import SagaKitSQLite
import ShopServices
import Synchronization
import Testing

/// Collects a child process's standard output line by line (on Foundation's reader thread, never a
/// cooperative one) and lets a test wait for a line.
final class LineStream: Sendable {
    struct State {
        var buffer = Data()
        var lines: [String] = []
        var closed = false
        var waiters:
            [(predicate: @Sendable (String) -> Bool, from: Int, continuation: CheckedContinuation<String?, Never>)] = []
    }

    private let state = Mutex(State())

    init(_ handle: FileHandle) {
        handle.readabilityHandler = { [self] handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                self.close()
            } else {
                self.receive(data)
            }
        }
    }

    private func receive(_ data: Data) {
        let ready = state.withLock { state -> [(CheckedContinuation<String?, Never>, String)] in
            state.buffer.append(data)
            while let newline = state.buffer.firstIndex(of: UInt8(ascii: "\n")) {
                state.lines.append(String(decoding: state.buffer[state.buffer.startIndex..<newline], as: UTF8.self))
                state.buffer.removeSubrange(state.buffer.startIndex...newline)
            }
            return Self.satisfied(&state)
        }
        for (continuation, line) in ready { continuation.resume(returning: line) }
    }

    private func close() {
        let waiting = state.withLock { state -> [CheckedContinuation<String?, Never>] in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters.map(\.continuation)
        }
        for continuation in waiting { continuation.resume(returning: nil) }
    }

    private static func satisfied(_ state: inout State) -> [(CheckedContinuation<String?, Never>, String)] {
        var ready: [(CheckedContinuation<String?, Never>, String)] = []
        state.waiters.removeAll { waiter in
            guard let line = state.lines[waiter.from...].first(where: waiter.predicate) else { return false }
            ready.append((waiter.continuation, line))
            return true
        }
        return ready
    }

    /// The number of complete lines so far.
    var count: Int { state.withLock { $0.lines.count } }

    /// Waits for a line at or after index `from` that satisfies `predicate`; `nil` if output ends first.
    func line(from: Int = 0, where predicate: @escaping @Sendable (String) -> Bool) async -> String? {
        await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
            let now = state.withLock { state -> (String?, Bool) in
                if let line = state.lines[min(from, state.lines.count)...].first(where: predicate) {
                    return (line, true)
                }
                if state.closed { return (nil, true) }
                state.waiters.append((predicate, from, continuation))
                return (nil, false)
            }
            if now.1 { continuation.resume(returning: now.0) }
        }
    }
}

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
        for cycle in 1...Self.cycles {
            let process = Process()
            process.executableURL = demoExecutable
            process.arguments = [
                "load", "--until-killed", "--json", "--data-dir", data, "--concurrency", "16", "--fail-rate", "0.1",
                "--seed", "\(seed &+ UInt64(cycle))",
            ]
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            let lines = LineStream(out.fileHandleForReading)
            try process.run()
            // Recovery has run once the "resumed" event is out; then let some orders finish, a
            // different number each cycle (none at all in some), and kill the process mid-flight.
            let resumed = await lines.line { $0.contains("\"event\":\"resumed\"") }
            #expect(resumed != nil, "cycle \(cycle): the demo did not start")
            if let resumed, let count = Self.number("resumed", in: resumed) { resumedTotal += count }
            if cycle % 3 != 0 {
                _ = await lines.line { $0.contains("\"event\":\"progress\"") }
            }
            kill(process.processIdentifier, SIGKILL)
            let reason = await Self.waitForExit(process)
            #expect(reason == .uncaughtSignal, "cycle \(cycle) ended on its own")
        }

        // A last run resumes what the last kill left and checks the stock invariant.
        let check = try await runProcess(try #require(demoExecutable), ["check", "--data-dir", data, "--json"])
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

    /// Waits for a killed child to be reaped, on a thread of its own.
    static func waitForExit(_ process: Process) async -> Process.TerminationReason {
        await withCheckedContinuation { (continuation: CheckedContinuation<Process.TerminationReason, Never>) in
            Thread.detachNewThread {
                process.waitUntilExit()
                continuation.resume(returning: process.terminationReason)
            }
        }
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
