#if Postgres
import Foundation
import PostgresNIO
import SagaKit

/// A one-dimensional PostgreSQL array parameter whose elements may be `NULL`.
///
/// postgres-nio encodes `[Element]` but not `[Element?]`; the batched append passes nullable columns
/// (a record's step, attempt, payload, error, note and metadata) as arrays of this kind, to `unnest`.
struct NullableArray<Element: PostgresArrayEncodable & PostgresNonThrowingEncodable>: PostgresNonThrowingEncodable,
    PostgresDynamicTypeEncodable, Sendable
where Element: Sendable {
    var elements: [Element?]

    init(_ elements: [Element?]) { self.elements = elements }

    static var psqlType: PostgresDataType { Element.psqlArrayType }
    static var psqlFormat: PostgresFormat { .binary }

    func encode<JSONEncoder: PostgresJSONEncoder>(
        into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>
    ) {
        // The binary array format: dimensions, has-nulls flag, element type, then per dimension its
        // length and lower bound, then each element as a length (-1 for NULL) and its bytes.
        buffer.writeInteger(elements.isEmpty ? 0 : 1, as: Int32.self)
        buffer.writeInteger(elements.contains { $0 == nil } ? 1 : 0, as: Int32.self)
        buffer.writeInteger(Element.psqlType.rawValue)
        guard !elements.isEmpty else { return }
        buffer.writeInteger(Int32(elements.count), as: Int32.self)
        buffer.writeInteger(1, as: Int32.self)
        for element in elements {
            guard let element else {
                buffer.writeInteger(-1, as: Int32.self)
                continue
            }
            let lengthIndex = buffer.writerIndex
            buffer.writeInteger(0, as: Int32.self)
            let start = buffer.writerIndex
            element.encode(into: &buffer, context: context)
            buffer.setInteger(Int32(buffer.writerIndex - start), at: lengthIndex, as: Int32.self)
        }
    }
}

/// How saga rows and records map to the columns of `sagakit_sagas` and `sagakit_records`.
///
/// Times are `timestamptz` (microseconds); errors and metadata `jsonb`, read back as text and decoded
/// here; payloads `bytea`.
enum LogRow {
    static let sagaColumns =
        "id, name, fingerprint, status, created_at, updated_at, last_error::text"
    /// The saga columns qualified by the alias `s`, for joins.
    static let qualifiedSagaColumns =
        "s.id, s.name, s.fingerprint, s.status, s.created_at, s.updated_at, s.last_error::text"
    static let recordColumns =
        "saga_id, seq, at, kind, step, attempt, payload, error::text, note, metadata::text"

    static func summary(_ row: PostgresRow, _ decoder: JSONDecoder, offset: Int = 0) throws -> SagaSummary {
        let cells = row.makeRandomAccess()
        let id = try cells[offset].decode(String.self)
        return SagaSummary(
            id: id,
            name: try cells[offset + 1].decode(String.self),
            fingerprint: try cells[offset + 2].decode(String.self),
            status: SagaStatus(rawValue: try cells[offset + 3].decode(String.self)),
            createdAt: try cells[offset + 4].decode(Date.self),
            updatedAt: try cells[offset + 5].decode(Date.self),
            lastError: try LogColumnCoding.decodeError(
                try cells[offset + 6].decode(String?.self), decoder, what: "last error of saga '\(id)'")
        )
    }

    static func record(_ row: PostgresRow, _ decoder: JSONDecoder) throws -> SagaLogRecord {
        let cells = row.makeRandomAccess()
        let sagaID = try cells[0].decode(String.self)
        let sequence = try cells[1].decode(Int.self)
        return SagaLogRecord(
            sagaID: sagaID,
            sequence: sequence,
            timestamp: try cells[2].decode(Date.self),
            kind: SagaLogRecord.Kind(rawValue: try cells[3].decode(String.self)),
            step: try cells[4].decode(String?.self),
            attempt: try cells[5].decode(Int?.self),
            payload: try cells[6].decode(ByteBuffer?.self).map { Data($0.readableBytesView) },
            error: try LogColumnCoding.decodeError(
                try cells[7].decode(String?.self), decoder, what: "error of record \(sequence) of saga '\(sagaID)'"),
            note: try cells[8].decode(String?.self),
            metadata: try LogColumnCoding.decodeMetadata(
                try cells[9].decode(String?.self), decoder,
                what: "metadata of record \(sequence) of saga '\(sagaID)'")
        )
    }
}
#endif
