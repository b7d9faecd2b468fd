/// An error from a saga store, named so callers and operators know what to do.
///
/// A failed write wrote nothing, and a store that cannot open a file leaves the file as it was. The
/// one error that reports lost records is ``Code/logShortened``: the log lost them before the store
/// opened it, and the store refuses to run on it.
public struct SagaStoreError: SagaRetryClassifying, Hashable, Sendable, CustomStringConvertible {
    /// The bounded kind of error; usable as a metric label.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Sendable {
            case sagaAlreadyExists, unknownSaga, duplicateRecord, notADatabase, corrupt, locked, inUse, diskFull
            case readOnly, cannotOpen, unsupportedLogFormat, logShortened, unsupported, io, ownershipLost
        }

        let base: Base

        /// A saga with that id already exists.
        public static let sagaAlreadyExists = Code(base: .sagaAlreadyExists)
        /// An append without a creation names a saga the store does not hold.
        public static let unknownSaga = Code(base: .unknownSaga)
        /// A record with that saga id and sequence already exists (two writers on one saga).
        public static let duplicateRecord = Code(base: .duplicateRecord)
        /// The file is not a database.
        public static let notADatabase = Code(base: .notADatabase)
        /// The database file is damaged.
        public static let corrupt = Code(base: .corrupt)
        /// Another connection holds a lock on the database longer than the busy timeout.
        public static let locked = Code(base: .locked)
        /// Another saga engine already owns this log.
        public static let inUse = Code(base: .inUse)
        /// The disk (or the database's size limit) is full.
        public static let diskFull = Code(base: .diskFull)
        /// The database cannot be written.
        public static let readOnly = Code(base: .readOnly)
        /// The file cannot be opened (missing directory, permissions, a directory path).
        public static let cannotOpen = Code(base: .cannotOpen)
        /// The log was written by a newer SagaKit whose format this one does not know.
        public static let unsupportedLogFormat = Code(base: .unsupportedLogFormat)
        /// The log ends before the last commit its store made: committed records are missing.
        ///
        /// A saga log that lost its last commits would make recovery resume sagas from shortened
        /// histories and run again steps, pivots included, that already ran. `SQLiteSagaStore` refuses to
        /// open such a log, and leaves its files untouched, when its `-wal` file is missing or damaged or
        /// an older copy of the database was put in its place; the message says which commits are
        /// missing. Restore the missing file, or the log from a backup, or accept the loss explicitly
        /// (`SQLiteSagaStore.Configuration.acceptsShortenedLog`).
        ///
        /// ```swift
        /// catch let error as SagaStoreError where error.code == .logShortened { print(error.message) }
        /// ```
        public static let logShortened = Code(base: .logShortened)
        /// The store does not support the operation.
        public static let unsupported = Code(base: .unsupported)
        /// Any other I/O failure.
        public static let io = Code(base: .io)
        /// The saga is no longer this engine's: in a ``SharedSagaStore``, another engine claimed it
        /// after this engine's lease ran out. Nothing was written, and retrying cannot help; the engine
        /// stops running the saga (its new owner runs it).
        public static let ownershipLost = Code(base: .ownershipLost)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// The file concerned, if any.
    public var path: String?
    /// A sentence naming the problem.
    public let message: String

    /// Creates a store error.
    public init(_ code: Code, path: String? = nil, message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    /// Whether retrying could help: a lock may be released, space freed or an I/O error pass;
    /// a foreign, damaged or newer file, a read-only one or an unsupported operation stays so.
    public var isRetryable: Bool {
        switch code.base {
        case .locked, .diskFull, .io: true
        default: false
        }
    }

    public var description: String {
        "saga store error (\(code))" + (path.map { " [\($0)]" } ?? "") + ": " + message
    }
}

extension SagaStoreError {
    /// Two errors are equal when their codes are: the code is what callers branch on; the message
    /// and context describe one occurrence.
    ///
    /// ```swift
    /// #expect(first == second)  // both store errors have the same code
    /// ```
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    /// Hashes the code only, consistently with `==`.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
