import Foundation
import GRDB
import SagaKit

extension SQLiteSagaStore {
    /// The versioned schema. Migration identifiers are prefixed so they never collide with the
    /// application's own migrations when it shares the file.
    static let migrator: DatabaseMigrator = {
        // The schema has no foreign keys; do not check the application's tables while migrating.
        var migrator = DatabaseMigrator().disablingDeferredForeignKeyChecks()
        migrator.registerMigration("sagakit.v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE sagakit_sagas (
                        id TEXT PRIMARY KEY NOT NULL,
                        name TEXT NOT NULL,
                        fingerprint TEXT NOT NULL,
                        status TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        last_error TEXT
                    );
                    CREATE INDEX sagakit_sagas_by_status ON sagakit_sagas(status, name, created_at);
                    CREATE TABLE sagakit_events (
                        saga_id TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        at REAL NOT NULL,
                        kind TEXT NOT NULL,
                        step TEXT,
                        attempt INTEGER,
                        payload BLOB,
                        error TEXT,
                        note TEXT,
                        metadata TEXT,
                        PRIMARY KEY (saga_id, seq)
                    ) WITHOUT ROWID;
                    CREATE TABLE sagakit_meta (
                        key TEXT PRIMARY KEY NOT NULL,
                        value TEXT NOT NULL
                    );
                    """
            )
            try db.execute(
                sql: "INSERT INTO sagakit_meta (key, value) VALUES ('log_format_version', ?)",
                arguments: [String(SQLiteSagaStore.logFormatVersion)]
            )
        }
        return migrator
    }()

    /// The first 16 bytes of every SQLite database file.
    private static let sqliteMagic = Array("SQLite format 3\0".utf8)

    /// Checks, without writing a byte, that `path` can hold a saga log this code understands.
    ///
    /// An absent or empty file is fine (it becomes a new log). A file that is not SQLite, is damaged
    /// where SQLite reads first, or carries a newer log format is refused before any connection that
    /// could write (or switch the journal mode) touches it.
    static func inspect(path: String, configuration: Configuration) throws(SagaStoreError) {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        if exists, isDirectory.boolValue {
            throw SagaStoreError(.cannotOpen, path: path, message: "'\(path)' is a directory, not a saga log file")
        }
        if !exists {
            let directory = (path as NSString).deletingLastPathComponent
            var parentIsDirectory: ObjCBool = false
            let parent = directory.isEmpty ? "." : directory
            guard FileManager.default.fileExists(atPath: parent, isDirectory: &parentIsDirectory),
                parentIsDirectory.boolValue
            else {
                throw SagaStoreError(
                    .cannotOpen, path: path,
                    message: "cannot create '\(path)': the directory '\(parent)' does not exist")
            }
            return
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SagaStoreError(.cannotOpen, path: path, message: "'\(path)' cannot be read")
        }
        let header: Data
        do {
            defer { try? handle.close() }
            header = try handle.read(upToCount: sqliteMagic.count) ?? Data()
        } catch {
            throw SagaStoreError(.io, path: path, message: "cannot read '\(path)': \(error)")
        }
        if header.isEmpty { return }
        guard Array(header) == sqliteMagic else {
            throw SagaStoreError(
                .notADatabase, path: path, message: "'\(path)' is not an SQLite database; it was left untouched")
        }
        let version: Int?
        do {
            var readOnly = GRDB.Configuration()
            readOnly.readonly = true
            readOnly.busyMode = .timeout(configuration.busyTimeout.seconds)
            readOnly.label = "SagaKit.SQLiteSagaStore.inspect"
            let queue = try DatabaseQueue(path: path, configuration: readOnly)
            defer { try? queue.close() }
            version = try queue.read { try formatVersion($0, path: path) }
        } catch {
            throw SagaStoreError.mapping(
                error, path: path, busyTimeout: configuration.busyTimeout, doing: "reading the log format version")
        }
        try checkFormat(version, path: path)
    }

    /// The recorded `log_format_version`, or `nil` when the file holds no saga log yet.
    static func formatVersion(_ db: Database, path: String) throws -> Int? {
        // Reading the schema also makes SQLite validate the header and the first pages.
        let hasMeta =
            try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sagakit_meta')"
            ) ?? false
        guard hasMeta else { return nil }
        guard let text = try String.fetchOne(db, sql: "SELECT value FROM sagakit_meta WHERE key = 'log_format_version'")
        else {
            return nil
        }
        guard let version = Int(text) else {
            throw SagaStoreError(
                .corrupt, path: path, message: "the log_format_version of '\(path)' is '\(text)', not a number")
        }
        return version
    }

    static func checkFormat(_ version: Int?, path: String) throws(SagaStoreError) {
        guard let version, version > logFormatVersion else { return }
        throw SagaStoreError(
            .unsupportedLogFormat, path: path,
            message:
                "the saga log '\(path)' has format version \(version), but this SagaKit reads versions up to \(logFormatVersion); upgrade SagaKit to open it (the file was left untouched)"
        )
    }

    /// Checks the format on the writer connection, and tells whether migrations remain to run.
    static func needsMigration(_ db: Database, path: String) throws -> Bool {
        try checkFormat(try formatVersion(db, path: path), path: path)
        return try !migrator.hasCompletedMigrations(db)
    }
}
