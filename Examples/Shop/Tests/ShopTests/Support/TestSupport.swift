import Foundation
import GRDB
import SagaKit
import SagaKitSQLite
import ShopDemo
import ShopServices
import Subprocess
import Testing

extension Tag {
    @Tag static var services: Self
    @Tag static var saga: Self
    @Tag static var tour: Self
    @Tag static var load: Self
    @Tag static var commandLine: Self
}

/// A fresh directory for one test, removed when the value goes away.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("ShopTests-\(UUID().uuidString)", isDirectory: true).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// A data directory for the shop, checked as the demo checks it.
    func dataDirectory(_ name: String = "data") throws -> DataDirectory {
        try DataDirectory.prepare(file(name))
    }
}

/// Reads a data directory's SQLite files directly, with SQL of its own, so that assertions do not
/// depend on the service code under test. Open it only while the shop is closed.
struct DatabaseFiles {
    let directory: DataDirectory

    private func read<T>(_ file: String, _ body: (Database) throws -> T) throws -> T {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: directory.path(of: file), configuration: configuration)
        defer { try? queue.close() }
        return try queue.read(body)
    }

    /// Units of a product in stock, from `products.sqlite`.
    func stock(_ product: String) throws -> Int {
        try read(ShopFiles.products) { db in
            try Int.fetchOne(db, sql: "SELECT stock FROM products WHERE name = ?", arguments: [product]) ?? -1
        }
    }

    /// The state the product service recorded for a key (`deducted`, `refunded`, `tombstone`), if any.
    func movement(_ key: String) throws -> String? {
        try read(ShopFiles.products) { db in
            try String.fetchOne(
                db, sql: "SELECT state FROM stock_movements WHERE idempotency_key = ?", arguments: [key])
        }
    }

    /// Orders with this idempotency key, from `orders.sqlite`.
    func orders(key: String) throws -> Int {
        try read(ShopFiles.orders) { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM orders WHERE idempotency_key = ?", arguments: [key]) ?? 0
        }
    }

    /// Orders whose key starts with `prefix`.
    func orders(keyPrefix prefix: String) throws -> Int {
        try read(ShopFiles.orders) { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM orders WHERE substr(idempotency_key, 1, ?) = ?",
                arguments: [prefix.utf8.count, prefix]) ?? 0
        }
    }

    /// Per product: units received minus units in stock minus units in confirmed orders (0 everywhere
    /// when the invariant holds).
    func stockImbalance() throws -> [String: Int] {
        let levels = try read(ShopFiles.products) { db in
            try Row.fetchAll(db, sql: "SELECT name, stock, received FROM products").map {
                (name: $0["name"] as String, stock: $0["stock"] as Int, received: $0["received"] as Int)
            }
        }
        let ordered = try read(ShopFiles.orders) { db in
            try Dictionary(
                uniqueKeysWithValues: Row.fetchAll(
                    db, sql: "SELECT product, SUM(quantity) AS units FROM orders GROUP BY product"
                ).map { ($0["product"] as String, $0["units"] as Int) })
        }
        var imbalance: [String: Int] = [:]
        for level in levels {
            imbalance[level.name] = level.received - level.stock - (ordered[level.name] ?? 0)
        }
        return imbalance
    }

    /// The saga log's summaries, read with a store of its own.
    func sagas(_ query: SagaQuery = SagaQuery(limit: .max)) async throws -> [SagaSummary] {
        let store = try SQLiteSagaStore(path: directory.path(of: ShopFiles.sagas))
        do {
            let sagas = try await store.sagas(matching: query)
            try await store.close()
            return sagas
        } catch {
            try? await store.close()
            throw error
        }
    }

    /// One saga's status in the log.
    func status(of sagaID: String) async throws -> SagaStatus? {
        let store = try SQLiteSagaStore(path: directory.path(of: ShopFiles.sagas))
        let summary = try await store.summary(of: sagaID)
        try await store.close()
        return summary?.status
    }

    /// One saga's records.
    func records(of sagaID: String) async throws -> [SagaLogRecord] {
        let store = try SQLiteSagaStore(path: directory.path(of: ShopFiles.sagas))
        let records = try await store.records(of: sagaID)
        try await store.close()
        return records
    }
}

/// The `NonRetryableError` `body` throws; records an issue if it throws something else or nothing.
func shopFailure(
    _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
) async -> NonRetryableError? {
    do {
        try await body()
        Issue.record("expected a NonRetryableError, got success", sourceLocation: sourceLocation)
    } catch let error as NonRetryableError {
        return error
    } catch {
        Issue.record("expected a NonRetryableError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// A finished child process: how it ended and both outputs.
struct ProcessRun: Sendable {
    /// How the child ended: `.exited(code)` or `.signaled(signal)`.
    var reason: TerminationStatus
    var stdout: String
    var stderr: String

    /// The exit code, or the signal's number when a signal ended the child.
    var status: Int32 {
        switch reason {
        case .exited(let code): code
        case .signaled(let signal): signal
        }
    }
}

/// The most either output of a `runProcess` child may hold; more fails the run.
let processOutputLimit = 64 * 1024 * 1024

/// The executable at `url`, as Subprocess names it.
///
/// `Executable.path` takes a swift-system `FilePath`, a module the tests do not import; looking the
/// file's name up in its own directory yields the same path without naming that type.
func executable(at url: URL) async throws -> Executable {
    let path = try await Executable.name(url.lastPathComponent)
        .resolveExecutablePath(in: .custom(["PATH": url.deletingLastPathComponent().path]))
    return .path(path)
}

/// Runs an executable to its end with Subprocess: no input, stdout and stderr collected at once (a
/// full pipe cannot stall the child), and the caller awaits the result. Subprocess reaps the child
/// and reads its pipes with an event loop of its own, so no libdispatch source ever watches them.
func runProcess(_ url: URL, _ arguments: [String]) async throws -> ProcessRun {
    let result = try await run(
        try await executable(at: url), arguments: Arguments(arguments), input: .none,
        output: .string(limit: processOutputLimit), error: .string(limit: processOutputLimit))
    return ProcessRun(
        reason: result.terminationStatus, stdout: result.standardOutput, stderr: result.standardError)
}
