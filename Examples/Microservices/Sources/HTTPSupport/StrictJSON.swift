import Foundation
import HTTPTypes
public import Hummingbird

/// Reads a JSON request body strictly, so that bad input gets a 4xx that names the problem:
/// a body over the size limit (413), something that is not a JSON object, a missing, unknown or
/// mistyped field (400).
public enum StrictJSON {
    /// The largest body a service reads, in bytes.
    public static let maxBodySize = 64 * 1024

    /// Decodes the request's body as `T`, allowing only the fields in `fields`.
    ///
    /// ```swift
    /// let body = try await StrictJSON.decode(NewUser.self, fields: ["name", "email"], from: request)
    /// ```
    ///
    /// - Throws: `HTTPError` with status 413 or 400 and a message naming the problem.
    public static func decode<T: Decodable>(_ type: T.Type, fields: Set<String>, from request: Request) async throws
        -> T
    {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: maxBodySize)
        } catch {
            throw HTTPError(.contentTooLarge, message: "the request body is larger than \(maxBodySize) bytes")
        }
        let data = Data(buffer.readableBytesView)
        guard !data.isEmpty else {
            throw HTTPError(.badRequest, message: "the request body is empty; send a JSON object")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw HTTPError(.badRequest, message: "the request body is not valid JSON")
        }
        guard let dictionary = object as? [String: Any] else {
            throw HTTPError(.badRequest, message: "the request body must be a JSON object")
        }
        let unknown = Set(dictionary.keys).subtracting(fields).sorted()
        guard unknown.isEmpty else {
            throw HTTPError(
                .badRequest,
                message:
                    "unknown field\(unknown.count == 1 ? "" : "s") \(unknown.map { "'\($0)'" }.joined(separator: ", ")); expected \(fields.sorted().joined(separator: ", "))"
            )
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw HTTPError(.badRequest, message: describe(error))
        }
    }

    /// A sentence naming what is wrong with the body.
    static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.map(\.stringValue).joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "the field '\(path(context.codingPath + [key]))' is missing"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "the field '\(path(context.codingPath))' must be \(typeName(type))"
        case .dataCorrupted(let context):
            // The body parsed as JSON already: what is left is a value that does not fit its field.
            return context.codingPath.isEmpty
                ? "a value does not fit its field: \(context.debugDescription)"
                : "the field '\(path(context.codingPath))' is invalid"
        @unknown default:
            return "the request body does not match the expected shape"
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int32.Type, is Int64.Type: "a whole number"
        case is Bool.Type: "true or false"
        default: "\(type)"
        }
    }
}

/// The JSON error body every service answers with: `{"error": {"message": "…"}}`, as Hummingbird's
/// `HTTPError` writes it.
public struct ErrorBody: Codable, Sendable {
    /// The error.
    public struct Detail: Codable, Sendable {
        /// What went wrong, in a sentence.
        public var message: String

        /// Creates a detail.
        public init(message: String) { self.message = message }
    }

    /// The error.
    public var error: Detail

    /// Creates an error body with this message.
    public init(message: String) { error = Detail(message: message) }
}
