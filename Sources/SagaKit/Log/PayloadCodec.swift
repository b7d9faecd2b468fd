package import Foundation

/// Encodes and decodes the payloads written to the saga log (JSON).
///
/// One encoder and one decoder serve every call: their settings never change after creation, and
/// Foundation's coders are safe to use from several threads at once. Creating them per call cost a
/// measurable share of a saga's CPU time (see Docs/PERFORMANCE.md).
package enum PayloadCodec {
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    private static let decoder = JSONDecoder()

    package static func encode<T: Encodable>(_ value: T) throws -> Data {
        try encoder.encode(value)
    }

    package static func decode<T: Decodable>(_ type: T.Type, from data: Data, what: String) throws -> T {
        do {
            return try decoder.decode(T.self, from: data)
        } catch {
            throw SagaError(
                .undecodablePayload,
                message: "the logged \(what) no longer decodes as \(T.self): \(error)"
            )
        }
    }
}
