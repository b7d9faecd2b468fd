import Foundation

/// Checks a JSON value against an OpenAPI 3.0 schema, for the subset of JSON Schema that
/// `Contracts/openapi.yaml` uses: `type`, `enum`, `required`, `properties`, `additionalProperties`,
/// `items`, `minItems`, `minimum`, `maximum`, `minLength`, `maxLength`, `pattern`, the `int32` and
/// `int64` formats, and `$ref`. A schema keyword outside the subset is itself a violation, so a
/// schema the checker cannot judge never passes quietly.
///
/// ```swift
/// let checker = SchemaChecker(document: document)
/// let violations = try checker.violations(of: body, against: schema)  // [] when the body conforms
/// ```
struct SchemaChecker: Sendable {
    let document: OpenAPIDocument

    /// Keywords that only document: they constrain nothing.
    static let annotations: Set<String> = ["description", "example", "title"]
    /// Keywords the checker enforces.
    static let checked: Set<String> = [
        "$ref", "type", "enum", "required", "properties", "additionalProperties", "items", "minItems", "minimum",
        "maximum", "minLength", "maxLength", "pattern", "format", "nullable",
    ]
    /// Formats the checker enforces; `date-time` is checked as ISO 8601.
    static let formats: Set<String> = ["int32", "int64", "date-time"]

    /// Every way `value` breaks `schema`, each naming where (`$.error.message`); empty if it conforms.
    func violations(of value: JSONValue, against schema: JSONValue, at path: String = "$") throws -> [String] {
        let schema = try document.resolve(schema)
        guard let keywords = schema.objectValue else { return ["\(path): the schema is not an object"] }
        var violations: [String] = []
        for keyword in keywords.keys where !Self.checked.contains(keyword) && !Self.annotations.contains(keyword) {
            violations.append("\(path): the schema keyword '\(keyword)' is not supported by the checker")
        }
        if value == .null, keywords["nullable"]?.boolValue == true { return violations }
        if let type = keywords["type"]?.stringValue, !Self.value(value, hasType: type) {
            return violations + ["\(path): \(value) is \(value.typeName), not \(type)"]
        }
        if let allowed = keywords["enum"]?.arrayValue, !allowed.contains(value) {
            violations.append("\(path): \(value) is not one of \(JSONValue.array(allowed))")
        }
        switch value {
        case .object(let members):
            violations += try objectViolations(members, keywords, path)
        case .array(let elements):
            if let minimum = keywords["minItems"]?.integerValue, elements.count < minimum {
                violations.append("\(path): \(elements.count) items, fewer than \(minimum)")
            }
            if let items = keywords["items"] {
                for (index, element) in elements.enumerated() {
                    violations += try self.violations(of: element, against: items, at: "\(path)[\(index)]")
                }
            }
        case .string(let string):
            violations += stringViolations(string, keywords, path)
        case .integer(let integer):
            violations += integerViolations(integer, keywords, path)
        default:
            break
        }
        return violations
    }

    static func value(_ value: JSONValue, hasType type: String) -> Bool {
        switch (type, value) {
        case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("integer", .integer),
            ("number", .integer), ("number", .number):
            true
        default:
            false
        }
    }

    func objectViolations(_ members: [String: JSONValue], _ keywords: [String: JSONValue], _ path: String) throws
        -> [String]
    {
        var violations: [String] = []
        let properties = keywords["properties"]?.objectValue ?? [:]
        for name in keywords["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where members[name] == nil {
            violations.append("\(path): the required property '\(name)' is missing")
        }
        for (name, member) in members.sorted(by: { $0.key < $1.key }) {
            if let schema = properties[name] {
                violations += try self.violations(of: member, against: schema, at: "\(path).\(name)")
            } else if keywords["additionalProperties"] == .bool(false) {
                violations.append("\(path): the property '\(name)' is not in the schema")
            } else if let schema = keywords["additionalProperties"], schema.objectValue != nil {
                violations += try self.violations(of: member, against: schema, at: "\(path).\(name)")
            }
        }
        return violations
    }

    func stringViolations(_ string: String, _ keywords: [String: JSONValue], _ path: String) -> [String] {
        var violations: [String] = []
        // JSON Schema counts a string's length in code points.
        let length = string.unicodeScalars.count
        if let minimum = keywords["minLength"]?.integerValue, length < minimum {
            violations.append("\(path): \"\(string)\" is shorter than \(minimum)")
        }
        if let maximum = keywords["maxLength"]?.integerValue, length > maximum {
            violations.append("\(path): \"\(string)\" is longer than \(maximum)")
        }
        if let pattern = keywords["pattern"]?.stringValue {
            if let expression = try? NSRegularExpression(pattern: pattern) {
                let range = NSRange(string.startIndex..., in: string)
                if expression.firstMatch(in: string, range: range) == nil {
                    violations.append("\(path): \"\(string)\" does not match \(pattern)")
                }
            } else {
                violations.append("\(path): the pattern \(pattern) does not compile")
            }
        }
        if let format = keywords["format"]?.stringValue {
            if format == "date-time" {
                if (try? Date(string, strategy: .iso8601)) == nil {
                    violations.append("\(path): \"\(string)\" is not an ISO 8601 date-time")
                }
            } else {
                violations.append("\(path): the string format '\(format)' is not supported by the checker")
            }
        }
        return violations
    }

    func integerViolations(_ integer: Int64, _ keywords: [String: JSONValue], _ path: String) -> [String] {
        var violations: [String] = []
        if let minimum = keywords["minimum"]?.integerValue, integer < minimum {
            violations.append("\(path): \(integer) is less than \(minimum)")
        }
        if let maximum = keywords["maximum"]?.integerValue, integer > maximum {
            violations.append("\(path): \(integer) is more than \(maximum)")
        }
        switch keywords["format"]?.stringValue {
        case "int32"?:
            if Int32(exactly: integer) == nil { violations.append("\(path): \(integer) does not fit int32") }
        case "int64"?, nil:
            break
        case let format?:
            violations.append("\(path): the integer format '\(format)' is not supported by the checker")
        }
        return violations
    }
}
