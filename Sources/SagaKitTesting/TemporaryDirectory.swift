public import Foundation

/// A fresh, empty directory under the system's temporary directory, for the files of one test.
///
/// Each directory gets a unique name that starts with a readable prefix (`SagaKitTesting-<UUID>`
/// unless you pass one), so a directory left behind by a crashed test run says where it came from.
/// Name the files a test needs with ``url(of:)`` or ``path(of:)``, for example the log of a
/// `SQLiteSagaStore`.
///
/// The value does not remove the directory when it goes away: call ``remove()`` when the test is
/// done, or let ``withTemporaryDirectory(prefix:_:)`` create and remove it around a block.
///
/// ```swift
/// let directory = try TemporaryDirectory(prefix: "PlaceOrderTests")
/// defer { try? directory.remove() }
/// let store = try SQLiteSagaStore(path: directory.path(of: "sagas.sqlite"))
/// ```
///
/// - Important: Everything inside the directory is deleted with it. Close the stores that use its
///   files first, so that no store writes to a log that is being removed.
public struct TemporaryDirectory: Hashable, Sendable, CustomStringConvertible {
    /// The directory's location.
    public let url: URL

    /// Creates a new, empty directory named `<prefix>-<UUID>` in the system's temporary directory.
    ///
    /// ```swift
    /// let directory = try TemporaryDirectory(prefix: "RecoveryTests")
    /// print(directory.path)  // for example /tmp/RecoveryTests-5C0E…
    /// ```
    ///
    /// - Parameter prefix: The start of the directory's name; a single path component (no `/`).
    /// - Throws: The file system's error if the directory cannot be created.
    public init(prefix: String = "SagaKitTesting") throws {
        precondition(!prefix.contains("/"), "a temporary directory's prefix is one path component: '\(prefix)'")
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(UUID().uuidString)", isDirectory: true)
        // Not creating intermediate directories: a name that already exists is an error, never shared.
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
        self.url = url
    }

    /// The directory's file-system path.
    ///
    /// ```swift
    /// #expect(FileManager.default.fileExists(atPath: directory.path))
    /// ```
    public var path: String { url.path }

    public var description: String { path }

    /// The location of `name` inside the directory; the file is not created.
    ///
    /// ```swift
    /// let log = directory.url(of: "sagas.sqlite")
    /// ```
    ///
    /// - Parameter name: A file name, or a relative path such as `"logs/1.sqlite"`.
    public func url(of name: String) -> URL {
        url.appendingPathComponent(name, isDirectory: false)
    }

    /// The path of `name` inside the directory; the file is not created.
    ///
    /// ```swift
    /// let store = try SQLiteSagaStore(path: directory.path(of: "sagas.sqlite"))
    /// ```
    ///
    /// - Parameter name: A file name, or a relative path such as `"logs/1.sqlite"`.
    public func path(of name: String) -> String {
        url(of: name).path
    }

    /// Removes the directory and everything in it; removing it again does nothing.
    ///
    /// ```swift
    /// try directory.remove()
    /// #expect(!FileManager.default.fileExists(atPath: directory.path))
    /// ```
    ///
    /// - Throws: The file system's error if the directory exists but cannot be removed.
    public func remove() throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        try FileManager.default.removeItem(at: url)
    }
}

/// Runs `body` with a new ``TemporaryDirectory``, and removes the directory when `body` returns or
/// throws.
///
/// `body` runs in the caller's isolation, so it may use the caller's non-sendable state. If `body`
/// throws, its error is thrown and the directory is still removed; if `body` succeeds and the
/// directory cannot be removed, the removal's error is thrown.
///
/// ```swift
/// @Test func placeOrderSurvivesARestart() async throws {
///     try await withTemporaryDirectory(prefix: "PlaceOrderTests") { directory in
///         let store = try SQLiteSagaStore(path: directory.path(of: "sagas.sqlite"))
///         let engine = SagaEngine(store: store, logger: logger)
///         let outcome = try await withRunningSagaEngine(engine) { engine in
///             try await engine.execute(placeOrder, id: "order-1", input: order)
///         }
///         try await store.close()
///         #expect(outcome.status == .completed)
///     }
/// }
/// ```
///
/// - Important: Do not let the directory or its files escape `body`: they are deleted when it ends.
///   Close the stores that use them inside `body`.
///
/// - Parameters:
///   - prefix: The start of the directory's name; see ``TemporaryDirectory/init(prefix:)``.
///   - body: The code that uses the directory.
/// - Returns: What `body` returns.
public func withTemporaryDirectory<Result>(
    prefix: String = "SagaKitTesting",
    _ body: (TemporaryDirectory) async throws -> Result
) async throws -> Result {
    let directory = try TemporaryDirectory(prefix: prefix)
    let result: Result
    do {
        result = try await body(directory)
    } catch {
        try? directory.remove()
        throw error
    }
    try directory.remove()
    return result
}
