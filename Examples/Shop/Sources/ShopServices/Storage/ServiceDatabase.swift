import Foundation
package import GRDB

/// A failure to open or use one of the shop's database files, with a one-line message.
///
/// Business failures (out of stock, unknown user…) are `NonRetryableError`s with a
/// ``ShopFailure`` type; this error is about files: a path that is not an SQLite database, a database
/// that belongs to another service, a directory that cannot be written.
///
/// ```swift
/// do { _ = try ProductService(path: "/tmp/notes.txt") }
/// catch let error as ShopStorageError { print(error.message) }
/// ```
public struct ShopStorageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file concerned.
    public var path: String
    /// What is wrong, in one line.
    public var message: String

    /// Creates a storage error.
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// Opens a service's own SQLite file the same way for every service: WAL journal, `synchronous = FULL`
/// (a committed stock change or order survives a power loss), a busy timeout, and the service's
/// migrations.
///
/// Each file records which service it belongs to in a `shop_meta` table, so that pointing the
/// product service at the order database, or at somebody else's SQLite file, fails before anything
/// is written. The demo (ShopDemo) opens its own files, and the monolith's, the same way.
package enum ServiceDatabase {
    /// The first 16 bytes of every SQLite database file.
    static let sqliteMagic = Array("SQLite format 3\u{0}".utf8)

    /// Opens (creating if needed) the database of `service` at `path`.
    package static func open(path: String, service: String, migrator: DatabaseMigrator) throws -> DatabasePool {
        try inspect(path: path, service: service)
        var configuration = Configuration()
        configuration.label = "ShopServices.\(service)"
        configuration.journalMode = .wal
        configuration.busyMode = .timeout(5)
        configuration.maximumReaderCount = 4
        do {
            let pool = try DatabasePool(path: path, configuration: configuration)
            try pool.writeWithoutTransaction { db in
                // GRDB's WAL setup chose NORMAL; the shop wants every commit synced.
                try db.execute(sql: "PRAGMA synchronous = FULL")
            }
            var full = DatabaseMigrator()
            full.registerMigration("shop.meta") { db in
                try db.execute(
                    sql: "CREATE TABLE shop_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)")
                try db.execute(
                    sql: "INSERT INTO shop_meta (key, value) VALUES ('service', ?)", arguments: [service])
            }
            try full.migrate(pool)
            try migrator.migrate(pool)
            return pool
        } catch let error as ShopStorageError {
            throw error
        } catch {
            throw ShopStorageError(path: path, message: "cannot open the \(service) database '\(path)': \(error)")
        }
    }

    /// Refuses, without writing anything, a file that is not an SQLite database or that belongs to
    /// something other than `service`. A missing or empty file is fine: it will be created.
    package static func inspect(path: String, service: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return }
        if isDirectory.boolValue {
            throw ShopStorageError(path: path, message: "'\(path)' is a directory, not the \(service) database")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ShopStorageError(path: path, message: "'\(path)' cannot be read")
        }
        let header = (try? handle.read(upToCount: sqliteMagic.count)) ?? Data()
        try? handle.close()
        if header.isEmpty { return }
        guard Array(header) == sqliteMagic else {
            throw ShopStorageError(
                path: path, message: "'\(path)' is not an SQLite database; it was left untouched")
        }
        let owner: String?
        let tables: [String]
        do {
            var readOnly = Configuration()
            readOnly.readonly = true
            readOnly.busyMode = .timeout(5)
            let queue = try DatabaseQueue(path: path, configuration: readOnly)
            defer { try? queue.close() }
            (owner, tables) = try queue.read { db in
                let tables = try String.fetchAll(
                    db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                guard tables.contains("shop_meta") else { return (nil, tables) }
                return (try String.fetchOne(db, sql: "SELECT value FROM shop_meta WHERE key = 'service'"), tables)
            }
        } catch {
            throw ShopStorageError(path: path, message: "cannot read '\(path)': \(error)")
        }
        if tables.isEmpty { return }
        guard let owner else {
            throw ShopStorageError(
                path: path,
                message:
                    "'\(path)' is an SQLite database of another application, not the \(service) database; it was left untouched"
            )
        }
        guard owner == service else {
            throw ShopStorageError(
                path: path,
                message: "'\(path)' is the \(owner) database, not the \(service) database; it was left untouched")
        }
    }
}
