extension SQLiteSagaStore {
    /// Settings of a ``SQLiteSagaStore``, fixed when it opens its file.
    ///
    /// The defaults favour durability: every commit is synced to disk before ``SQLiteSagaStore/append(_:)``
    /// returns.
    ///
    /// ```swift
    /// var configuration = SQLiteSagaStore.Configuration()
    /// configuration.busyTimeout = .seconds(2)
    /// let store = try SQLiteSagaStore(path: "/var/lib/shop/sagas.sqlite", configuration: configuration)
    /// ```
    public struct Configuration: Sendable {
        /// How hard SQLite works to make a commit survive a power loss (`PRAGMA synchronous`).
        ///
        /// ```swift
        /// configuration.synchronous = .normal
        /// ```
        ///
        /// - Important: Only ``full`` keeps the write-ahead promise across a power loss or kernel crash.
        ///   With ``normal`` a commit survives a crash of the process but the last commits before a
        ///   power loss may vanish, so steps the engine believed logged could run again.
        public struct Synchronous: Hashable, Sendable, CustomStringConvertible {
            private enum Base: String, Hashable, Sendable {
                case full = "FULL"
                case normal = "NORMAL"
            }

            private let base: Base

            private init(_ base: Base) { self.base = base }

            /// Sync the write-ahead log on every commit: durable across power loss. The default.
            public static let full = Synchronous(.full)
            /// Sync only at checkpoints: faster, durable across process crashes but not power loss.
            public static let normal = Synchronous(.normal)

            /// The value given to `PRAGMA synchronous`.
            public var description: String { base.rawValue }
        }

        /// How commits are synced to disk. Default ``Synchronous/full``.
        public var synchronous: Synchronous = .full

        /// How long a write waits for a lock held by another connection before failing with
        /// `SagaStoreError.Code.locked`. Default 5 seconds.
        public var busyTimeout: Duration = .seconds(5)

        /// The largest the database file may grow, in pages (`PRAGMA max_page_count`); `nil` leaves
        /// SQLite's limit. Default `nil`.
        ///
        /// A write that would grow the file past it fails with `SagaStoreError.Code.diskFull`, exactly as
        /// a full disk would, which makes it useful both to cap the log's size and to test disk-full
        /// handling. The page size is SQLite's default, 4096 bytes.
        public var maxPageCount: Int?

        /// How many read-only connections serve concurrent reads (recovery, listings). Default 4.
        public var readerCount: Int = 4

        /// Whether the store opens a log that lost commits it made, accepting the loss. Default `false`.
        ///
        /// The store counts its commits in the database, and after each one records its number, the
        /// commit mark, in the lock file `<path>-sagakit.lock`. A database that ends before the mark
        /// lost committed records: its `-wal` file was deleted or damaged (SQLite ignores every commit
        /// after a damaged one), or an older copy of the database was put in its place. By default
        /// opening such a log fails with `SagaStoreError.Code.logShortened`, naming the lost commits, and
        /// leaves every file untouched. With `true`, the store logs a warning (`opening a shortened saga
        /// log`), opens the log as it is, and moves the mark back to the log's end, so later openings
        /// need no override.
        ///
        /// ```swift
        /// var configuration = SQLiteSagaStore.Configuration()
        /// configuration.acceptsShortenedLog = true  // once, after restoring what could be restored
        /// let store = try SQLiteSagaStore(path: "sagas.sqlite", configuration: configuration)
        /// ```
        ///
        /// - Important: A shortened log has forgotten steps the engine ran. Recovery resumes the affected
        ///   sagas from their shortened histories, so steps that already ran, pivots included, may run
        ///   again, and sagas that had finished may resume. Restore the missing `-wal` file, or the log
        ///   from a backup, if you can; set this for one opening only, after deciding the loss is
        ///   acceptable. With ``Synchronous/normal`` the mark moves only when the store closes cleanly,
        ///   so a log that loses its `-wal` file after a crash is not noticed.
        public var acceptsShortenedLog = false

        /// Creates a configuration with the defaults.
        ///
        /// ```swift
        /// let configuration = SQLiteSagaStore.Configuration()
        /// ```
        public init() {}
    }
}
