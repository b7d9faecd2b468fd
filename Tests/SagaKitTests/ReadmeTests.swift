import Foundation
import Testing

/// The README's saga is the quick-start example's, which the build compiles: keep them equal.
@Suite("README", .timeLimit(.minutes(1)))
struct ReadmeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func region(_ text: String, from begin: String, to end: String) -> String? {
        guard let start = text.range(of: begin), let stop = text.range(of: end, range: start.upperBound..<text.endIndex)
        else {
            return nil
        }
        return text[start.upperBound..<stop.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func quickStartSagaInTheReadmeIsTheCompiledExample() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let example = try String(
            contentsOf: Self.root.appendingPathComponent("Examples/QuickStart/main.swift"), encoding: .utf8)
        let compiled = try #require(region(example, from: "// README-BEGIN", to: "// README-END"))
        let shown = try #require(region(readme, from: "<!-- quickstart-saga -->\n```swift", to: "```"))
        #expect(shown == compiled)
        #expect(compiled.split(separator: "\n").count <= 25)
    }
}
