#if Postgres
import Foundation
import PostgresNIO
import SagaKit

extension SagaStoreError {

    /// Translates a PostgreSQL or connection error into the store error an operator can act on.
    ///
    /// `SagaStoreError`s pass through (with the endpoint added); the message names the server and
    /// database and the cause, never the password.
    static func mapping(_ error: any Error, endpoint: String, doing action: String) -> SagaStoreError {
        if var error = error as? SagaStoreError {
            if error.path == nil { error.path = endpoint }
            return error
        }
        if error is ConnectionClosedError {
            return SagaStoreError(
                .io, path: endpoint, message: "\(action) failed: cannot reach PostgreSQL at \(endpoint): \(error)")
        }
        if let error = error as? PostgresTransactionError {
            let inner = error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError
            if let inner { return mapping(inner, endpoint: endpoint, doing: action) }
        }
        guard let error = error as? PSQLError else {
            return SagaStoreError(.io, path: endpoint, message: "\(action) on \(endpoint) failed: \(error)")
        }
        let sqlState = error.serverInfo?[.sqlState] ?? ""
        let detail = error.serverInfo?[.message].map { "\($0) (SQLSTATE \(sqlState))" } ?? describe(error)
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown:
            return SagaStoreError(
                .io, path: endpoint,
                message: "\(action) failed: cannot reach PostgreSQL at \(endpoint): \(describe(error))")
        case .poolClosed:
            return SagaStoreError(.io, path: endpoint, message: "\(action) failed: the store for \(endpoint) is closed")
        case .server:
            break
        default:
            return SagaStoreError(.io, path: endpoint, message: "\(action) on \(endpoint) failed: \(describe(error))")
        }
        switch sqlState {
        case "28P01", "28000":
            return SagaStoreError(
                .cannotOpen, path: endpoint,
                message: "\(action) failed: PostgreSQL at \(endpoint) refused the credentials: \(detail)")
        case "3D000":
            return SagaStoreError(
                .cannotOpen, path: endpoint,
                message: "\(action) failed: the database of \(endpoint) does not exist: \(detail)")
        case "23505":
            return SagaStoreError(.duplicateRecord, path: endpoint, message: "\(action) failed: \(detail)")
        case "40001", "40P01", "55P03", "57014":
            return SagaStoreError(
                .locked, path: endpoint, message: "\(action) on \(endpoint) failed on a lock or conflict: \(detail)")
        case "53100":
            return SagaStoreError(
                .diskFull, path: endpoint,
                message: "the disk of \(endpoint) is full while \(action); nothing of this write was stored: \(detail)")
        case "25006":
            return SagaStoreError(
                .readOnly, path: endpoint, message: "\(endpoint) cannot be written while \(action): \(detail)")
        case "42501":
            return SagaStoreError(
                .readOnly, path: endpoint, message: "\(action) on \(endpoint) lacks a privilege: \(detail)")
        default:
            if sqlState.hasPrefix("08") || sqlState.hasPrefix("57P") {
                return SagaStoreError(
                    .io, path: endpoint,
                    message: "\(action) failed: PostgreSQL at \(endpoint) is unavailable: \(detail)")
            }
            return SagaStoreError(.io, path: endpoint, message: "\(action) on \(endpoint) failed: \(detail)")
        }
    }

    /// A PSQLError's cause in words (its `description` is deliberately generic).
    private static func describe(_ error: PSQLError) -> String {
        if let message = error.serverInfo?[.message] { return message }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}
#endif
