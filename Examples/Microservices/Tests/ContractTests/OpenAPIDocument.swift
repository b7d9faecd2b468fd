import Foundation

/// `Contracts/openapi.yaml`, read for the contract tests: its operations, their responses, and `$ref`s
/// resolved within the document.
///
/// ```swift
/// let document = try OpenAPIDocument.load()
/// let response = try document.response(method: "post", path: "/users", status: 201)
/// ```
struct OpenAPIDocument: Sendable {
    /// One operation: a method and a path as the document spells them (`get`, `/users/{id}`).
    struct Operation: Hashable, Sendable, Comparable, CustomStringConvertible {
        var method: String
        var path: String

        init(_ method: String, _ path: String) {
            self.method = method.lowercased()
            self.path = path
        }

        var description: String { "\(method.uppercased()) \(path)" }

        static func < (lhs: Operation, rhs: Operation) -> Bool { lhs.description < rhs.description }
    }

    /// What is wrong with the document or a lookup in it.
    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    static let methods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// The document's root.
    let root: JSONValue

    /// The document's location: `Contracts/openapi.yaml` in the package, found from this file's path.
    static func url(file: String = #filePath) -> URL {
        URL(fileURLWithPath: file)
            .deletingLastPathComponent()  // ContractTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // the package
            .appendingPathComponent("Contracts/openapi.yaml")
    }

    /// Reads and parses the document.
    static func load(from url: URL = url()) throws -> OpenAPIDocument {
        OpenAPIDocument(root: try JSONValue(yaml: String(contentsOf: url, encoding: .utf8)))
    }

    /// Every operation of every path.
    var operations: Set<Operation> {
        var operations: Set<Operation> = []
        for (path, item) in root["paths"]?.objectValue ?? [:] {
            for method in (item.objectValue ?? [:]).keys where Self.methods.contains(method) {
                operations.insert(Operation(method, path))
            }
        }
        return operations
    }

    /// The operation object, if the document has it.
    func operation(_ operation: Operation) -> JSONValue? {
        root["paths"]?[operation.path]?[operation.method]
    }

    /// The tags of an operation.
    func tags(of operation: Operation) -> [String] {
        self.operation(operation)?["tags"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    /// The statuses an operation documents.
    func statuses(of operation: Operation) -> Set<Int> {
        Set((self.operation(operation)?["responses"]?.objectValue ?? [:]).keys.compactMap { Int($0) })
    }

    /// The response object an operation documents for a status (`$ref` resolved), or `nil`.
    func response(_ operation: Operation, status: Int) throws -> JSONValue? {
        guard let response = self.operation(operation)?["responses"]?[String(status)] else { return nil }
        return try resolve(response)
    }

    /// Follows `$ref`s (`#/…` only) until the value is not a reference.
    func resolve(_ value: JSONValue) throws -> JSONValue {
        var value = value
        var seen: Set<String> = []
        while let reference = value["$ref"]?.stringValue {
            guard seen.insert(reference).inserted else { throw Problem(description: "a $ref cycle at \(reference)") }
            guard reference.hasPrefix("#/") else { throw Problem(description: "an external $ref \(reference)") }
            var target = root
            for part in reference.dropFirst(2).split(separator: "/") {
                let name = part.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
                guard let next = target[name] else { throw Problem(description: "the $ref \(reference) is dangling") }
                target = next
            }
            value = target
        }
        return value
    }

    /// Every `$ref` in the document, to check that each resolves.
    var references: [String] {
        func collect(_ value: JSONValue, into references: inout [String]) {
            switch value {
            case .object(let members):
                if let reference = members["$ref"]?.stringValue { references.append(reference) }
                for member in members.values { collect(member, into: &references) }
            case .array(let elements):
                for element in elements { collect(element, into: &references) }
            default:
                break
            }
        }
        var references: [String] = []
        collect(root, into: &references)
        return references
    }
}
