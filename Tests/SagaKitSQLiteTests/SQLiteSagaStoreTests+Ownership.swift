import Foundation
import SagaKit
import SagaKitSQLite
import Testing

/// A second name for a file: a symbolic link or a hard link.
enum LinkKind: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case symbolic, hard

    var testDescription: String { rawValue }

    /// Creates `link`, another name for `target`.
    func make(_ link: String, to target: String) throws {
        switch self {
        case .symbolic: try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        case .hard: try FileManager.default.linkItem(atPath: target, toPath: link)
        }
    }
}

/// Whether `flock(1)` is there to hold a lock from another process (util-linux, on Linux).
let flockToolIsAvailable = FileManager.default.isExecutableFile(atPath: "/usr/bin/flock")

@Suite(.tags(.ownership), .timeLimit(.minutes(2))) struct SQLiteSagaStoreOwnershipTests {
    @Test(arguments: LinkKind.allCases)
    func refusesASecondStoreReachingTheLogThroughAnotherName(_ kind: LinkKind) async throws {
        try await withStore { store, path in
            try await store.append(creation("s1"))
            let link = (path as NSString).deletingLastPathComponent + "/other-name.sqlite"
            try kind.make(link, to: path)

            let error = await storeError { _ = try SQLiteSagaStore(path: link) }
            #expect(error?.code == .inUse, "\(String(describing: error))")
            #expect(error?.path == link)
            #expect(error?.message.contains(link) == true, "\(String(describing: error))")

            // Once the owner closes, the other name opens the same log.
            try await store.close()
            let next = try SQLiteSagaStore(path: link)
            #expect(try await next.records(of: "s1").count == 1)
            try await next.close()
        }
    }

    @Test(.timeLimit(.minutes(1)), .enabled(if: flockToolIsAvailable), arguments: LinkKind.allCases)
    func refusesALogLockedByAnotherProcessThroughAnotherName(_ kind: LinkKind) async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/sagas.sqlite"
            let link = directory + "/other-name.sqlite"
            let store = try SQLiteSagaStore(path: path)
            try await store.append(creation("s1"))
            try kind.make(link, to: path)
            // Another process sees the log as owned, whichever name it uses.
            #expect(try await flockIsHeld(on: link))
            try await store.close()
            #expect(try await !flockIsHeld(on: link))

            // And a store does not open a log another process owns through another name.
            try await whileAnotherProcessLocks(link) {
                let error = await storeError { _ = try SQLiteSagaStore(path: path) }
                #expect(error?.code == .inUse)
                #expect(error?.message.contains(path) == true, "\(String(describing: error))")
            }
            let reopened = try SQLiteSagaStore(path: path)
            #expect(try await reopened.records(of: "s1").count == 1)
            try await reopened.close()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func onlyOneOfManyStoresCreatingANewLogThroughTwoNamesOwnsIt() async throws {
        try await withTemporaryDirectory { directory in
            for round in 0..<20 {
                let path = directory + "/new-\(round).sqlite"
                let link = directory + "/link-\(round).sqlite"
                // A symbolic link to a log that does not exist yet: both names create the same file.
                try LinkKind.symbolic.make(link, to: path)
                let outcomes = await withTaskGroup(of: Result<SQLiteSagaStore, any Error>.self) { group in
                    for index in 0..<8 {
                        group.addTask {
                            await result { try SQLiteSagaStore(path: index.isMultiple(of: 2) ? link : path) }
                        }
                    }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                var owners: [SQLiteSagaStore] = []
                for outcome in outcomes {
                    switch outcome {
                    case .success(let store): owners.append(store)
                    case .failure(let error): #expect((error as? SagaStoreError)?.code == .inUse, "\(error)")
                    }
                }
                #expect(owners.count == 1, "round \(round): \(owners.count) stores own one log")
                for (index, owner) in owners.enumerated() {
                    try await owner.append(creation("s\(index)"))
                    try await owner.close()
                }
                let reopened = try SQLiteSagaStore(path: link)
                #expect(try await reopened.sagas(matching: SagaQuery()).map(\.id) == ["s0"])
                try await reopened.close()
            }
        }
    }
}

/// Whether another process would find `path` locked: `flock(1)` tries a non-blocking exclusive lock.
func flockIsHeld(on path: String) async throws -> Bool {
    let run = try await runProcess("/usr/bin/flock", ["--nonblock", "--conflict-exit-code", "75", path, "true"])
    #expect(run == 0 || run == 75, "flock(1) exited with \(run)")
    return run == 75
}

/// Runs `body` while another process (`flock(1)`) holds an exclusive `flock` on `path`.
func whileAnotherProcessLocks(_ path: String, _ body: () async throws -> Void) async throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
    // `--close`: the command does not inherit the lock; flock(1) holds it until the command ends, which
    // is when its standard input closes.
    process.arguments = ["--nonblock", "--close", path, "sh", "-c", "echo locked; exec cat"]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    try process.run()
    defer {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
    let line = await offThePool { String(decoding: output.fileHandleForReading.availableData, as: UTF8.self) }
    try #require(line.hasPrefix("locked"), "flock(1) could not lock '\(path)'")
    try await body()
}

/// Runs an executable to its end, off the cooperative thread pool, and returns its exit status.
func runProcess(_ executable: String, _ arguments: [String]) async throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return await offThePool {
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// Runs a blocking call on a thread of its own, so that it does not hold a thread of the cooperative pool.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: body()) }
    }
}
