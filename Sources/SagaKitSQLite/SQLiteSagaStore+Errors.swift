import GRDB
import SagaKit

extension SagaStoreError {
    /// Translates an SQLite error into the store error an operator can act on.
    ///
    /// `SagaStoreError`s pass through; anything that is not an SQLite error becomes `io`.
    static func mapping(_ error: any Error, path: String, busyTimeout: Duration, doing action: String) -> SagaStoreError
    {
        if var error = error as? SagaStoreError {
            if error.path == nil { error.path = path }
            return error
        }
        guard let error = error as? DatabaseError else {
            return SagaStoreError(.io, path: path, message: "\(action) failed: \(error)")
        }
        let detail = error.message ?? "\(error.resultCode)"
        switch error.resultCode {
        case .SQLITE_NOTADB:
            return SagaStoreError(
                .notADatabase, path: path,
                message: "'\(path)' is not an SQLite database (\(detail)); it was left untouched")
        case .SQLITE_CORRUPT:
            return SagaStoreError(
                .corrupt, path: path,
                message: "the saga log '\(path)' is damaged (\(detail)) while \(action); restore it from a backup")
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return SagaStoreError(
                .locked, path: path,
                message:
                    "another connection held a lock on '\(path)' for longer than the busy timeout (\(busyTimeout)) while \(action)"
            )
        case .SQLITE_FULL:
            return SagaStoreError(
                .diskFull, path: path,
                message:
                    "the disk or the size limit of '\(path)' is full while \(action); nothing of this write was stored")
        case .SQLITE_READONLY:
            return SagaStoreError(
                .readOnly, path: path, message: "'\(path)' cannot be written (\(detail)) while \(action)")
        case .SQLITE_CANTOPEN:
            return SagaStoreError(.cannotOpen, path: path, message: "cannot open '\(path)' (\(detail))")
        default:
            return SagaStoreError(.io, path: path, message: "\(action) on '\(path)' failed: \(error)")
        }
    }
}
