#if Postgres
import Foundation
import Logging
import PostgresNIO
import SagaKit
import SagaKitPostgres
import SagaKitTesting
import Testing

/// `SagaStep.postgresLocal`: a step's writes to the log's database commit in the transaction of its
/// outcome record, under the saga's fence, or not at all.
@Suite(
    .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipReason),
    .timeLimit(.minutes(2))
)
struct PostgresLocalStepTests {
    static let logger = Logger(label: "sagakit.tests", factory: { _ in SwiftLogNoOpLogHandler() })

    struct Refused: Error {}

    /// reserve (remote), hold (local, compensated by deleting its row), then create (the local pivot,
    /// which inserts an order and, when `failPivot`, throws after inserting it).
    static func saga(_ participant: PostgresEngineTests.Participant, failPivot: Bool = false) -> SagaDefinition<
        Int, Int64
    > {
        let create = SagaStep<Int, Int64>.postgresLocal("create", kind: .pivot) { connection, context in
            let rows = try await connection.query(
                "INSERT INTO orders (saga_id, quantity) VALUES (\(context.sagaID), \(context.input)) RETURNING id",
                logger: logger)
            var id: Int64 = 0
            for try await value in rows.decode(Int64.self) { id = value }
            if failPivot { throw NonRetryableError("the order cannot be written", type: "Refused") }
            return id
        }
        return SagaDefinition("pg-local", returning: create) {
            SagaStep<Int, String>.compensatable("reserve") { context in
                await participant.call("reserve", key: context.idempotencyKey)
                return "reserved"
            } compensation: { _, context in
                await participant.call("undo-reserve", key: context.idempotencyKey)
            }
            SagaStep<Int, Int64>.postgresLocal("hold") { connection, context in
                try await connection.query(
                    "INSERT INTO holds (saga_id, quantity) VALUES (\(context.sagaID), \(context.input))",
                    logger: logger)
                await participant.call("hold", key: context.idempotencyKey)
                return Int64(context.input)
            } compensation: { connection, held, context in
                #expect(held == Int64(context.input))
                try await connection.query("DELETE FROM holds WHERE saga_id = \(context.sagaID)", logger: logger)
            }
            create
        }
    }

    static func prepareTables(_ store: PostgresSagaStore) async throws {
        try await store.withConnection { connection in
            try await connection.query(
                "CREATE TABLE orders (id bigserial PRIMARY KEY, saga_id text NOT NULL UNIQUE, quantity int NOT NULL)",
                logger: logger)
            try await connection.query(
                "CREATE TABLE holds (saga_id text PRIMARY KEY, quantity int NOT NULL)", logger: logger)
        }
    }

    static func count(_ table: String, _ store: PostgresSagaStore) async throws -> Int {
        try await store.withConnection { connection in
            var count = -1
            for try await value in try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table)"), logger: logger
            ).decode(Int.self) {
                count = value
            }
            return count
        }
    }

    @Test func aLocalStepsWritesCommitWithItsRecord() async throws {
        let participant = PostgresEngineTests.Participant()
        try await withRunningStore { store in
            try await Self.prepareTables(store)
            let outcome = try await withRunningSagaEngine(SagaEngine(store: store, logger: Self.logger)) { engine in
                try await engine.execute(Self.saga(participant), id: "local-1", input: 3)
            }
            #expect(outcome.status == .completed)
            #expect(try await Self.count("orders", store) == 1)
            #expect(try await Self.count("holds", store) == 1)
            let records = try await store.records(of: "local-1")
            let created = records.first { $0.kind == .stepSucceeded && $0.step == "create" }
            #expect(created?.payload.map { String(decoding: $0, as: UTF8.self) } == "1")
            // One transaction per local step: the work and its record.
            #expect(records.filter { $0.step == "create" }.map(\.kind) == [.stepStarted, .stepSucceeded])
        }
    }

    @Test func aFailedLocalPivotRollsBackItsWritesAndTheSagaCompensatesLocallyToo() async throws {
        let participant = PostgresEngineTests.Participant()
        try await withRunningStore { store in
            try await Self.prepareTables(store)
            let outcome = try await withRunningSagaEngine(SagaEngine(store: store, logger: Self.logger)) { engine in
                try await engine.execute(Self.saga(participant, failPivot: true), id: "local-2", input: 4)
            }
            #expect(outcome.status == .compensated)
            // The pivot's insert was rolled back with its failure; the hold was undone in the
            // compensation's own transaction.
            #expect(try await Self.count("orders", store) == 0)
            #expect(try await Self.count("holds", store) == 0)
            #expect(participant.calls("undo-reserve") == ["local-2/reserve"])
            let records = try await store.records(of: "local-2")
            #expect(records.contains { $0.kind == .compensationSucceeded && $0.step == "hold" })
        }
    }

    @Test func aLocalStepRefusedByTheFenceRollsBackItsWork() async throws {
        let participant = PostgresEngineTests.Participant()
        participant.hold("hold")
        try await withRunningStore { store in
            try await Self.prepareTables(store)
            let engine = SagaEngine(store: store, logger: Self.logger)
            let error = try await withRunningSagaEngine(engine) { engine in
                let handle = try await engine.start(Self.saga(participant), id: "local-3", input: 5)
                // hold has inserted its row, in its open transaction, and waits.
                await participant.waitForCalls("hold")
                // Another engine takes the saga over meanwhile.
                _ = try await store.executeForTesting(
                    "UPDATE sagakit_sagas SET owner = gen_random_uuid(), epoch = epoch + 1 WHERE id = 'local-3' RETURNING 'x'"
                )
                participant.release("hold")
                return await #expect(throws: SagaError.self) { try await handle.outcome() }
            }
            #expect(error?.code == .ownershipLost)
            // The fence refused hold's record, and its insert was rolled back with it.
            #expect(try await Self.count("holds", store) == 0, "the fenced step's insert was committed")
            let records = try await store.records(of: "local-3")
            #expect(!records.contains { $0.step == "hold" && $0.kind == .stepSucceeded })
            #expect(try await Self.count("orders", store) == 0)
        }
    }
}
#endif
