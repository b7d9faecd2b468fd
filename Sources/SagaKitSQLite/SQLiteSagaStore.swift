import Foundation
import GRDB
public import Logging
import SQLiteGroupCommit
public import SagaKit
import Synchronization

/// The embedded, durable saga store: one SQLite file in WAL mode, written with group commit.
///
/// Appends from many sagas that arrive while a commit is in flight are written together in the next
/// transaction, so throughput grows with concurrency while every ``append(_:)`` still returns only
/// after the commit holding its records (synced to disk, with the default ``Configuration``).
/// Local steps (`SagaStep.local(_:kind:options:action:compensation:)`) write the
/// application's own tables in the same transaction as their log record.
///
/// The file holds the tables `sagakit_sagas`, `sagakit_records` and `sagakit_meta`, created by GRDB
/// migrations whose identifiers start with `sagakit.`; it may also hold the application's tables.
///
/// ```swift
/// let store = try SQLiteSagaStore(path: "/var/lib/shop/sagas.sqlite", logger: logger)
/// let engine = SagaEngine(store: store, logger: logger)
/// ```
///
/// The log is the database file *and* its `-wal` file: commits are written to the `-wal` file first,
/// and copied into the database file only from time to time (at checkpoints, and by ``close()``).
/// Copy the database, `-wal` and `-shm` files together while no store has the log open, or make a
/// consistent copy while the store runs with ``backup(to:)``; a copy of the database file alone may
/// miss the last commits. The store notices a log that lost commits it made, and refuses to open it
/// (`SagaStoreError.Code.logShortened`): it counts its commits in the database and records the last
/// one in the lock file next to it.
///
/// - Important: A store owns its log exclusively, whatever path reaches the file: a second store on the
///   same file, in this or another process, through the same path, a symbolic link or a hard link,
///   fails with `SagaStoreError.Code.inUse`, because two engines on one log would both recover, and
///   run, the same sagas. The store holds, from opening until ``close()`` (or deinitialization), an
///   advisory `flock` on the database file itself (on Linux) and one on the sidecar file
///   `<path>-sagakit.lock` (with symbolic links in the path resolved), which also holds the commit
///   mark. The locks are advisory: a process that writes the file without SagaKit is not stopped. Keep
///   the file, its `-wal`, `-shm` and `-sagakit.lock` companions together on a local file system (`flock`
///   and WAL are unreliable over network mounts), and open the log always through the same name: SQLite
///   names the `-wal` file after the path it was given, so a hard link has a `-wal` file of its own.
public final class SQLiteSagaStore: SagaStore {
    /// The log format this code writes and the newest it reads, recorded as `log_format_version` in
    /// `sagakit_meta`.
    ///
    /// Opening a file whose recorded version is higher fails with
    /// `SagaStoreError.Code.unsupportedLogFormat` and leaves the file untouched.
    ///
    /// ```swift
    /// print(SQLiteSagaStore.logFormatVersion) // 2
    /// ```
    public static let logFormatVersion = 2

    /// The database file's path.
    public let path: String
    /// The settings the store was opened with.
    public let configuration: Configuration

    let pool: DatabasePool
    let logger: Logger
    /// The group-commit queue every append goes through (see `SQLiteSagaStore+GroupCommit.swift`).
    let groupCommit: GroupCommitQueue<LogCommitter>
    /// Whether the commit mark's failure was logged; it is logged once per store.
    let markFailureLogged = Atomic<Bool>(false)
    /// The commit counter in `sagakit_meta` as of the last group commit; only the writer queue changes
    /// it.
    let commitCounter: Atomic<Int>
    /// The lock file, which holds the commit mark.
    let sidecar: LogSidecar
    /// The database path with symbolic links resolved.
    let resolvedPath: String
    private let ownership: Mutex<OwnershipLock?>

    /// Opens the saga log at `path`, creating it (and its tables) if needed.
    ///
    /// Opening never modifies a file that turns out not to be a saga log this code can use: a file
    /// that is not SQLite, has a newer log format, is damaged where opening reads it, or has lost
    /// commits the store made (its `-wal` file is missing or damaged) is refused before any connection
    /// that could write touches it (damage elsewhere surfaces as `SagaStoreError.Code.corrupt` when it
    /// is read). It never recreates or truncates a file. An existing SQLite database of the application
    /// is fine: the store adds its tables.
    ///
    /// ```swift
    /// var configuration = SQLiteSagaStore.Configuration()
    /// configuration.busyTimeout = .seconds(2)
    /// let store = try SQLiteSagaStore(path: "sagas.sqlite", configuration: configuration, logger: logger)
    /// ```
    ///
    /// - Parameters:
    ///   - path: The database file. Its directory must exist.
    ///   - configuration: Durability, timeouts and limits.
    ///   - logger: Where the store logs opening, closing and failed group commits; `nil` logs nothing.
    /// - Throws: `SagaStoreError`: `cannotOpen` (a directory, a missing directory,
    ///   permissions), `notADatabase`, `corrupt`, `unsupportedLogFormat`, `logShortened` (the log lost
    ///   commits; see ``Configuration/acceptsShortenedLog``), `inUse` (another store owns the log),
    ///   `locked`, `readOnly`, `diskFull` or `io`.
    public init(path: String, configuration: Configuration = .init(), logger: Logger? = nil) throws {
        self.path = path
        self.configuration = configuration
        self.logger = logger ?? Logger(label: "SagaKitSQLite", factory: { _ in SwiftLogNoOpLogHandler() })

        try Self.inspectPath(path)
        let lock = try OwnershipLock(logPath: path)
        // Read only now that the store owns the log: no other store commits between the two readings.
        let logged = try Self.inspect(path: path, configuration: configuration)
        let mark = lock.sidecar.readMark()
        let rewritesMark = try Self.checkCommitMark(
            logged, mark, path: path, lock: lock, configuration: configuration, logger: self.logger)

        var options = GRDB.Configuration()
        options.label = "SagaKit.SQLiteSagaStore"
        options.journalMode = .wal
        options.busyMode = .timeout(configuration.busyTimeout.seconds)
        options.maximumReaderCount = max(1, configuration.readerCount)
        let pool: DatabasePool
        let counter: Int
        do {
            pool = try DatabasePool(path: path, configuration: options)
            let migrate = try pool.writeWithoutTransaction { db in
                // After the pool's WAL setup, which sets synchronous = NORMAL.
                try db.execute(sql: "PRAGMA synchronous = \(configuration.synchronous)")
                if let maxPageCount = configuration.maxPageCount {
                    try db.execute(sql: "PRAGMA max_page_count = \(maxPageCount)")
                }
                return try Self.needsMigration(db, path: path)
            }
            if migrate {
                try Self.migrator.migrate(pool)
            }
            counter = try pool.writeWithoutTransaction { try Self.commitCounter($0, path: path) }
        } catch {
            throw SagaStoreError.mapping(
                error, path: path, busyTimeout: configuration.busyTimeout, doing: "opening the saga log")
        }
        // Move the mark back to where the log ends: for a new log after an older one at the same path,
        // or a shortened log the operator accepted. Synced, so that a power cut cannot bring back the
        // old mark and refuse the log.
        if rewritesMark {
            if let problem = lock.sidecar.writeMark(counter, sync: true) {
                throw SagaStoreError(
                    .io, path: path,
                    message: "cannot write the commit mark to '\(lock.sidecar.path)': \(problem)")
            }
        }
        self.pool = pool
        self.groupCommit = GroupCommitQueue(pool, savepoint: "sagakit_append")
        self.commitCounter = Atomic(counter)
        self.sidecar = lock.sidecar
        self.resolvedPath = lock.resolvedPath
        self.ownership = Mutex(lock)
        self.logger.debug(
            "saga log opened",
            metadata: [
                "path": "\(path)", "synchronous": "\(configuration.synchronous)",
                "log_format_version": "\(Self.logFormatVersion)",
            ]
        )
    }

    /// Compares the log's commit counter with the mark; throws `logShortened` when the log lost commits,
    /// unless the configuration accepts it. Returns whether the mark must be moved to the log's end: for
    /// a new log, an unreadable mark, or a shortened log the configuration accepts.
    private static func checkCommitMark(
        _ logged: Int?,
        _ mark: LogSidecar.Mark,
        path: String,
        lock: borrowing OwnershipLock,
        configuration: Configuration,
        logger: Logger
    ) throws(SagaStoreError) -> Bool {
        switch mark {
        case .none:
            return false
        case .unreadable(let reason):
            if logged != nil {
                logger.warning(
                    "saga log commit mark unreadable; rewriting it",
                    metadata: ["path": "\(path)", "error": "'\(lock.sidecar.path)': \(reason)"])
            }
            return true
        case .commit(let last):
            // An empty file is a new log (SQLite writes the database file's first page before any
            // commit, so a log that held records is never empty); a mark left by an earlier log goes.
            guard let logged else { return last != 0 }
            guard logged < last else { return false }
            let lost =
                "the saga log '\(path)' ends at commit \(logged), but commit \(last) was made (as '\(lock.sidecar.path)' records): the records of the last \(last - logged) commit(s) are missing"
            guard configuration.acceptsShortenedLog else {
                throw SagaStoreError(
                    .logShortened, path: path,
                    message:
                        "\(lost). Its -wal file ('\(lock.resolvedPath)-wal') is missing or damaged, or an older copy of the database was put in its place. Restore the -wal file together with the database file it belongs to, or restore all the log's files from a backup made by backup(to:); or, to accept the loss and open the log as it is, open it once with SQLiteSagaStore.Configuration.acceptsShortenedLog = true. The files were left untouched."
                )
            }
            logger.warning(
                "opening a shortened saga log",
                metadata: [
                    "path": "\(path)",
                    "error":
                        "\(lost); accepted by acceptsShortenedLog, the log is opened as it is and its commit mark moved back to commit \(logged)",
                ])
            return true
        }
    }

    // No deinit: the pool closes its connections when it goes away, even on its own writer queue
    // (where the last reference may drop, after a group commit), and the ownership lock goes with the
    // store. Calling `pool.close()` here could deadlock on that queue.

    /// Waits for the appends already accepted, copies the `-wal` file into the database file, closes the
    /// database and releases the log's ownership.
    ///
    /// After `close()`, the database file alone holds the whole log (unless a reader of another
    /// connection kept the copy from completing), and the `-wal` file is empty. Later calls on the store
    /// throw `SagaStoreError.Code.io`; calling `close()` again does nothing. Deinitializing the store
    /// closes it too, without the copy, but only `close()` tells you when another store may open the
    /// path.
    ///
    /// ```swift
    /// try await store.close()
    /// let reopened = try SQLiteSagaStore(path: store.path)
    /// ```
    public func close() async throws {
        guard groupCommit.close() else { return }
        // The writer queue is serial: this runs after any group commit in flight. The pool closes its
        // writer before its readers, which cannot checkpoint, so without this the last commits would
        // stay in the -wal file.
        let checkpointed = (try? await pool.writeWithoutTransaction { db in try Self.checkpoint(db) }) ?? false
        do {
            try pool.close()
        } catch {
            throw SagaStoreError.mapping(
                error, path: path, busyTimeout: configuration.busyTimeout, doing: "closing the saga log")
        }
        if checkpointed, configuration.synchronous == .normal {
            // With synchronous = NORMAL, a commit is durable only once checkpointed (the checkpoint syncs
            // the database file), so the mark advances only here.
            sidecar.writeMark(commitCounter.load(ordering: .relaxed))
        }
        ownership.withLock { $0 = nil }
        logger.debug("saga log closed", metadata: ["path": "\(path)"])
    }

    /// Copies the whole `-wal` file into the database file and empties it; returns whether it did.
    private static func checkpoint(_ db: Database) throws -> Bool {
        guard let row = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") else { return false }
        let busy: Int = row[0]
        return busy == 0
    }

    /// How many transactions the group-commit writer has committed; fewer than appends when it batched.
    package var committedTransactionCount: Int { groupCommit.committedTransactionCount }

    /// How many writes wait for the next group commit (not counting the one in flight).
    package var queuedWriteCount: Int { groupCommit.queuedWriteCount }

    // MARK: Reading

    /// The summary of one saga, or `nil` if the id is unknown.
    ///
    /// ```swift
    /// let summary = try await store.summary(of: "order-42")
    /// ```
    public func summary(of sagaID: String) async throws -> SagaSummary? {
        try await read("reading saga '\(sagaID)'") { db in
            let statement = try db.cachedStatement(sql: "SELECT \(LogRow.sagaColumns) FROM sagakit_sagas WHERE id = ?")
            statement.setUncheckedArguments([sagaID])
            guard let row = try Row.fetchOne(statement) else { return nil }
            return try LogRow.summary(row, JSONDecoder())
        }
    }

    /// One saga's records, ordered by sequence; empty if the id is unknown.
    ///
    /// ```swift
    /// for record in try await store.records(of: "order-42") { print(record.sequence, record.kind) }
    /// ```
    public func records(of sagaID: String) async throws -> [SagaLogRecord] {
        try await read("reading the records of saga '\(sagaID)'") { db in
            let statement = try db.cachedStatement(
                sql: "SELECT \(LogRow.recordColumns) FROM sagakit_records WHERE saga_id = ? ORDER BY seq"
            )
            statement.setUncheckedArguments([sagaID])
            let decoder = JSONDecoder()
            var records: [SagaLogRecord] = []
            let rows = try Row.fetchCursor(statement)
            while let row = try rows.next() {
                records.append(try LogRow.record(row, decoder))
            }
            return records
        }
    }

    /// Sagas matching a query, oldest first (sagas started at the same instant in the order they were
    /// created).
    ///
    /// ```swift
    /// let stuck = try await store.sagas(matching: SagaQuery(status: [.needsAttention], limit: 50))
    /// ```
    public func sagas(matching query: SagaQuery) async throws -> [SagaSummary] {
        guard query.limit > 0 else { return [] }
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if !query.status.isEmpty {
            let statuses = query.status.map(\.rawValue).sorted()
            conditions.append("status IN (\(Array(repeating: "?", count: statuses.count).joined(separator: ", ")))")
            arguments += StatementArguments(statuses)
        }
        if let name = query.name {
            conditions.append("name = ?")
            arguments += [name]
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments += [query.limit, max(0, query.offset)]
        let sql =
            "SELECT \(LogRow.sagaColumns) FROM sagakit_sagas \(filter) ORDER BY created_at, rowid LIMIT ? OFFSET ?"
        return try await read("listing sagas") { [arguments] db in
            let statement = try db.cachedStatement(sql: sql)
            statement.setUncheckedArguments(arguments)
            let decoder = JSONDecoder()
            var summaries: [SagaSummary] = []
            let rows = try Row.fetchCursor(statement)
            while let row = try rows.next() {
                summaries.append(try LogRow.summary(row, decoder))
            }
            return summaries
        }
    }

    /// The records of every running or compensating saga, oldest saga first, each ordered by sequence:
    /// what recovery resumes.
    ///
    /// Two queries in one read transaction (the saga rows, then all their records ordered by saga and
    /// sequence) give a consistent snapshot however many sagas are active.
    ///
    /// ```swift
    /// let unfinished = try await store.activeSagaRecords()
    /// ```
    public func activeSagaRecords() async throws -> [SagaLogRecords] {
        try await read("loading active sagas") { db in
            let decoder = JSONDecoder()
            let active = "('\(SagaStatus.running.rawValue)', '\(SagaStatus.compensating.rawValue)')"
            var summaries: [SagaSummary] = []
            let sagaRows = try Row.fetchCursor(
                db.cachedStatement(
                    sql:
                        "SELECT \(LogRow.sagaColumns) FROM sagakit_sagas WHERE status IN \(active) ORDER BY created_at, rowid"
                )
            )
            while let row = try sagaRows.next() {
                summaries.append(try LogRow.summary(row, decoder))
            }
            guard !summaries.isEmpty else { return [] }

            var recordsBySaga: [String: [SagaLogRecord]] = [:]
            recordsBySaga.reserveCapacity(summaries.count)
            var currentID: String?
            var current: [SagaLogRecord] = []
            let eventRows = try Row.fetchCursor(
                db.cachedStatement(
                    sql: """
                        SELECT \(LogRow.qualifiedEventColumns)
                        FROM sagakit_records e JOIN sagakit_sagas s ON s.id = e.saga_id
                        WHERE s.status IN \(active)
                        ORDER BY e.saga_id, e.seq
                        """
                )
            )
            while let row = try eventRows.next() {
                let record = try LogRow.record(row, decoder)
                if record.sagaID != currentID {
                    if let currentID { recordsBySaga[currentID] = current }
                    currentID = record.sagaID
                    current = []
                }
                current.append(record)
            }
            if let currentID { recordsBySaga[currentID] = current }
            return summaries.map { SagaLogRecords(summary: $0, records: recordsBySaga[$0.id] ?? []) }
        }
    }

    /// Runs a read on a reader connection, translating failures.
    private func read<T: Sendable>(_ action: String, _ body: @escaping @Sendable (Database) throws -> T) async throws
        -> T
    {
        try checkOpen()
        do {
            return try await pool.read(body)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw SagaStoreError.mapping(error, path: path, busyTimeout: configuration.busyTimeout, doing: action)
        }
    }

    func checkOpen() throws {
        if groupCommit.isClosed {
            throw closedError()
        }
    }

    func closedError() -> SagaStoreError {
        SagaStoreError(.io, path: path, message: "the saga store for '\(path)' is closed")
    }
}
