import Foundation
import Logging
import NIOPosix
import PostgresNIO
import Testing

/// The PostgreSQL database that order-service replicas share in the replica tests, from
/// `SAGAKIT_POSTGRES_URL` (as the SagaKitPostgres tests use it); each test gets a schema of its own,
/// dropped at the end. The tests read the saga log and the orders from it directly.
struct SharedLog: Sendable {
    static let url = ProcessInfo.processInfo.environment["SAGAKIT_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }

    static let skipReason: Comment =
        "SAGAKIT_POSTGRES_URL is not set: start a server with scripts/postgres.sh (in the repository's root) and set it to the URL printed"

    static let logger = Logger(label: "shop.tests.postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    /// `shop_test_<random>`.
    let schema = "shop_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    let connection: PostgresConnection

    /// The URL order-service is given: the server's, with this test's schema.
    var serviceURL: String {
        let base = Self.url ?? ""
        return base + (base.contains("?") ? "&" : "?") + "schema=\(schema)"
    }

    /// Connects, runs `body`, then drops the schema and disconnects.
    static func with<Result: Sendable>(_ body: (SharedLog) async throws -> Result) async throws -> Result {
        let log = try await SharedLog(connection: connect())
        let result: Result
        do {
            result = try await body(log)
        } catch {
            try? await log.dropSchema()
            throw error
        }
        try await log.dropSchema()
        return result
    }

    private init(connection: PostgresConnection) async throws {
        self.connection = connection
    }

    private static func connect() async throws -> PostgresConnection {
        guard let url = url, let components = URLComponents(string: url) else {
            throw SharedLogError(description: "SAGAKIT_POSTGRES_URL is not a URL")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let configuration = PostgresConnection.Configuration(
            host: components.host ?? "127.0.0.1", port: components.port ?? 5432,
            username: components.user ?? "sagakit", password: components.password,
            database: database.isEmpty ? "sagakit" : database, tls: .disable)
        return try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: 1, logger: logger)
    }

    private func dropSchema() async throws {
        defer { Task { [connection] in try? await connection.close() } }
        try await connection.query(
            PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \(schema) CASCADE"), logger: Self.logger)
    }

    /// Runs `sql` (with `$schema` for the test's schema) and returns each row's columns as text.
    func rows(_ sql: String) async throws -> [[String?]] {
        let text = sql.replacingOccurrences(of: "$schema", with: schema)
        var rows: [[String?]] = []
        for try await row in try await connection.query(PostgresQuery(unsafeSQL: text), logger: Self.logger) {
            rows.append(try row.map { try $0.decode(String?.self) })
        }
        return rows
    }

    /// The first column of the first row, as an integer (`-1` for none).
    func count(_ sql: String) async throws -> Int {
        try await rows(sql).first?.first.flatMap { $0.flatMap(Int.init) } ?? -1
    }

    /// Each saga's status, by id.
    func statuses() async throws -> [String: String] {
        var statuses: [String: String] = [:]
        for row in try await rows("SELECT id, status FROM $schema.sagakit_sagas") {
            if let id = row[0], let status = row[1] { statuses[id] = status }
        }
        return statuses
    }

    /// How many of `sagaIDs` are running or compensating, and with `owner`, only those it owns.
    func activeCount(of sagaIDs: [String], owner: String? = nil) async throws -> Int {
        let ids = sagaIDs.map { "'\($0)'" }.joined(separator: ",")
        let owned = owner.map { " AND owner = '\($0)'" } ?? ""
        return try await count(
            "SELECT count(*)::text FROM $schema.sagakit_sagas WHERE id IN (\(ids)) AND status IN ('running', 'compensating')\(owned)"
        )
    }

    /// Those of `sagaIDs` that are running or compensating under `owner`.
    func activeIDs(of sagaIDs: [String], owner: String) async throws -> [String] {
        let ids = sagaIDs.map { "'\($0)'" }.joined(separator: ",")
        return try await rows(
            "SELECT id FROM $schema.sagakit_sagas WHERE id IN (\(ids)) AND status IN ('running', 'compensating') AND owner = '\(owner)'"
        ).compactMap { $0[0] }
    }

    /// How many records the log holds for `sagaIDs`.
    func recordCount(of sagaIDs: [String]) async throws -> Int {
        guard !sagaIDs.isEmpty else { return 0 }
        let ids = sagaIDs.map { "'\($0)'" }.joined(separator: ",")
        return try await count("SELECT count(*)::text FROM $schema.sagakit_records WHERE saga_id IN (\(ids))")
    }

    /// The owners of `sagaIDs`' rows.
    func owners(of sagaIDs: [String]) async throws -> Set<String> {
        let ids = sagaIDs.map { "'\($0)'" }.joined(separator: ",")
        return Set(
            try await rows("SELECT DISTINCT owner::text FROM $schema.sagakit_sagas WHERE id IN (\(ids))").compactMap {
                $0[0]
            })
    }

    /// The orders of product 101: quantity by saga id, and the number of rows.
    func orders() async throws -> (orders: [String: Int], rows: Int) {
        let rows = try await rows("SELECT saga_id, quantity::text FROM $schema.shop_orders WHERE product_id = 101")
        var orders: [String: Int] = [:]
        for row in rows { orders[row[0] ?? ""] = row[1].flatMap(Int.init) }
        return (orders, rows.count)
    }

    /// Records an issue for every saga whose log is not one unbroken run of sequences 1…n, or that
    /// has more than one final record.
    func checkLogs(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let broken = try await rows(
            "SELECT saga_id, count(*)::text, max(seq)::text, min(seq)::text FROM $schema.sagakit_records GROUP BY saga_id HAVING count(*) <> max(seq) OR min(seq) <> 1"
        )
        #expect(broken.isEmpty, "sagas whose records are not 1…n: \(broken)", sourceLocation: sourceLocation)
        let twice = try await rows(
            "SELECT saga_id FROM $schema.sagakit_records WHERE kind IN ('saga.completed', 'saga.compensated') GROUP BY saga_id HAVING count(*) > 1"
        )
        #expect(twice.isEmpty, "sagas that finished twice: \(twice)", sourceLocation: sourceLocation)
    }

    /// Polls (every 50 ms, at most `limit`) until `condition` holds; returns how long it took, or
    /// `nil` with an issue recorded. A poll of another process's state, not a wait for an event here.
    func waitUntil(
        _ what: String, limit: Duration = .seconds(60), sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: () async throws -> Bool
    ) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            if try await condition() { return ContinuousClock.now - start }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("\(what) did not happen within \(limit)", sourceLocation: sourceLocation)
        return nil
    }
}

struct SharedLogError: Error, CustomStringConvertible {
    var description: String
}
