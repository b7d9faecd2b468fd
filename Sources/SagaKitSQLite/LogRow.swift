import Foundation
import GRDB
import SagaKit

/// How saga rows and records map to the columns of `sagakit_sagas` and `sagakit_records`.
///
/// Times are stored as seconds since 1970 (`REAL`), so `datetime(at, 'unixepoch')` reads them;
/// errors and metadata as JSON text, `NULL` when absent or empty.
enum LogRow {
    static let sagaColumns = "id, name, fingerprint, status, created_at, updated_at, last_error"
    private static let recordColumnNames = [
        "saga_id", "seq", "at", "kind", "step", "attempt", "payload", "error", "note", "metadata",
    ]
    static let recordColumns = recordColumnNames.joined(separator: ", ")
    /// The event columns qualified by the alias `e`, for joins.
    static let qualifiedEventColumns = recordColumnNames.map { "e." + $0 }.joined(separator: ", ")

    static func summary(_ row: Row, _ decoder: JSONDecoder) throws -> SagaSummary {
        let id = try row.decode(String.self, atIndex: 0)
        return SagaSummary(
            id: id,
            name: try row.decode(String.self, atIndex: 1),
            fingerprint: try row.decode(String.self, atIndex: 2),
            status: SagaStatus(rawValue: try row.decode(String.self, atIndex: 3)),
            createdAt: Date(timeIntervalSince1970: try row.decode(Double.self, atIndex: 4)),
            updatedAt: Date(timeIntervalSince1970: try row.decode(Double.self, atIndex: 5)),
            lastError: try LogColumnCoding.decodeError(
                try row.decode(String?.self, atIndex: 6), decoder, what: "last error of saga '\(id)'")
        )
    }

    static func record(_ row: Row, _ decoder: JSONDecoder) throws -> SagaLogRecord {
        let sagaID = try row.decode(String.self, atIndex: 0)
        let sequence = try row.decode(Int.self, atIndex: 1)
        return SagaLogRecord(
            sagaID: sagaID,
            sequence: sequence,
            timestamp: Date(timeIntervalSince1970: try row.decode(Double.self, atIndex: 2)),
            kind: SagaLogRecord.Kind(rawValue: try row.decode(String.self, atIndex: 3)),
            step: try row.decode(String?.self, atIndex: 4),
            attempt: try row.decode(Int?.self, atIndex: 5),
            payload: try row.decode(Data?.self, atIndex: 6),
            error: try LogColumnCoding.decodeError(
                try row.decode(String?.self, atIndex: 7), decoder,
                what: "error of record \(sequence) of saga '\(sagaID)'"),
            note: try row.decode(String?.self, atIndex: 8),
            metadata: try LogColumnCoding.decodeMetadata(
                try row.decode(String?.self, atIndex: 9), decoder,
                what: "metadata of record \(sequence) of saga '\(sagaID)'")
        )
    }
}
