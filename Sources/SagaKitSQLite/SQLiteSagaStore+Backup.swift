import Foundation
import GRDB
import SagaKit

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

// MARK: - Backup

extension SQLiteSagaStore {
    /// Writes a consistent copy of the whole log to a new file, while the store keeps running.
    ///
    /// The copy is SQLite's online backup of one snapshot of the log, taken when the backup starts:
    /// every append that returned before the call is in it, with its saga's records as they stood, and
    /// appends keep committing meanwhile (they are not in the copy). The copy is a single,
    /// self-contained file, with no `-wal` file to keep with it; open it with ``init(path:configuration:logger:)``
    /// like any log (the application's tables in the same file are copied too). Unlike a copy of the
    /// database file alone, it never misses commits still in the `-wal` file.
    ///
    /// ```swift
    /// try await store.backup(to: "/var/backups/shop/sagas-\(day).sqlite")
    /// ```
    ///
    /// - Important: To restore a backup, stop the engine, and put the copy in place of the log's
    ///   database file, deleting the log's `-wal` and `-shm` files. The copy ends before the commits made
    ///   after it, so opening it where the log was fails with `SagaStoreError.Code.logShortened` until
    ///   you accept that loss (``Configuration/acceptsShortenedLog``): sagas that progressed after the
    ///   backup resume from where the copy left them, and may run steps again.
    /// - Parameter path: The file to create. Its directory must exist; the file must not.
    /// - Throws: `SagaStoreError`: `cannotOpen` (the file exists, or its directory does not), `diskFull`,
    ///   `readOnly`, `io` (also when the store is closed). A failed backup removes what it wrote.
    public func backup(to path: String) async throws {
        try checkOpen()
        // Create the file, refusing one that exists: a backup never overwrites anything.
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let code = errno
            let reason = String(cString: strerror(code))
            switch code {
            case EEXIST:
                throw SagaStoreError(
                    .cannotOpen, path: path,
                    message:
                        "cannot back up the saga log '\(self.path)' to '\(path)': the file exists; a backup never overwrites one"
                )
            case EROFS:
                throw SagaStoreError(.readOnly, path: path, message: "cannot create the backup '\(path)': \(reason)")
            default:
                throw SagaStoreError(.cannotOpen, path: path, message: "cannot create the backup '\(path)': \(reason)")
            }
        }
        closeDescriptor(descriptor)
        do {
            var options = GRDB.Configuration()
            options.label = "SagaKit.SQLiteSagaStore.backup"
            let destination = try DatabaseQueue(path: path, configuration: options)
            do {
                // A read transaction on the pool is one snapshot: the copy is consistent however many
                // appends commit while it runs.
                try await pool.read { source in
                    try destination.writeWithoutTransaction { try source.backup(to: $0) }
                }
                try destination.close()
            } catch {
                try? destination.close()
                throw error
            }
        } catch {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                try? FileManager.default.removeItem(atPath: path + suffix)
            }
            if error is CancellationError { throw error }
            throw SagaStoreError.mapping(
                error, path: path, busyTimeout: configuration.busyTimeout,
                doing: "backing up the saga log '\(self.path)'")
        }
    }
}

/// `close(2)`, out of reach of `SQLiteSagaStore.close()`.
private func closeDescriptor(_ descriptor: Int32) {
    close(descriptor)
}
