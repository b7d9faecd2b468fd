#if Postgres
import Foundation
import SagaKit
import SagaKitPostgres
import SagaKitTesting
import Synchronization
import Testing

@Suite(
    .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipReason),
    .timeLimit(.minutes(2))
)
struct PostgresSagaStoreTests {
    @Test func keepsTheStoreContract() async throws {
        // One running store (with a schema of its own) per check of the contract.
        let configurations = try (0..<SagaStoreContract.rules.count).map { _ in
            try PostgresTestDatabase.freshConfiguration()
        }
        try await withRunningStores(configurations) { stores in
            let pool = StorePool(stores)
            try await SagaStoreContract { try pool.next() }.verify()
        }
    }

    @Test func migratesOnceAndRecordsTheLogFormat() async throws {
        let configuration = try PostgresTestDatabase.freshConfiguration()
        // Three stores start together on one new schema, then a fourth opens it again.
        try await withRunningStores([configuration, configuration, configuration], keepingSchemas: true) { stores in
            try await stores[0].append(Records.create("kept"))
        }
        try await withRunningStores([configuration]) { stores async throws in
            let store = stores[0]
            #expect(
                Set(try await store.executeForTesting("SELECT id FROM sagakit_migrations").compactMap { $0 })
                    == Set(PostgresSagaStore.migrationIDs))
            #expect(
                try await store.executeForTesting("SELECT value FROM sagakit_meta WHERE key = 'log_format_version'")
                    == ["\(PostgresSagaStore.logFormatVersion)"])
            #expect(PostgresSagaStore.logFormatVersion == 2)
            #expect(try await store.records(of: "kept").count == 2)
        }
    }

    @Test func refusesANewerLogFormat() async throws {
        let configuration = try PostgresTestDatabase.freshConfiguration()
        try await withRunningStores([configuration]) { stores in
            _ = try await stores[0].executeForTesting(
                "UPDATE sagakit_meta SET value = '\(PostgresSagaStore.logFormatVersion + 1)' WHERE key = 'log_format_version' RETURNING value"
            )
            let store = PostgresSagaStore(configuration: configuration)
            let error = await #expect(throws: SagaStoreError.self) { try await store.run() }
            #expect(error?.code == .unsupportedLogFormat)
            #expect(error?.message.contains("format version \(PostgresSagaStore.logFormatVersion + 1)") == true)
            let waiting = await #expect(throws: SagaStoreError.self) { try await store.waitUntilReady() }
            #expect(waiting?.code == .unsupportedLogFormat)
            let append = await #expect(throws: SagaStoreError.self) { try await store.append(Records.create("x")) }
            #expect(append?.code == .unsupportedLogFormat)
        }
    }

    @Test func groupCommitWritesConcurrentAppendsInFewerTransactions() async throws {
        try await withRunningStore { store in
            let before = store.committedTransactionCount
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<200 {
                    group.addTask { try await store.append(Records.create("g\(index)")) }
                }
                try await group.waitForAll()
            }
            let transactions = store.committedTransactionCount - before
            #expect(transactions < 200)
            #expect(try await store.sagas(matching: SagaQuery(limit: 1_000)).count == 200)

            // Held until all 50 are queued, they share exactly one transaction.
            let held = store.committedTransactionCount
            let results = await appendInOneBatch(store, (0..<50).map { Records.next("g\($0)", 3) })
            #expect(results.allSatisfy { (try? $0.get()) != nil })
            #expect(store.committedTransactionCount - held == 1)
        }
    }

    @Test func oneSagasQueuedAppendsCommitInOrderWithSeveralCommitsInFlight() async throws {
        var configuration = try PostgresTestDatabase.freshConfiguration()
        configuration.maximumCommitsInFlight = 4
        try await withRunningStores([configuration]) { stores in
            let store = stores[0]
            try await store.append(Records.create("ordered"))
            // Eight appends of one saga, queued one after another in sequence order, between the creations
            // of other sagas; released together, four writers take batches at once. Each batch may take
            // only an append whose predecessor has been answered, or the fence refuses the one that
            // overtook it.
            store.holdAppendsForTesting(true)
            let results = await withTaskGroup(of: (Int, Bool).self) { group in
                for sequence in 3...10 {
                    let queued = store.queuedAppendCount
                    group.addTask { (sequence, (try? await store.append(Records.next("ordered", sequence))) != nil) }
                    group.addTask { (0, (try? await store.append(Records.create("other-\(sequence)"))) != nil) }
                    while store.queuedAppendCount < queued + 2 { await Task.yield() }
                }
                store.holdAppendsForTesting(false)
                var results: [(Int, Bool)] = []
                for await result in group { results.append(result) }
                return results
            }
            let refused = results.filter { !$0.1 }.map(\.0)
            #expect(refused.isEmpty, "appends refused: \(refused)")
            #expect(try await store.records(of: "ordered").map(\.sequence) == Array(1...10))
            #expect(try await store.sagas(matching: SagaQuery(limit: 100)).count == 9)
        }
    }

    @Test func aRefusedAppendInABatchFailsAlone() async throws {
        try await withRunningStore { store in
            try await store.append(Records.create("taken"))
            try await store.append(Records.create("s1"))
            try await store.append(Records.create("s2"))
            let before = store.committedTransactionCount
            let results = await appendInOneBatch(
                store,
                [
                    Records.next("s1", 2),  // duplicate sequence
                    Records.next("s2", 3),
                    Records.create("taken"),  // id taken
                    Records.create("new"),
                    Records.next("ghost", 1),  // unknown saga
                    Records.next("s2", 9),  // a second append of s2: waits for the next batch, then does not follow
                ])
            #expect(results[0].failure?.code == .duplicateRecord)
            #expect(results[1].failure == nil)
            #expect(results[2].failure?.code == .sagaAlreadyExists)
            #expect(results[3].failure == nil)
            #expect(results[4].failure?.code == .unknownSaga)
            #expect(results[5].failure?.code == .duplicateRecord)
            #expect(store.committedTransactionCount - before == 2)
            #expect(try await store.records(of: "s1").map(\.sequence) == [1, 2])
            #expect(try await store.records(of: "s2").map(\.sequence) == [1, 2, 3])
            #expect(try await store.records(of: "new").map(\.sequence) == [1, 2])
            #expect(try await store.records(of: "ghost").isEmpty)
            #expect(try await store.records(of: "taken").count == 2)
        }
    }

    @Test func aClaimedSagaFencesOutItsFormerOwner() async throws {
        let configuration = try PostgresTestDatabase.freshConfiguration()
        try await withRunningStores([configuration, configuration]) { stores in
            let (a, b) = (stores[0], stores[1])
            try await a.append(Records.create("fenced"))
            try await a.append(Records.create("other"))
            // A's heartbeat is fresh: B claims nothing and does not list A's sagas as its own.
            #expect(try await b.claimOrphanedSagas().isEmpty)
            #expect(try await b.activeSagaRecords().isEmpty)

            // A's lease runs out (its heartbeat is moved an hour back); B claims A's sagas, one at a time.
            _ = try await a.executeForTesting(
                "UPDATE sagakit_engines SET heartbeat_at = now() - interval '1 hour' WHERE instance_id = '\(a.instanceID)' RETURNING 'x'"
            )
            let claimed = try await b.claimOrphanedSagas(limit: 1)
            #expect(claimed.map(\.summary.id) == ["fenced"])
            #expect(claimed.first?.records.map(\.sequence) == [1, 2])
            #expect(
                try await b.executeForTesting(
                    "SELECT owner::text || ' ' || epoch FROM sagakit_sagas WHERE id = 'fenced'")
                    == ["\(b.instanceID.uuidString.lowercased()) 2"])

            // A's next append to the claimed saga fails and writes nothing; its append to a saga it still
            // owns, in the same batch, commits.
            let results = await appendInOneBatch(a, [Records.next("fenced", 3), Records.next("other", 3)])
            #expect(results[0].failure?.code == .ownershipLost)
            #expect(results[0].failure?.message.contains("no longer this engine's") == true)
            #expect(results[1].failure == nil)
            #expect(try await b.records(of: "fenced").map(\.sequence) == [1, 2])
            #expect(try await b.summary(of: "fenced")?.status == .running)

            // B, the owner at epoch 2, appends.
            try await b.append(Records.next("fenced", 3, status: .completed))
            #expect(try await b.records(of: "fenced").map(\.sequence) == [1, 2, 3])
            #expect(try await a.summary(of: "fenced")?.status == .completed)
        }
    }

    @Test func recoveryClaimsTheSagasOfAnEngineThatClosed() async throws {
        let configuration = try PostgresTestDatabase.freshConfiguration()
        try await withRunningStores([configuration, configuration]) { stores in
            let (keeper, survivor) = (stores[0], stores[1])
            try await survivor.append(Records.create("mine"))
            try await withRunningStores([configuration], keepingSchemas: true) { departed in
                try await departed[0].append(Records.create("orphan", status: .compensating))
                try await departed[0].append(Records.create("finished", status: .completed))
            }
            // The departed store removed its engine row when it closed: its saga is claimable at once.
            let active = try await survivor.activeSagaRecords()
            #expect(Set(active.map(\.summary.id)) == ["mine", "orphan"])
            #expect(try await keeper.activeSagaRecords().isEmpty)
            try await survivor.append(Records.next("orphan", 3, status: .compensated))
        }
    }

    @Test func adoptsASagaNoEngineRunsButNotOneAnotherEngineRuns() async throws {
        let configuration = try PostgresTestDatabase.freshConfiguration()
        try await withRunningStores([configuration, configuration]) { stores in
            let (a, b) = (stores[0], stores[1])
            try await a.append(Records.create("stuck", status: .needsAttention))
            try await a.append(Records.create("busy"))
            // An operator's action through B reaches a saga that needs attention.
            try await b.append(Records.next("stuck", 3, status: .running))
            #expect(
                try await b.executeForTesting(
                    "SELECT owner::text || ' ' || epoch FROM sagakit_sagas WHERE id = 'stuck'")
                    == ["\(b.instanceID.uuidString.lowercased()) 2"])
            // A running saga of a live engine is refused.
            let error = await #expect(throws: SagaStoreError.self) { try await b.append(Records.next("busy", 3)) }
            #expect(error?.code == .ownershipLost)
            #expect(try await a.records(of: "busy").count == 2)
            // And A, having lost "stuck" to B, is refused there.
            let lost = await #expect(throws: SagaStoreError.self) { try await a.append(Records.next("stuck", 4)) }
            #expect(lost?.code == .ownershipLost)
        }
    }

    @Test func leaseIsCurrentAfterARenewalYoungerThanTheLease() async throws {
        var short = try PostgresTestDatabase.freshConfiguration()
        short.lease = .zero
        var long = short
        long.lease = .seconds(3_600)
        try await withRunningStores([long, short]) { stores in
            #expect(stores[0].leaseIsCurrent)
            try await stores[0].renewHeartbeat()
            #expect(stores[0].leaseIsCurrent)
            #expect(!stores[1].leaseIsCurrent)
            let rows = try await stores[0].executeForTesting(
                "SELECT count(*)::text FROM sagakit_engines WHERE heartbeat_at > started_at OR heartbeat_at = started_at"
            )
            #expect(rows == ["2"])
        }
    }

    @Test func closedStoreRefusesAppends() async throws {
        let configuration = try PostgresTestDatabase.freshConfiguration()
        let store = try await withRunningStores([configuration]) { stores in stores[0] }
        let error = await #expect(throws: SagaStoreError.self) { try await store.append(Records.create("late")) }
        #expect(error?.code == .io)
        #expect(error?.message.contains("closed") == true)
    }
}

@Suite(
    .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipReason),
    .timeLimit(.minutes(1))
)
struct PostgresSagaStoreOpeningTests {
    func openingError(_ change: (inout PostgresSagaStore.Configuration) -> Void) async throws -> SagaStoreError? {
        var configuration = try PostgresTestDatabase.freshConfiguration()
        configuration.connectTimeout = .seconds(5)
        change(&configuration)
        let store = PostgresSagaStore(configuration: configuration)
        return await #expect(throws: SagaStoreError.self) { try await store.run() }
    }

    @Test func aRefusedConnectionNamesTheServer() async throws {
        let error = try await openingError { $0.port = 1 }
        #expect(error?.code == .cannotOpen)
        #expect(error?.message.contains(":1/") == true)
        #expect(error?.message.contains("cannot reach PostgreSQL") == true)
    }

    @Test func refusedCredentialsNameTheServerAndCause() async throws {
        let error = try await openingError { $0.username = "sagakit_no_such_role" }
        #expect(error?.code == .cannotOpen)
        #expect(error?.message.contains("refused the credentials") == true)
        #expect(error?.message.contains("sagakit_no_such_role") == true)
    }

    @Test func aMissingDatabaseIsNamed() async throws {
        let error = try await openingError { $0.database = "sagakit_no_such_database" }
        #expect(error?.code == .cannotOpen)
        #expect(error?.message.contains("/sagakit_no_such_database") == true)
        #expect(error?.message.contains("does not exist") == true)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct PostgresSagaStoreConfigurationTests {
    @Test func parsesAURL() throws {
        let configuration = try PostgresSagaStore.Configuration(
            url: "postgresql://me:s%40cret@db.internal:6543/logs?sslmode=disable&schema=sagas")
        #expect(configuration.host == "db.internal")
        #expect(configuration.port == 6543)
        #expect(configuration.username == "me")
        #expect(configuration.password == "s@cret")
        #expect(configuration.database == "logs")
        #expect(configuration.schema == "sagas")
        #expect(configuration.tls == .disable)
        let error = #expect(throws: SagaStoreError.self) {
            try PostgresSagaStore.Configuration(url: "mysql://me:secret@db/logs")
        }
        #expect(error?.message.contains("secret") == false)
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
#endif
