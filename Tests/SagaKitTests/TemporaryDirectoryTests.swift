import Foundation
import SagaKitTesting
import Testing

@Suite("Temporary directory", .timeLimit(.minutes(1)))
struct TemporaryDirectoryTests {
    struct Planned: Error {}

    static func exists(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    @Test func isAFreshEmptyDirectoryUnderTheSystemsTemporaryDirectoryUntilRemoved() throws {
        let directory = try TemporaryDirectory(prefix: "TemporaryDirectoryTests")
        let other = try TemporaryDirectory(prefix: "TemporaryDirectoryTests")
        defer { try? other.remove() }
        #expect(Self.exists(directory.path))
        #expect(directory != other)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
        #expect(directory.url.lastPathComponent.hasPrefix("TemporaryDirectoryTests-"))
        let parent = directory.url.deletingLastPathComponent().standardizedFileURL
        #expect(parent.path == FileManager.default.temporaryDirectory.standardizedFileURL.path)

        // Files are named inside it; removing it removes them too.
        #expect(directory.path(of: "sagas.sqlite") == directory.path + "/sagas.sqlite")
        #expect(directory.url(of: "sagas.sqlite").path == directory.path(of: "sagas.sqlite"))
        try Data("log".utf8).write(to: directory.url(of: "sagas.sqlite"))
        try directory.remove()
        #expect(!FileManager.default.fileExists(atPath: directory.path))
        #expect(!FileManager.default.fileExists(atPath: directory.path(of: "sagas.sqlite")))
        try directory.remove()  // again: nothing to do
        #expect(Self.exists(other.path), "removing one directory left another alone")
    }

    @Test func theScopedFormRemovesTheDirectoryWhenItsBlockReturns() async throws {
        let (directory, value) = try await withTemporaryDirectory { directory in
            #expect(Self.exists(directory.path))
            #expect(directory.url.lastPathComponent.hasPrefix("SagaKitTesting-"))
            try Data("log".utf8).write(to: directory.url(of: "sagas.sqlite"))
            return (directory, 42)
        }
        #expect(value == 42)
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test func theScopedFormRemovesTheDirectoryWhenItsBlockThrows() async throws {
        var used: TemporaryDirectory?
        await #expect(throws: Planned.self) {
            try await withTemporaryDirectory(prefix: "TemporaryDirectoryTests") { directory in
                used = directory
                #expect(Self.exists(directory.path))
                throw Planned()
            }
        }
        let directory = try #require(used)
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
}
