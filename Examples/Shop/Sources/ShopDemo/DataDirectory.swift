import Foundation
import GRDB
import ShopServices

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The files of a demo data directory: one SQLite file per service, the saga log, and the demo's own.
///
/// ```swift
/// let products = try ProductService(path: directory.path(of: ShopFiles.products))
/// ```
public enum ShopFiles {
    /// The demo's own database: marks the directory as the demo's and numbers its runs.
    public static let demo = "demo.sqlite"
    /// The product service's database.
    public static let products = "products.sqlite"
    /// The order service's database.
    public static let orders = "orders.sqlite"
    /// The user service's database.
    public static let users = "users.sqlite"
    /// The saga log (``SQLiteSagaStore``).
    public static let sagas = "sagas.sqlite"
    /// The single database of the `monolith` subcommand.
    public static let monolith = "monolith.sqlite"

    static let databases = [demo, products, orders, users, sagas, monolith]
    /// SQLite's companion files, and the saga store's ownership lock.
    static let suffixes = ["", "-wal", "-shm", "-journal", "-sagakit.lock"]

    /// Whether a file name is one the demo writes: one of the databases above, their `-wal`, `-shm`
    /// and `-journal` companions, and the saga log's `-sagakit.lock`.
    public static func isDemoFile(_ name: String) -> Bool {
        databases.contains { database in suffixes.contains { database + $0 == name } }
    }
}

/// Why a data directory cannot be used, in one line.
///
/// ```swift
/// do { _ = try DataDirectory.prepare("/etc") }
/// catch let error as DataDirectoryError { print(error.message) }  // holds files that are not saga-demo's
/// ```
public struct DataDirectoryError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The directory concerned.
    public var path: String
    /// What is wrong, in one line.
    public var message: String

    /// Creates an error.
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// A directory holding the demo's SQLite files, checked before anything is written to it.
///
/// ``prepare(_:)`` accepts a directory that does not exist yet (it is created), an empty directory, or
/// one the demo created before (it holds `demo.sqlite` and nothing but the demo's files). Anything
/// else is refused before a single byte is written: a path that is a file, a directory that cannot be
/// created or written, a directory holding other files, a `demo.sqlite` that is not the demo's.
///
/// ```swift
/// let directory = try DataDirectory.prepare(arguments.dataDirectory ?? DataDirectory.freshPath())
/// print("data directory:", directory.path, directory.isNew ? "(new)" : "(resuming)")
/// ```
public struct DataDirectory: Hashable, Sendable {
    /// The directory's path.
    public let path: String
    /// Whether the directory was created now or was empty (no earlier run to resume).
    public let isNew: Bool

    /// The path of one of the directory's files.
    public func path(of file: String) -> String {
        (path as NSString).appendingPathComponent(file)
    }

    /// A path for a fresh data directory under the system's temporary directory (not created yet).
    public static func freshPath() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return FileManager.default.temporaryDirectory
            .appendingPathComponent("saga-demo-\(formatter.string(from: Date()))-\(suffix)").path
    }

    /// Checks (and if needed creates) a data directory.
    ///
    /// - Throws: ``DataDirectoryError`` naming the problem in one line; the directory and its files
    ///   are left as they were.
    public static func prepare(_ path: String) throws(DataDirectoryError) -> DataDirectory {
        func fail(_ message: String) -> DataDirectoryError { DataDirectoryError(path: path, message: message) }
        guard !path.isEmpty else { throw fail("the data directory path is empty") }
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if let problem = makeDirectories(path) {
                throw fail("cannot create the data directory '\(path)': \(problem)")
            }
            return DataDirectory(path: path, isNew: true)
        }
        guard isDirectory.boolValue else {
            throw fail("the data directory '\(path)' is a file, not a directory")
        }
        guard access(path, R_OK | W_OK | X_OK) == 0 else {
            throw fail("the data directory '\(path)' is not writable: \(String(cString: strerror(errno)))")
        }
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw fail("cannot list the data directory '\(path)'")
        }
        if entries.isEmpty { return DataDirectory(path: path, isNew: true) }
        if let foreign = entries.first(where: { !ShopFiles.isDemoFile($0) }) {
            let others = entries.filter { !ShopFiles.isDemoFile($0) }.count
            throw fail(
                "the data directory '\(path)' holds files that are not saga-demo's ('\(foreign)'\(others > 1 ? " and \(others - 1) more" : "")); use an empty or new directory"
            )
        }
        guard entries.contains(ShopFiles.demo) else {
            throw fail(
                "the data directory '\(path)' holds '\(entries[0])' but no '\(ShopFiles.demo)', so saga-demo did not create it; use an empty or new directory"
            )
        }
        do {
            try ServiceDatabase.inspect(
                path: (path as NSString).appendingPathComponent(ShopFiles.demo), service: DemoState.service)
        } catch {
            throw fail("the data directory '\(path)' was not created by saga-demo: \(error)")
        }
        return DataDirectory(path: path, isNew: false)
    }

    /// `mkdir -p`; returns the reason it failed, or `nil`.
    private static func makeDirectories(_ path: String) -> String? {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var current = ""
        for component in absolute.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0, errno != EEXIST {
                return "\(String(cString: strerror(errno))) ('\(current)')"
            }
            var isDirectory: ObjCBool = false
            if !FileManager.default.fileExists(atPath: current, isDirectory: &isDirectory) || !isDirectory.boolValue {
                return "'\(current)' is not a directory"
            }
        }
        return nil
    }
}

/// The demo's own database in a data directory: marks the directory, and numbers the runs so that
/// every run's saga ids are new.
final class DemoState: Sendable {
    static let service = "saga-demo"
    let database: DatabasePool

    init(path: String) throws {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("saga-demo.v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE runs (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        mode TEXT NOT NULL,
                        started_at REAL NOT NULL
                    )
                    """)
        }
        database = try ServiceDatabase.open(path: path, service: Self.service, migrator: migrator)
    }

    /// Records a new run and returns its number, from 1.
    func beginRun(mode: String) async throws -> Int {
        let now = Date().timeIntervalSince1970
        return try await database.write { db in
            try db.execute(sql: "INSERT INTO runs (mode, started_at) VALUES (?, ?)", arguments: [mode, now])
            return Int(db.lastInsertedRowID)
        }
    }

    func close() throws {
        try database.close()
    }
}
