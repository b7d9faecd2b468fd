import Foundation
import GRDB
import Logging
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Testing

@Suite(.tags(.logIntegrity), .timeLimit(.minutes(2))) struct SQLiteSagaStoreLogIntegrityTests {
    /// Appends `count` sagas to an open store, one commit each; with `checkpointAfter`, has another
    /// connection checkpoint the `-wal` file into the database file after that many.
    func load(_ store: SQLiteSagaStore, count: Int, checkpointAfter: Int? = nil) async throws {
        for index in 0..<count {
            try await store.append(creation("s\(index)", at: at(Double(index))))
            if index + 1 == checkpointAfter {
                let other = try DatabaseQueue(path: store.path)
                try await other.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
                try other.close()
            }
        }
    }

    /// Copies the log's files that `suffixes` name, as a crash (all of them) or a careless backup (some)
    /// would leave them.
    func copyLog(_ path: String, to copy: String, suffixes: [String]) throws {
        for suffix in suffixes where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.copyItem(atPath: path + suffix, toPath: copy + suffix)
        }
    }

    /// Opens `path`, expecting a refusal; records what a store that opened it anyway would have lost.
    func openingError(_ path: String, expected count: Int) async -> SagaStoreError? {
        await storeError {
            let store = try SQLiteSagaStore(path: path)
            let kept = try await store.sagas(matching: SagaQuery(limit: 10_000)).count
            try await store.close()
            Issue.record("opened a log that lost commits: \(kept) of \(count) sagas are left")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func refusesALogWhoseWALFileIsMissing() async throws {
        try await withStore { store, path in
            try await load(store, count: 120, checkpointAfter: 60)
            // A backup that copies only the database file (and the lock file next to it).
            let copy = (path as NSString).deletingLastPathComponent + "/restored.sqlite"
            try copyLog(path, to: copy, suffixes: ["", "-sagakit.lock"])
            let before = try fileBytes(copy)
            let mark = try fileBytes(copy + "-sagakit.lock")

            let error = await openingError(copy, expected: 120)
            #expect(error?.code == .logShortened, "\(String(describing: error))")
            #expect(error?.path == copy)
            let message = error?.message ?? ""
            #expect(message.contains("'\(copy)' ends at commit 60, but commit 120 was made"), "\(message)")
            #expect(message.contains("-wal"), "\(message)")
            #expect(message.contains("acceptsShortenedLog"), "\(message)")
            // Refused files are left untouched.
            #expect(try fileBytes(copy) == before)
            #expect(try fileBytes(copy + "-sagakit.lock") == mark)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func refusesALogWhoseWALFileIsDamaged() async throws {
        try await withStore { store, path in
            try await load(store, count: 100)
            let copy = (path as NSString).deletingLastPathComponent + "/crashed.sqlite"
            let wal = try damagedCrashCopy(of: path, to: copy)
            let before = try fileBytes(copy)

            let error = await openingError(copy, expected: 100)
            #expect(error?.code == .logShortened, "\(String(describing: error))")
            #expect(error?.message.contains("commit 100 was made") == true, "\(String(describing: error))")
            #expect(try fileBytes(copy) == before)
            #expect(try fileBytes(copy + "-wal") == wal)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func opensAShortenedLogWhenTheOperatorAcceptsTheLoss() async throws {
        try await withStore { store, path in
            try await load(store, count: 100)
            let copy = (path as NSString).deletingLastPathComponent + "/crashed.sqlite"
            _ = try damagedCrashCopy(of: path, to: copy)

            var configuration = SQLiteSagaStore.Configuration()
            configuration.acceptsShortenedLog = true
            let entries = RecordingLogHandler.Entries()
            let accepted = try SQLiteSagaStore(
                path: copy, configuration: configuration, logger: RecordingLogHandler.logger(entries))
            let warnings = entries.all.filter { $0.level == .warning }
            #expect(warnings.map(\.message) == ["opening a shortened saga log"])
            #expect(warnings.first?.metadata["path"] == "\(copy)")
            #expect(
                warnings.first?.metadata["error"]?.description.contains("but commit 100 was made") == true,
                "\(warnings)")
            // The log is what is left of it.
            let left = try await accepted.sagas(matching: SagaQuery(limit: 1_000)).map(\.id)
            #expect(left.count > 0 && left.count < 100, "\(left.count) sagas left")
            #expect(left == (0..<left.count).map { "s\($0)" })
            try await accepted.close()

            // The mark moved back, even with no commit since: the next opening needs no override, and
            // the log takes appends.
            let reopened = try SQLiteSagaStore(path: copy)
            try await reopened.append(creation("after-the-loss"))
            #expect(try await reopened.sagas(matching: SagaQuery(limit: 1_000)).count == left.count + 1)
            try await reopened.close()
        }
    }

    @Test(.timeLimit(.minutes(1)), arguments: [true, false])
    func opensALogLeftByACrashWithItsWALFile(withSharedMemoryFile: Bool) async throws {
        try await withStore { store, path in
            try await load(store, count: 100, checkpointAfter: 40)
            let copy = (path as NSString).deletingLastPathComponent + "/crashed.sqlite"
            let suffixes =
                withSharedMemoryFile ? ["", "-wal", "-shm", "-sagakit.lock"] : ["", "-wal", "-sagakit.lock"]
            try copyLog(path, to: copy, suffixes: suffixes)

            let recovered = try SQLiteSagaStore(path: copy)
            #expect(try await recovered.sagas(matching: SagaQuery(limit: 1_000)).count == 100)
            try await recovered.append(creation("after-the-crash"))
            try await recovered.close()
            let reopened = try SQLiteSagaStore(path: copy)
            #expect(try await reopened.sagas(matching: SagaQuery(limit: 1_000)).count == 101)
            try await reopened.close()
        }
    }

    /// A crash between a commit and the write of its mark leaves the mark one behind; a mark ahead of the
    /// log by a single commit is a lost commit.
    @Test(arguments: [-1, 0, 1])
    func comparesTheLogWithItsCommitMark(markAheadBy offset: Int) async throws {
        try await withStore { store, path in
            try await load(store, count: 20)
            let copy = (path as NSString).deletingLastPathComponent + "/crashed.sqlite"
            try copyLog(path, to: copy, suffixes: ["", "-wal", "-sagakit.lock"])
            let mark = String(decoding: try fileBytes(copy + "-sagakit.lock"), as: UTF8.self)
            #expect(mark == "sagakit-commit " + String(repeating: "0", count: 18) + "20\n")
            let moved = "sagakit-commit " + String(repeating: "0", count: 18) + "\(20 + offset)\n"
            try Data(moved.utf8).write(to: URL(fileURLWithPath: copy + "-sagakit.lock"))

            let opened = await result { try SQLiteSagaStore(path: copy) }
            switch (offset, opened) {
            case (1, .failure(let error as SagaStoreError)):
                #expect(error.code == .logShortened)
                #expect(error.message.contains("ends at commit 20, but commit 21 was made"), "\(error)")
            case (1, .success(let store)):
                Issue.record("opened a log one commit short of its mark")
                try await store.close()
            case (1, .failure(let error)):
                Issue.record("expected a SagaStoreError, got \(error)")
            case (_, .success(let store)):
                #expect(try await store.sagas(matching: SagaQuery(limit: 100)).count == 20)
                try await store.close()
            case (_, .failure(let error)):
                Issue.record("refused a log at or ahead of its mark: \(error)")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func opensALogClosedCleanlyAgainAndAgain() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "sagas.sqlite")
            for round in 0..<5 {
                let store = try SQLiteSagaStore(path: path)
                #expect(try await store.sagas(matching: SagaQuery(limit: 1_000)).count == round * 30)
                for index in 0..<30 {
                    try await store.append(creation("r\(round)-\(index)"))
                }
                try await store.close()
            }
            let store = try SQLiteSagaStore(path: path)
            #expect(try await store.sagas(matching: SagaQuery(limit: 1_000)).count == 150)
            try await store.close()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aCleanCloseLeavesTheWholeLogInTheDatabaseFile() async throws {
        try await withStore { store, path in
            try await load(store, count: 100)
            // Reads open reader connections, which the pool closes after its writer.
            #expect(try await store.activeSagaRecords().count == 100)
            try await store.close()
            let copy = (path as NSString).deletingLastPathComponent + "/copy.sqlite"
            try copyLog(path, to: copy, suffixes: ["", "-sagakit.lock"])

            let opened = try SQLiteSagaStore(path: copy)
            let count = try await opened.sagas(matching: SagaQuery(limit: 1_000)).count
            #expect(count == 100, "the database file alone holds \(count) of 100 sagas")
            try await opened.close()
        }
    }

    @Test func opensALogWrittenBeforeTheCommitCounterExisted() async throws {
        try await withStore { store, path in
            try await load(store, count: 3)
            try await store.close()
            // What an earlier SagaKit left: no counter, no migration for it, an empty lock file.
            let queue = try DatabaseQueue(path: path)
            try await queue.write { db in
                try db.execute(sql: "DELETE FROM sagakit_meta WHERE key = 'commit_counter'")
                try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = 'sagakit.commit-counter'")
            }
            try queue.close()
            try Data().write(to: URL(fileURLWithPath: path + "-sagakit.lock"))

            let upgraded = try SQLiteSagaStore(path: path)
            #expect(try await upgraded.sagas(matching: SagaQuery()).count == 3)
            try await upgraded.append(creation("s3"))
            try await upgraded.close()
            let check = try DatabaseQueue(path: path)
            let counter = try await check.read { db in
                try String.fetchOne(db, sql: "SELECT value FROM sagakit_meta WHERE key = 'commit_counter'")
            }
            try check.close()
            #expect(counter == "1")
            let reopened = try SQLiteSagaStore(path: path)
            #expect(try await reopened.sagas(matching: SagaQuery()).count == 4)
            try await reopened.close()
        }
    }

    @Test func startsANewLogWhereOnlyTheLockFileOfAnEarlierLogIsLeft() async throws {
        try await withStore { store, path in
            try await load(store, count: 10)
            try await store.close()
            for suffix in ["", "-wal", "-shm"] {
                try? FileManager.default.removeItem(atPath: path + suffix)
            }

            let fresh = try SQLiteSagaStore(path: path)
            #expect(try await fresh.sagas(matching: SagaQuery()).isEmpty)
            try await fresh.close()
            // The earlier log's mark went with it: the new log, with fewer commits, opens again.
            let reopened = try SQLiteSagaStore(path: path)
            try await reopened.append(creation("s1"))
            try await reopened.close()
        }
    }

    @Test func withNormalSynchronousTheMarkMovesAtEachCleanClose() async throws {
        var configuration = SQLiteSagaStore.Configuration()
        configuration.synchronous = .normal
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "sagas.sqlite")
            let store = try SQLiteSagaStore(path: path, configuration: configuration)
            try await load(store, count: 10)
            try await store.close()
            let older = try fileBytes(path)
            let next = try SQLiteSagaStore(path: path, configuration: configuration)
            try await next.append(creation("s10"))
            try await next.close()

            // An older copy put in place of the log.
            try older.write(to: URL(fileURLWithPath: path))
            let error = await storeError { _ = try SQLiteSagaStore(path: path, configuration: configuration) }
            #expect(error?.code == .logShortened)
            #expect(
                error?.message.contains("ends at commit 10, but commit 11 was made") == true,
                "\(String(describing: error))")
        }
    }

    // MARK: Backup

    @Test(.timeLimit(.minutes(1)))
    func backsUpAConsistentCopyWhileSagasAreAppended() async throws {
        try await withStore { store, path in
            let directory = (path as NSString).deletingLastPathComponent
            // Sagas of two appends each; the first 50 finish before the backup starts.
            func saga(_ id: String) async throws {
                try await store.append(creation(id))
                try await store.append(
                    SagaLogAppend(sagaID: id, records: [record(id, 2, .sagaCompleted)], status: .completed))
            }
            for index in 0..<50 { try await saga("before-\(index)") }
            let backup = directory + "/backup.sqlite"
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<150 {
                    group.addTask { try await saga("during-\(index)") }
                }
                group.addTask { try await store.backup(to: backup) }
                try await group.waitForAll()
            }
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("backup") } == [
                    "backup.sqlite"
                ])

            let restored = try SQLiteSagaStore(path: backup)
            let sagas = try await restored.sagas(matching: SagaQuery(limit: 1_000))
            let ids = Set(sagas.map(\.id))
            #expect(ids.isSuperset(of: (0..<50).map { "before-\($0)" }))
            for summary in sagas {
                // Each saga as it stood in one snapshot: its row and its records agree.
                let records = try await restored.records(of: summary.id)
                #expect(records.map(\.sequence) == (summary.status == .completed ? [1, 2] : [1]), "\(summary.id)")
            }
            try await restored.append(creation("after-the-restore"))
            try await restored.close()
        }
    }

    @Test func refusesToBackUpOverAnExistingFileOrIntoAMissingDirectory() async throws {
        try await withStore { store, path in
            try await store.append(creation("s1"))
            let directory = (path as NSString).deletingLastPathComponent
            let existing = directory + "/existing.sqlite"
            let text = Data("not to be overwritten".utf8)
            try text.write(to: URL(fileURLWithPath: existing))

            let overwrite = await storeError { try await store.backup(to: existing) }
            #expect(overwrite?.code == .cannotOpen)
            #expect(overwrite?.path == existing)
            #expect(overwrite?.message.contains("exists") == true, "\(String(describing: overwrite))")
            #expect(try fileBytes(existing) == text)
            let missing = await storeError { try await store.backup(to: directory + "/missing/backup.sqlite") }
            #expect(missing?.code == .cannotOpen)
            try await store.close()
            let closed = await storeError { try await store.backup(to: directory + "/later.sqlite") }
            #expect(closed?.code == .io)
        }
    }

    /// Copies the files of the open log at `path` as a crash would leave them, then writes 64 random
    /// bytes in the middle of the copy's `-wal` file; returns the damaged `-wal` file's bytes.
    func damagedCrashCopy(of path: String, to copy: String) throws -> Data {
        try copyLog(path, to: copy, suffixes: ["", "-wal", "-sagakit.lock"])
        // SQLite ignores every frame of the -wal file from a frame that fails its checksum.
        var wal = try fileBytes(copy + "-wal")
        var generator = SplitMix64(seed: 7)
        let middle = wal.count / 2
        wal.replaceSubrange(
            middle..<middle + 64, with: (0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try wal.write(to: URL(fileURLWithPath: copy + "-wal"))
        return wal
    }
}
