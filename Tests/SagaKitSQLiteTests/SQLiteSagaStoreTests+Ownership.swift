import Foundation
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Subprocess
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
            let path = directory.path(of: "sagas.sqlite")
            let link = directory.path(of: "other-name.sqlite")
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
                let path = directory.path(of: "new-\(round).sqlite")
                let link = directory.path(of: "link-\(round).sqlite")
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
///
/// Child processes are run with swift-subprocess, whose own event loop reaps them and reads their
/// pipes: no Foundation `Process`, no libdispatch source, no thread blocked in `waitUntilExit`.
func flockIsHeld(on path: String) async throws -> Bool {
    let result = try await run(
        .name("flock"), arguments: ["--nonblock", "--conflict-exit-code", "75", path, "true"], input: .none,
        output: .discarded, error: .discarded)
    guard case .exited(let code) = result.terminationStatus else {
        Issue.record("flock(1) ended with \(result.terminationStatus)")
        return false
    }
    #expect(code == 0 || code == 75, "flock(1) exited with \(code)")
    return code == 75
}

/// Runs `body` while another process (`flock(1)`) holds an exclusive `flock` on `path`.
func whileAnotherProcessLocks(_ path: String, _ body: () async throws -> Void) async throws {
    // `--close`: the command does not inherit the lock; flock(1) holds it until the command ends, which
    // is when its standard input closes.
    _ = try await run(
        .name("flock"), arguments: ["--nonblock", "--close", path, "sh", "-c", "echo locked; exec cat"],
        input: .inputWriter, output: .sequence, error: .discarded
    ) { execution in
        var lines = execution.standardOutput.strings().makeAsyncIterator()
        let line = try await lines.next()
        do {
            try #require(line?.hasPrefix("locked") == true, "flock(1) could not lock '\(path)'")
            try await body()
        } catch {
            try await execution.standardInputWriter.finish()
            throw error
        }
        try await execution.standardInputWriter.finish()
        while try await lines.next() != nil {}
    }
}
