import SagaKit
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Exclusive ownership of a saga log, held while a store is open, so that a second engine, in this
/// process or another, cannot recover the same sagas.
///
/// Ownership belongs to the database file itself, not to the path that reached it: a symbolic link or
/// a hard link to an owned log is refused too. Three locks make it so:
///
/// - In this process, a table of the log files that stores opened, keyed by device and inode number
///   (``OpenLogFiles``), refuses a second store before it opens anything.
/// - Across processes, on Linux, an `flock` on a descriptor opened on the database file itself. On
///   Linux, `flock` locks are independent of the POSIX (`fcntl`) locks SQLite takes on the same file,
///   and belong to the open file description, so they neither disturb SQLite nor are dropped when
///   SQLite closes one of its own descriptors. (On Darwin the two kinds of lock interact, so there the
///   sidecar below is the cross-process lock, and a hard link is only caught within one process.)
/// - An `flock` on the sidecar file `<resolved path>-sagakit.lock`, where symbolic links in the path
///   are resolved, as SQLite does for its `-wal` file. It is what SagaKit took before it locked the
///   database file, so an older SagaKit on the same path is kept out too; and the sidecar holds the
///   log's commit mark (``LogSidecar``).
///
/// The kernel drops every one of these locks when the process dies: a crash never leaves a stale
/// owner. The sidecar file is left in place when the store closes; deleting it while another process
/// waits on it would let two owners hold locks on different inodes.
struct OwnershipLock: ~Copyable {
    /// The database file's device and inode.
    let identity: FileIdentity
    /// The lock file, which also holds the commit mark.
    let sidecar: LogSidecar
    /// The database path with symbolic links resolved: where SQLite puts the `-wal` file.
    let resolvedPath: String

    /// Takes ownership of the log at `logPath`, creating an empty database file if there is none, or
    /// throws `inUse` when another store, in this process or another, owns the file.
    init(logPath: String) throws(SagaStoreError) {
        let identity = try OpenLogFiles.acquire(logPath)
        do {
            let resolvedPath = try Self.resolve(logPath)
            self.sidecar = try LogSidecar(logPath: logPath, lockPath: resolvedPath + "-sagakit.lock")
            self.resolvedPath = resolvedPath
        } catch {
            OpenLogFiles.release(identity)
            throw error
        }
        self.identity = identity
    }

    /// Releases the locks when the value goes away.
    deinit {
        sidecar.release()
        OpenLogFiles.release(identity)
    }

    private static func resolve(_ path: String) throws(SagaStoreError) -> String {
        guard let resolved = realpath(path, nil) else {
            throw SagaStoreError(
                .cannotOpen, path: path,
                message: "cannot resolve the path '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// A file's identity: what stays the same whichever path or link reaches it.
struct FileIdentity: Hashable, Sendable {
    let device: UInt64
    let inode: UInt64

    init(_ status: stat) {
        device = UInt64(truncatingIfNeeded: status.st_dev)
        inode = UInt64(truncatingIfNeeded: status.st_ino)
    }
}

/// The log files stores of this process opened, by identity, with the descriptors opened on them.
///
/// A descriptor opened on a database file is never closed while the file exists: on every system,
/// closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included
/// (those of this store's connections, and of any connection the application keeps on the same file).
/// So the table keeps the descriptor, unlocked, once its store closes, and reuses it when a store opens
/// the file again; a descriptor is closed only once its file has been deleted (no link left), which
/// keeps the table as small as the set of log files that exist.
enum OpenLogFiles {
    private struct Entry {
        /// Descriptors on the file; the first carries the `flock`. More than one only when the file was
        /// replaced while a store was opening it.
        var descriptors: [Int32]
        /// The path the owning store opened, or `nil` while no store of this process owns the file.
        var ownerPath: String?
    }

    private static let entries = Mutex<[FileIdentity: Entry]>([:])

    /// Takes the file at `path`, creating it empty if it does not exist.
    static func acquire(_ path: String) throws(SagaStoreError) -> FileIdentity {
        try entries.withLock { (entries) throws(SagaStoreError) -> FileIdentity in
            reclaim(&entries)
            while true {
                var status = stat()
                guard stat(path, &status) == 0 else {
                    let code = errno
                    guard code == ENOENT else { throw failure(code, path: path, doing: "read the status of") }
                    // Create, then lock, like any other file. Without O_EXCL: a concurrent creator opens
                    // the same new file, and the `flock` decides between the two; and a symbolic link
                    // to a file that does not exist yet creates its target, as SQLite would.
                    let created = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o644)
                    guard created >= 0 else {
                        let code = errno
                        if code == EINTR { continue }
                        throw failure(code, path: path, doing: "create")
                    }
                    try keep(created, in: &entries, path: path)
                    continue
                }
                guard status.st_mode & S_IFMT == S_IFREG else {
                    throw SagaStoreError(.cannotOpen, path: path, message: "'\(path)' is not a regular file")
                }
                let identity = FileIdentity(status)
                if let entry = entries[identity] {
                    if let owner = entry.ownerPath {
                        let name = owner == path ? "" : " (opened as '\(owner)', the same file)"
                        throw SagaStoreError(
                            .inUse, path: path,
                            message:
                                "another SQLiteSagaStore in this process already owns the saga log '\(path)'\(name); two engines on one log would both recover the same sagas"
                        )
                    }
                } else {
                    let opened = open(path, O_RDONLY | O_CLOEXEC)
                    guard opened >= 0 else {
                        let code = errno
                        if code == ENOENT || code == EINTR { continue }
                        throw failure(code, path: path, doing: "open")
                    }
                    // The file may have been replaced since `stat`: look again, then.
                    guard try keep(opened, in: &entries, path: path) == identity else { continue }
                }
                guard let descriptor = entries[identity]?.descriptors.first else { continue }
                try lockDatabaseFile(descriptor, path: path)
                entries[identity]?.ownerPath = path
                return identity
            }
        }
    }

    /// Gives up ownership; the descriptor stays open, unlocked.
    static func release(_ identity: FileIdentity) {
        entries.withLock { entries in
            guard let descriptor = entries[identity]?.descriptors.first else { return }
            #if os(Linux)
                flock(descriptor, LOCK_UN)
            #else
                _ = descriptor
            #endif
            entries[identity]?.ownerPath = nil
        }
    }

    /// Records a descriptor under its file's identity, and returns the identity.
    @discardableResult
    private static func keep(_ descriptor: Int32, in entries: inout [FileIdentity: Entry], path: String)
        throws(SagaStoreError) -> FileIdentity
    {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            // Not seen in practice on a descriptor just opened. It is left open rather than closed, for
            // the reason above.
            throw failure(errno, path: path, doing: "read the status of")
        }
        let identity = FileIdentity(status)
        entries[identity, default: Entry(descriptors: [])].descriptors.append(descriptor)
        return identity
    }

    /// Closes the descriptors of unowned files that no longer exist.
    private static func reclaim(_ entries: inout [FileIdentity: Entry]) {
        for (identity, entry) in entries where entry.ownerPath == nil {
            var status = stat()
            if let first = entry.descriptors.first, fstat(first, &status) == 0, status.st_nlink > 0 { continue }
            for descriptor in entry.descriptors { close(descriptor) }
            entries[identity] = nil
        }
    }

    /// Takes the cross-process lock on the database file itself (Linux; see ``OwnershipLock``).
    private static func lockDatabaseFile(_ descriptor: Int32, path: String) throws(SagaStoreError) {
        #if os(Linux)
            while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EWOULDBLOCK {
                    throw SagaStoreError(
                        .inUse, path: path,
                        message:
                            "another SQLiteSagaStore (in another process) already owns the saga log '\(path)', through this path or another name of the same file; two engines on one log would both recover the same sagas"
                    )
                }
                throw SagaStoreError(
                    .io, path: path, message: "cannot lock '\(path)': \(String(cString: strerror(code)))")
            }
        #endif
    }

    private static func failure(_ code: Int32, path: String, doing action: String) -> SagaStoreError {
        let reason = String(cString: strerror(code))
        switch code {
        case EROFS: return SagaStoreError(.readOnly, path: path, message: "cannot \(action) '\(path)': \(reason)")
        case EIO: return SagaStoreError(.io, path: path, message: "cannot \(action) '\(path)': \(reason)")
        default: return SagaStoreError(.cannotOpen, path: path, message: "cannot \(action) '\(path)': \(reason)")
        }
    }
}

/// The sidecar file `<resolved path>-sagakit.lock`: an `flock` held while a store owns the log, and
/// the log's commit mark.
///
/// The commit mark is the number of the last commit the store made, kept outside the database and its
/// `-wal` file so that a log that lost commits (a deleted or damaged `-wal`, an older copy restored in
/// place) can be told from a complete one: the database keeps its own counter of commits in
/// `sagakit_meta`, and a database whose counter is behind the mark has lost the commits in between.
/// The mark is written after the commit it counts is durable, with a plain `pwrite` and no `fsync`: a
/// power cut can leave it behind the database (which is accepted), never ahead of it.
///
/// The mark is one line of 36 bytes at the start of the file, `sagakit-commit ` and the counter in 20
/// zero-padded decimal digits: readable with `cat`. An empty file (as SagaKit left it before it kept a
/// mark) holds no mark.
final class LogSidecar: Sendable {
    /// What the sidecar says about the log's last commit.
    enum Mark: Equatable {
        /// No mark: a new sidecar, or one written by a SagaKit that kept none.
        case none
        case commit(Int)
        /// Something else than a mark.
        case unreadable(String)
    }

    /// The sidecar's path.
    let path: String
    private let logPath: String
    private let descriptor: Mutex<Int32>

    private static let prefix = Array("sagakit-commit ".utf8)
    private static let digits = 20
    private static let length = prefix.count + digits + 1

    /// Opens (creating) the sidecar and takes its `flock`, or throws `inUse`.
    init(logPath: String, lockPath: String) throws(SagaStoreError) {
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let code = errno
            let reason = String(cString: strerror(code))
            throw SagaStoreError(
                code == EROFS ? .readOnly : .cannotOpen, path: logPath,
                message: "cannot create the lock file '\(lockPath)': \(reason)")
        }
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            close(descriptor)
            if code == EWOULDBLOCK {
                throw SagaStoreError(
                    .inUse, path: logPath,
                    message:
                        "another SQLiteSagaStore (in this or another process) already owns the saga log '\(logPath)' (its lock file '\(lockPath)' is locked); two engines on one log would both recover the same sagas"
                )
            }
            throw SagaStoreError(
                .io, path: logPath, message: "cannot lock '\(lockPath)': \(String(cString: strerror(code)))")
        }
        self.path = lockPath
        self.logPath = logPath
        self.descriptor = Mutex(descriptor)
    }

    /// Reads the mark.
    func readMark() -> Mark {
        descriptor.withLock { descriptor -> Mark in
            var buffer = [UInt8](repeating: 0, count: 64)
            let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
            guard count >= 0 else { return .unreadable(String(cString: strerror(errno))) }
            if count == 0 { return .none }
            let bytes = buffer[0..<count]
            guard count >= Self.length, bytes.starts(with: Self.prefix), bytes[Self.length - 1] == UInt8(ascii: "\n"),
                let value = Int(String(decoding: bytes[Self.prefix.count..<Self.length - 1], as: UTF8.self))
            else {
                return .unreadable("it does not start with a commit mark")
            }
            return .commit(value)
        }
    }

    /// Writes the mark; with `sync`, waits until it is on disk. Returns the error, if any.
    @discardableResult
    func writeMark(_ value: Int, sync: Bool = false) -> String? {
        var line = Self.prefix + [UInt8](repeating: UInt8(ascii: "0"), count: Self.digits) + [UInt8(ascii: "\n")]
        var rest = max(0, value)
        var index = Self.length - 2
        while rest > 0, index >= Self.prefix.count {
            line[index] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
            index -= 1
        }
        return descriptor.withLock { descriptor -> String? in
            guard descriptor >= 0 else { return "the lock file is closed" }
            let written = line.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
            guard written == Self.length else {
                return written < 0 ? String(cString: strerror(errno)) : "a short write"
            }
            if sync {
                // Drops what an older version may have left after the mark.
                guard ftruncate(descriptor, off_t(Self.length)) == 0, fsync(descriptor) == 0 else {
                    return String(cString: strerror(errno))
                }
            }
            return nil
        }
    }

    /// Releases the `flock` and closes the file; later writes do nothing.
    func release() {
        descriptor.withLock { descriptor in
            guard descriptor >= 0 else { return }
            flock(descriptor, LOCK_UN)
            close(descriptor)
            descriptor = -1
        }
    }
}
