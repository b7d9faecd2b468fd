package import Foundation

/// How a saga log stores a record's error and metadata in text columns, shared by the stores in this
/// package: JSON with sorted keys, `NULL` when absent or empty, and a corrupt value named on reading.
package enum LogColumnCoding {
    package static func encode(_ error: RecordedError?, _ encoder: JSONEncoder) throws -> String? {
        guard let error else { return nil }
        return String(decoding: try encoder.encode(error), as: UTF8.self)
    }

    package static func encode(_ metadata: [String: String], _ encoder: JSONEncoder) throws -> String? {
        if metadata.isEmpty { return nil }
        return String(decoding: try encoder.encode(metadata), as: UTF8.self)
    }

    package static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    package static func decodeError(_ text: String?, _ decoder: JSONDecoder, what: String) throws -> RecordedError? {
        guard let text else { return nil }
        do {
            return try decoder.decode(RecordedError.self, from: Data(text.utf8))
        } catch {
            throw SagaStoreError(.corrupt, message: "the \(what) is not a recorded error: \(error)")
        }
    }

    package static func decodeMetadata(_ text: String?, _ decoder: JSONDecoder, what: String) throws -> [String: String]
    {
        guard let text else { return [:] }
        do {
            return try decoder.decode([String: String].self, from: Data(text.utf8))
        } catch {
            throw SagaStoreError(.corrupt, message: "the \(what) is not a JSON object of strings: \(error)")
        }
    }
}
