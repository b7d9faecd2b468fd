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
            // Version 1 is history: this migration writes it as it was, and later ones bump it.
            try db.execute(sql: "INSERT INTO sagakit_meta (key, value) VALUES ('log_format_version', '1')")
        }
        // The commit counter the store bumps in every group commit, compared at opening with the commit
        // mark in the lock file. Logs written before it get it at 0, and no mark yet.
        migrator.registerMigration("sagakit.commit-counter") { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO sagakit_meta (key, value) VALUES ('\(commitCounterKey)', '0')")
        }
        // Log format 2: the records table is named for what it holds, as the API and docs name it
        // (version 1 called it sagakit_events). A version-1 log is migrated in place when a store
        // opens it for writing; an older SagaKit then refuses it as a newer format, by name.
        migrator.registerMigration("sagakit.v2-records") { db in
            try db.execute(
                sql: """
                    ALTER TABLE sagakit_events RENAME TO sagakit_records;
                    UPDATE sagakit_meta SET value = '2' WHERE key = 'log_format_version';
                    """)
        }
        return migrator
    }()

    /// The `sagakit_meta` key of the commit counter.
    static let commitCounterKey = "commit_counter"

    /// The first 16 bytes of every SQLite database file.
    private static let sqliteMagic = Array("SQLite format 3\0".utf8)

    /// Checks, without writing a byte or opening SQLite, that `path` may hold a saga log: it is not a
    /// directory, its directory exists, and a file there is empty or starts like an SQLite database.
    ///
    /// An absent or empty file is fine (it becomes a new log). A file that is not SQLite is refused
    /// before the store takes the file's lock or any connection touches it.
    static func inspectPath(_ path: String) throws(SagaStoreError) {
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
        let header = try readHeader(path)
        guard header.isEmpty || Array(header) == sqliteMagic else {
            throw SagaStoreError(
                .notADatabase, path: path, message: "'\(path)' is not an SQLite database; it was left untouched")
        }
    }

    private static func readHeader(_ path: String) throws(SagaStoreError) -> Data {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SagaStoreError(.cannotOpen, path: path, message: "'\(path)' cannot be read")
        }
        do {
            defer { try? handle.close() }
            return try handle.read(upToCount: sqliteMagic.count) ?? Data()
        } catch {
            throw SagaStoreError(.io, path: path, message: "cannot read '\(path)': \(error)")
        }
    }

    /// Reads, through a read-only connection, the log format and the commit counter of the database
    /// at `path`, which the store owns; `nil` when the file is empty (a new log).
    ///
    /// A file that is not SQLite, is damaged where SQLite reads first, or carries a newer log format is
    /// refused before any connection that could write (or switch the journal mode) touches it. A SQLite
    /// database that holds no saga log yet has the counter 0.
    static func inspect(path: String, configuration: Configuration) throws(SagaStoreError) -> Int? {
        let header = try readHeader(path)
        if header.isEmpty { return nil }
        guard Array(header) == sqliteMagic else {
            throw SagaStoreError(
                .notADatabase, path: path, message: "'\(path)' is not an SQLite database; it was left untouched")
        }
        let found: (version: Int?, commits: Int)
        do {
            var readOnly = GRDB.Configuration()
            readOnly.readonly = true
            readOnly.busyMode = .timeout(configuration.busyTimeout.seconds)
            readOnly.label = "SagaKit.SQLiteSagaStore.inspect"
            let queue = try DatabaseQueue(path: path, configuration: readOnly)
            defer { try? queue.close() }
            found = try queue.read { db in
                (try formatVersion(db, path: path), try commitCounter(db, path: path))
            }
        } catch {
            throw SagaStoreError.mapping(
                error, path: path, busyTimeout: configuration.busyTimeout, doing: "reading the log format version")
        }
        try checkFormat(found.version, path: path)
        return found.commits
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

    /// The recorded commit counter: 0 when the file holds no saga log, or one written before the
    /// counter existed.
    static func commitCounter(_ db: Database, path: String) throws -> Int {
        let hasMeta =
            try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sagakit_meta')"
            ) ?? false
        guard hasMeta,
            let text = try String.fetchOne(
                db, sql: "SELECT value FROM sagakit_meta WHERE key = ?", arguments: [commitCounterKey])
        else {
            return 0
        }
        guard let counter = Int(text), counter >= 0 else {
            throw SagaStoreError(
                .corrupt, path: path, message: "the \(commitCounterKey) of '\(path)' is '\(text)', not a commit number")
        }
        return counter
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
