import Foundation
import GRDB
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Testing

@Suite(.tags(.sqliteStore), .timeLimit(.minutes(2))) struct SQLiteSagaStoreTests {
    // MARK: Appending and reading

    @Test func roundTripsEveryRecordField() async throws {
        try await withStore { store, _ in
            let cause = RecordedError(type: "Payments.Declined", message: "card declined", isRetryable: false)
            var started = record("s1", 1, .sagaStarted, at: at(0), payload: Data([0, 1, 2, 255]))
            started.metadata = ["sagakit.deadline": "1750000100.5", "traceparent": "00-abc-def-01"]
            let failed = SagaLogRecord(
                sagaID: "s1", sequence: 2, timestamp: at(1.5), kind: .stepFailed, step: "charge", attempt: 3,
                payload: Data("{\"x\":1}".utf8), error: cause, note: "operator note"
            )
            let creation = SagaCreation(name: "place-order", fingerprint: "abc123", createdAt: at(0))
            try await store.append(
                SagaLogAppend(sagaID: "s1", records: [started], status: .running, creation: creation))
            try await store.append(
                SagaLogAppend(sagaID: "s1", records: [failed], status: .compensating, lastError: cause))

            #expect(try await store.records(of: "s1") == [started, failed])
            let summary = try #require(try await store.summary(of: "s1"))
            #expect(
                summary
                    == SagaSummary(
                        id: "s1", name: "place-order", fingerprint: "abc123", status: .compensating,
                        createdAt: at(0), updatedAt: at(1.5), lastError: cause
                    )
            )
            #expect(try await store.summary(of: "unknown") == nil)
            #expect(try await store.records(of: "unknown").isEmpty)
        }
    }

    @Test func refusesASecondCreationAndKeepsTheFirstSaga() async throws {
        try await withStore { store, _ in
            try await store.append(creation("s1", name: "first", at: at(0)))
            let error = await storeError { try await store.append(creation("s1", name: "second", at: at(5))) }
            #expect(error?.code == .sagaAlreadyExists)
            #expect(try await store.summary(of: "s1")?.name == "first")
            #expect(try await store.summary(of: "s1")?.createdAt == at(0))
            #expect(try await store.records(of: "s1") == creation("s1", name: "first", at: at(0)).records)
        }
    }

    @Test func refusesADuplicateSequenceAndWritesNothingOfThatAppend() async throws {
        try await withStore { store, _ in
            try await store.append(creation("s1"))
            let duplicate = SagaLogAppend(
                sagaID: "s1",
                records: [
                    record("s1", 2, .stepStarted, step: "a", attempt: 1),
                    record("s1", 1, .stepStarted, step: "b", attempt: 1),
                ],
                status: .compensating
            )
            let error = await storeError { try await store.append(duplicate) }
            #expect(error?.code == .duplicateRecord)
            #expect(try await store.records(of: "s1").map(\.sequence) == [1])
            #expect(try await store.summary(of: "s1")?.status == .running)
        }
    }

    @Test func refusesAnAppendToAnUnknownSaga() async throws {
        try await withStore { store, _ in
            let error = await storeError {
                try await store.append(
                    SagaLogAppend(sagaID: "ghost", records: [record("ghost", 2, .stepStarted)], status: .running))
            }
            let records = try await store.records(of: "ghost")
            #expect(error?.code == .unknownSaga)
            #expect(records.isEmpty)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func groupsConcurrentAppendsIntoFewerTransactionsAndKeepsThemAll() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "sagas.sqlite")
            let store = try SQLiteSagaStore(path: path)
            let before = store.committedTransactionCount
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        try await store.append(creation("saga-\(index)", at: at(Double(index))))
                        try await store.append(
                            SagaLogAppend(
                                sagaID: "saga-\(index)",
                                records: [record("saga-\(index)", 2, .stepStarted, step: "a", attempt: 1)],
                                status: .running)
                        )
                    }
                }
                try await group.waitForAll()
            }
            let transactions = store.committedTransactionCount - before
            #expect(transactions < 400, "400 appends took \(transactions) transactions")
            try await store.close()

            let reopened = try SQLiteSagaStore(path: path)
            let active = try await reopened.activeSagaRecords()
            #expect(active.count == 200)
            #expect(active.allSatisfy { $0.records.map(\.sequence) == [1, 2] })
            try await reopened.close()
        }
    }

    @Test func listsSagasByStatusAndNameOldestFirstWithPaging() async throws {
        try await withStore { store, _ in
            // Ten sagas alternating names; every third compensated. s8 and s9 share a start time.
            for index in 0..<10 {
                let id = "s\(index)"
                let time = at(Double(min(index, 8)))
                try await store.append(creation(id, name: index.isMultiple(of: 2) ? "even" : "odd", at: time))
                if index.isMultiple(of: 3) {
                    try await store.append(
                        SagaLogAppend(
                            sagaID: id, records: [record(id, 2, .sagaCompensated, at: time)], status: .compensated)
                    )
                }
            }
            func ids(_ query: SagaQuery) async throws -> [String] {
                try await store.sagas(matching: query).map(\.id)
            }
            #expect(try await ids(SagaQuery()) == (0..<10).map { "s\($0)" })
            #expect(try await ids(SagaQuery(status: [.compensated])) == ["s0", "s3", "s6", "s9"])
            #expect(try await ids(SagaQuery(status: [.running], name: "even")) == ["s2", "s4", "s8"])
            #expect(
                try await ids(SagaQuery(status: [.running, .compensated], name: "odd")) == [
                    "s1", "s3", "s5", "s7", "s9",
                ])
            #expect(try await ids(SagaQuery(name: "odd", limit: 2)) == ["s1", "s3"])
            #expect(try await ids(SagaQuery(name: "odd", limit: 2, offset: 2)) == ["s5", "s7"])
            #expect(try await ids(SagaQuery(name: "odd", limit: 2, offset: 4)) == ["s9"])
            #expect(try await ids(SagaQuery(limit: 0)).isEmpty)
            #expect(try await ids(SagaQuery(name: "none")).isEmpty)
        }
    }

    @Test func loadsTheRecordsOfRunningAndCompensatingSagasOnly() async throws {
        try await withStore { store, _ in
            try await store.append(creation("running", at: at(2)))
            try await store.append(creation("compensating", at: at(1)))
            try await store.append(creation("completed", at: at(0)))
            try await store.append(
                SagaLogAppend(
                    sagaID: "running", records: [record("running", 2, .stepStarted, step: "a", attempt: 1)],
                    status: .running)
            )
            try await store.append(
                SagaLogAppend(
                    sagaID: "running",
                    records: [
                        record("running", 3, .stepSucceeded, step: "a", attempt: 1),
                        record("running", 4, .stepStarted, step: "b", attempt: 1),
                    ],
                    status: .running
                )
            )
            try await store.append(
                SagaLogAppend(
                    sagaID: "compensating", records: [record("compensating", 2, .stepFailed, step: "a", attempt: 1)],
                    status: .compensating)
            )
            try await store.append(
                SagaLogAppend(
                    sagaID: "completed", records: [record("completed", 2, .sagaCompleted)], status: .completed)
            )

            let active = try await store.activeSagaRecords()
            #expect(active.map(\.summary.id) == ["compensating", "running"])
            #expect(active.map(\.summary.status) == [.compensating, .running])
            #expect(active[0].records == (try await store.records(of: "compensating")))
            #expect(active[1].records.map(\.sequence) == [1, 2, 3, 4])
            #expect(active[1].records.map(\.kind) == [.sagaStarted, .stepStarted, .stepSucceeded, .stepStarted])
        }
    }

    @Test func aReopenedStoreSeesEverythingCommittedBeforeClose() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "sagas.sqlite")
            let store = try SQLiteSagaStore(path: path)
            for index in 0..<20 {
                try await store.append(creation("s\(index)", at: at(Double(index))))
                try await store.append(
                    SagaLogAppend(
                        sagaID: "s\(index)",
                        records: [record("s\(index)", 2, .sagaCompleted, at: at(Double(index) + 0.5))],
                        status: index.isMultiple(of: 2) ? .completed : .running
                    )
                )
            }
            let summaries = try await store.sagas(matching: SagaQuery(limit: 1000))
            let active = try await store.activeSagaRecords()
            try await store.close()

            let reopened = try SQLiteSagaStore(path: path)
            #expect(try await reopened.sagas(matching: SagaQuery(limit: 1000)) == summaries)
            #expect(try await reopened.activeSagaRecords().map(\.records) == active.map(\.records))
            #expect(try await reopened.records(of: "s7").map(\.kind) == [.sagaStarted, .sagaCompleted])
            try await reopened.close()
        }
    }

    @Test(arguments: [true, false])
    func recoversTheRecordsOfALogLeftByACrash(withSharedMemoryFile: Bool) async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "sagas.sqlite")
            let crashed = directory.path(of: "crashed.sqlite")
            let store = try SQLiteSagaStore(path: path)
            for index in 0..<50 {
                try await store.append(creation("s\(index)", at: at(Double(index))))
            }
            // Copy the files while the store is open, as a crash would leave them: the records are
            // still in the -wal file, not yet checkpointed into the database file.
            for suffix in withSharedMemoryFile ? ["", "-wal", "-shm"] : ["", "-wal"] {
                try FileManager.default.copyItem(atPath: path + suffix, toPath: crashed + suffix)
            }
            try await store.close()

            let recovered = try SQLiteSagaStore(path: crashed)
            let active = try await recovered.activeSagaRecords()
            #expect(active.map(\.summary.id) == (0..<50).map { "s\($0)" })
            try await recovered.close()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aStoreDroppedRightAfterItsLastAppendClosesCleanly() async throws {
        try await withTemporaryDirectory { directory in
            // The last reference may go away on the writer queue, as the group commit that resumed the
            // caller finishes; deinitialization must not deadlock or trap there.
            for index in 0..<200 {
                let store = try SQLiteSagaStore(path: directory.path(of: "dropped-\(index).sqlite"))
                try await store.append(creation("s1"))
            }
            let store = try SQLiteSagaStore(path: directory.path(of: "dropped-0.sqlite"))
            #expect(try await store.records(of: "s1").count == 1)
            try await store.close()
        }
    }

    @Test func refusesCallsAfterClose() async throws {
        try await withStore { store, _ in
            try await store.close()
            try await store.close()
            #expect(await storeError { try await store.append(creation("s1")) }?.code == .io)
            #expect(await storeError { _ = try await store.activeSagaRecords() }?.code == .io)
        }
    }

    // MARK: Opening files

    @Test func recordsTheLogFormatVersion() async throws {
        try await withStore { store, path in
            try await store.close()
            let queue = try DatabaseQueue(path: path)
            let version = try await queue.read { db in
                try String.fetchOne(db, sql: "SELECT value FROM sagakit_meta WHERE key = 'log_format_version'")
            }
            try queue.close()
            #expect(version == "2")
            #expect(SQLiteSagaStore.logFormatVersion == 2)
        }
    }

    @Test func refusesANewerLogFormatAndLeavesTheFileUntouched() async throws {
        try await withStore { store, path in
            try await store.append(creation("s1"))
            try await store.close()
            let queue = try DatabaseQueue(path: path)
            try await queue.write { db in
                try db.execute(sql: "UPDATE sagakit_meta SET value = '3' WHERE key = 'log_format_version'")
            }
            try queue.close()
            let before = try fileBytes(path)

            let error = await storeError { _ = try SQLiteSagaStore(path: path) }
            #expect(error?.code == .unsupportedLogFormat)
            #expect(error?.path == path)
            #expect(error?.message.contains("version 3") == true)
            #expect(try fileBytes(path) == before)
        }
    }

    @Test func refusesATextFileAndLeavesItUntouched() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "notes.txt")
            let text = Data(String(repeating: "these are my notes, not a saga log\n", count: 200).utf8)
            try text.write(to: URL(fileURLWithPath: path))

            let error = await storeError { _ = try SQLiteSagaStore(path: path) }
            #expect(error?.code == .notADatabase)
            #expect(error?.message.contains(path) == true)
            #expect(try fileBytes(path) == text)
            #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        }
    }

    @Test func refusesADirectoryPath() async throws {
        try await withTemporaryDirectory { directory in
            let error = await storeError { _ = try SQLiteSagaStore(path: directory.path) }
            #expect(error?.code == .cannotOpen)
            #expect(error?.path == directory.path)
        }
    }

    @Test func refusesAPathInAMissingDirectory() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "missing/sagas.sqlite")
            let error = await storeError { _ = try SQLiteSagaStore(path: path) }
            #expect(error?.code == .cannotOpen)
            #expect(error?.message.contains(path) == true)
            #expect(!FileManager.default.fileExists(atPath: directory.path(of: "missing")))
        }
    }

    @Test func reportsADamagedFileWithoutRepairingIt() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "sagas.sqlite")
            let store = try SQLiteSagaStore(path: path)
            for index in 0..<300 {
                try await store.append(
                    creation(
                        "s\(index)", at: at(Double(index)), input: Data(repeating: UInt8(index % 251), count: 1_000)))
            }
            try await store.close()

            var bytes = try fileBytes(path)
            let pageSize = 4096
            let pages = bytes.count / pageSize
            #expect(pages > 40)
            let damaged = (pages / 4 * pageSize)..<(pages * 3 / 4 * pageSize)
            bytes.replaceSubrange(damaged, with: Data(repeating: 0xA5, count: damaged.count))
            try bytes.write(to: URL(fileURLWithPath: path))

            let reopened: SQLiteSagaStore
            do {
                reopened = try SQLiteSagaStore(path: path)
            } catch let error as SagaStoreError {
                #expect([.corrupt, .notADatabase].contains(error.code))
                #expect(try fileBytes(path) == bytes)
                return
            }
            let error = await storeError { _ = try await reopened.activeSagaRecords() }
            #expect(error.map { [.corrupt, .notADatabase].contains($0.code) } == true, "\(String(describing: error))")
            #expect(error?.path == path)
            try await reopened.close()
            // Opening neither repaired, recreated nor truncated the file: the damage is still there.
            let after = try fileBytes(path)
            #expect(after.count >= bytes.count)
            #expect(after[damaged] == bytes[damaged])
        }
    }

    // MARK: Sharing the file

    @Test(.timeLimit(.minutes(1)))
    func reportsALockHeldLongerThanTheBusyTimeout() async throws {
        var configuration = SQLiteSagaStore.Configuration()
        configuration.busyTimeout = .milliseconds(100)
        try await withStore(configuration: configuration) { store, path in
            try await store.append(creation("s1"))
            var options = GRDB.Configuration()
            options.allowsUnsafeTransactions = true
            let other = try DatabaseQueue(path: path, configuration: options)
            try await other.writeWithoutTransaction { try $0.execute(sql: "BEGIN EXCLUSIVE") }

            let error = await storeError { try await store.append(creation("s2")) }
            #expect(error?.code == .locked)
            #expect(error?.path == path)

            try await other.writeWithoutTransaction { try $0.execute(sql: "COMMIT") }
            try other.close()
            try await store.append(creation("s2"))
            #expect(try await store.summary(of: "s2") != nil)
        }
    }

    @Test func refusesASecondStoreOnTheSameLogUntilTheFirstCloses() async throws {
        try await withStore { store, path in
            let error = await storeError { _ = try SQLiteSagaStore(path: path) }
            #expect(error?.code == .inUse)
            #expect(error?.path == path)
            #expect(error?.message.contains(path) == true)

            try await store.close()
            let next = try SQLiteSagaStore(path: path)
            try await next.close()
        }
    }

    // MARK: Running out of space

    @Test(.timeLimit(.minutes(1)))
    func reportsDiskFullAndKeepsEverythingCommittedBefore() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "sagas.sqlite")
            var configuration = SQLiteSagaStore.Configuration()
            configuration.maxPageCount = 60
            let store = try SQLiteSagaStore(path: path, configuration: configuration)

            // Fill the file one append at a time until it is full.
            var committed: [String] = []
            var fullError: SagaStoreError?
            for index in 0..<1_000 where fullError == nil {
                do {
                    try await store.append(
                        creation("s\(index)", at: at(Double(index)), input: Data(repeating: 7, count: 2_000)))
                    committed.append("s\(index)")
                } catch let error as SagaStoreError {
                    fullError = error
                }
            }
            #expect(fullError?.code == .diskFull)
            #expect(committed.count > 10)

            // A burst of concurrent appends shares transactions; each one either commits or fails whole.
            let burst = await withTaskGroup(of: (String, Result<Void, any Error>).self) { group in
                for index in 0..<20 {
                    let id = "burst-\(index)"
                    group.addTask {
                        (
                            id,
                            await result {
                                try await store.append(
                                    creation(id, at: at(5_000), input: Data(repeating: 1, count: 300)))
                            }
                        )
                    }
                }
                return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            for (id, outcome) in burst {
                if case .failure(let error) = outcome {
                    #expect((error as? SagaStoreError)?.code == .diskFull, "\(id): \(error)")
                } else {
                    committed.append(id)
                }
            }
            try await store.close()

            let reopened = try SQLiteSagaStore(path: path)
            let stored = try await reopened.sagas(matching: SagaQuery(limit: 10_000)).map(\.id)
            #expect(Set(stored) == Set(committed))
            for id in committed.prefix(5) {
                #expect(try await reopened.records(of: id).count == 1)
            }
            try await reopened.close()
        }
    }
}
