import Dispatch
import Foundation
import GRDB
import Logging
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Synchronization
import Testing

struct Order: Codable, Sendable, Equatable {
    var sku: String
    var quantity: Int
}

struct Reservation: Codable, Sendable, Equatable {
    var id: Int64
    var quantity: Int
}

/// A local step writing the application's `reservations` table in the log's transaction.
let reserveStock = SagaStep<Order, Reservation>.local("reserve-stock") { db, context in
    try db.execute(
        sql: "INSERT INTO reservations (saga_id, sku, quantity) VALUES (?, ?, ?)",
        arguments: [context.sagaID, context.input.sku, context.input.quantity]
    )
    return Reservation(id: db.lastInsertedRowID, quantity: context.input.quantity)
} compensation: { db, reservation, context in
    try db.execute(
        sql: "DELETE FROM reservations WHERE id = ? OR saga_id = ?", arguments: [reservation?.id, context.sagaID])
}

/// A local step that writes, then throws.
let failingReservation = SagaStep<Order, Reservation>.local("reserve-stock", kind: .pivot) { db, context in
    try db.execute(
        sql: "INSERT INTO reservations (saga_id, sku, quantity) VALUES (?, ?, ?)",
        arguments: [context.sagaID, context.input.sku, context.input.quantity]
    )
    throw PlannedFailure()
}

/// Creates the application's table in the file the store will use, as an application would.
func makeApplicationDatabase(_ path: String) throws {
    let queue = try DatabaseQueue(path: path)
    try queue.write { db in
        try db.execute(
            sql:
                "CREATE TABLE reservations (id INTEGER PRIMARY KEY, saga_id TEXT NOT NULL UNIQUE, sku TEXT NOT NULL, quantity INTEGER NOT NULL)"
        )
    }
    try queue.close()
}

/// The saga ids with a reservation, read on a connection of its own.
func reservedSagas(_ path: String) throws -> [String] {
    var options = GRDB.Configuration()
    options.readonly = true
    let queue = try DatabaseQueue(path: path, configuration: options)
    defer { try? queue.close() }
    return try queue.read { db in try String.fetchAll(db, sql: "SELECT saga_id FROM reservations ORDER BY saga_id") }
}

func work(_ step: AnySagaStep, saga: String, input: Order, loggedOutput: Data? = nil) -> LocalStepWork {
    LocalStepWork(
        body: (loggedOutput == nil ? step.local : step.localCompensation)!,
        sagaID: saga, stepName: step.name, idempotencyKey: "\(saga)/\(step.name)", loggedOutput: loggedOutput,
        input: input, attempt: 1, outputs: StepOutputs()
    )
}

/// The outcome append the engine would build for a local step.
func outcome(_ saga: String, _ sequence: Int, _ kind: SagaLogRecord.Kind, payload: Data?, status: SagaStatus = .running)
    -> SagaLogAppend
{
    SagaLogAppend(
        sagaID: saga, records: [record(saga, sequence, kind, step: "reserve-stock", attempt: 1, payload: payload)],
        status: status)
}

extension SQLiteSagaStoreTests {
    @Test func localWorkCommitsWithItsRecordAndItsCompensationWithItsOwn() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "shop.sqlite")
            try makeApplicationDatabase(path)
            let store = try SQLiteSagaStore(path: path)
            let step = AnySagaStep(reserveStock)
            let order = Order(sku: "tea", quantity: 2)
            try await store.append(creation("s1"))

            let output = try await store.appendAfterLocalWork(work(step, saga: "s1", input: order)) { output in
                outcome("s1", 2, .stepSucceeded, payload: output)
            }
            let reservation = try JSONDecoder().decode(Reservation.self, from: output)
            #expect(reservation.quantity == 2)
            #expect(try reservedSagas(path) == ["s1"])
            #expect(try await store.records(of: "s1").last?.payload == output)

            _ = try await store.appendAfterLocalWork(work(step, saga: "s1", input: order, loggedOutput: output)) { _ in
                outcome("s1", 3, .compensationSucceeded, payload: nil, status: .compensating)
            }
            #expect(try reservedSagas(path).isEmpty)
            #expect(
                try await store.records(of: "s1").map(\.kind) == [.sagaStarted, .stepSucceeded, .compensationSucceeded])
            #expect(try await store.summary(of: "s1")?.status == .compensating)
            try await store.close()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aThrowingLocalBodyLeavesNothingWhileItsBatchCommits() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "shop.sqlite")
            try makeApplicationDatabase(path)
            let store = try SQLiteSagaStore(path: path)
            let order = Order(sku: "tea", quantity: 1)
            for saga in ["holder", "failing", "plain"] {
                try await store.append(creation(saga))
            }

            // "holder" keeps the writer busy until "failing" and "plain" wait together for the next commit.
            let entered = Mutex(false)
            let release = DispatchSemaphore(value: 0)
            let holder = SagaStep<Order, Reservation>.local("reserve-stock") { db, context in
                entered.withLock { $0 = true }
                release.wait()
                try db.execute(
                    sql: "INSERT INTO reservations (saga_id, sku, quantity) VALUES (?, 'tea', 1)",
                    arguments: [context.sagaID])
                return Reservation(id: db.lastInsertedRowID, quantity: 1)
            } compensation: { _, _, _ in
            }
            let before = store.committedTransactionCount

            async let held = result {
                try await store.appendAfterLocalWork(work(AnySagaStep(holder), saga: "holder", input: order)) {
                    output in
                    outcome("holder", 2, .stepSucceeded, payload: output)
                }
            }
            while !entered.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(1)) }
            async let failed = result {
                try await store.appendAfterLocalWork(
                    work(AnySagaStep(failingReservation), saga: "failing", input: order)
                ) { output in
                    outcome("failing", 2, .stepSucceeded, payload: output)
                }
            }
            async let plain = result {
                try await store.append(
                    SagaLogAppend(sagaID: "plain", records: [record("plain", 2, .sagaCompleted)], status: .completed))
            }
            while store.queuedWriteCount < 2 { try await Task.sleep(for: .milliseconds(1)) }
            release.signal()

            let (heldResult, failedResult, plainResult) = await (held, failed, plain)
            #expect((try? heldResult.get()) != nil)
            #expect(throws: PlannedFailure.self) { try failedResult.get() }
            #expect((try? plainResult.get()) != nil)
            #expect(
                store.committedTransactionCount - before == 2, "one commit for the holder, one shared by the other two")
            #expect(try reservedSagas(path) == ["holder"])
            #expect(try await store.records(of: "failing").map(\.kind) == [.sagaStarted])
            #expect(try await store.records(of: "plain").map(\.kind) == [.sagaStarted, .sagaCompleted])
            #expect(try await store.summary(of: "plain")?.status == .completed)
            try await store.close()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aLostBatchTransactionRetriesEachOtherAppendAlone() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "shop.sqlite")
            try makeApplicationDatabase(path)
            let store = try SQLiteSagaStore(path: path)
            let order = Order(sku: "tea", quantity: 1)
            for saga in ["holder", "rogue", "a", "b"] {
                try await store.append(creation(saga))
            }
            let entered = Mutex(false)
            let release = DispatchSemaphore(value: 0)
            let holder = SagaStep<Order, NoOutput>.local("reserve-stock", kind: .pivot) { _, _ in
                entered.withLock { $0 = true }
                release.wait()
                return NoOutput()
            }
            // Misbehaves: ends the log's transaction, losing every write batched before it.
            let rogue = SagaStep<Order, NoOutput>.local("reserve-stock", kind: .pivot) { db, context in
                try db.execute(
                    sql: "INSERT INTO reservations (saga_id, sku, quantity) VALUES (?, 'tea', 1)",
                    arguments: [context.sagaID])
                try db.execute(sql: "ROLLBACK")
                throw PlannedFailure()
            }
            let before = store.committedTransactionCount

            async let held = result {
                try await store.appendAfterLocalWork(work(AnySagaStep(holder), saga: "holder", input: order)) {
                    output in
                    outcome("holder", 2, .stepSucceeded, payload: output)
                }
            }
            while !entered.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(1)) }
            async let a = result {
                try await store.append(
                    SagaLogAppend(sagaID: "a", records: [record("a", 2, .sagaCompleted)], status: .completed))
            }
            async let failed = result {
                try await store.appendAfterLocalWork(work(AnySagaStep(rogue), saga: "rogue", input: order)) { output in
                    outcome("rogue", 2, .stepSucceeded, payload: output)
                }
            }
            async let b = result {
                try await store.append(
                    SagaLogAppend(sagaID: "b", records: [record("b", 2, .sagaCompleted)], status: .completed))
            }
            while store.queuedWriteCount < 3 { try await Task.sleep(for: .milliseconds(1)) }
            release.signal()

            let (heldResult, aResult, failedResult, bResult) = await (held, a, failed, b)
            #expect((try? heldResult.get()) != nil)
            #expect(throws: PlannedFailure.self) { try failedResult.get() }
            #expect((try? aResult.get()) != nil)
            #expect((try? bResult.get()) != nil)
            #expect(store.committedTransactionCount - before == 3, "the holder's commit, then one for a and one for b")
            #expect(try reservedSagas(path).isEmpty)
            #expect(try await store.records(of: "rogue").map(\.kind) == [.sagaStarted])
            #expect(try await store.sagas(matching: SagaQuery(status: [.completed])).map(\.id).sorted() == ["a", "b"])
            try await store.close()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func anEngineRunsLocalStepsExactlyOnceAndCompensatesThem() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "shop.sqlite")
            try makeApplicationDatabase(path)
            let store = try SQLiteSagaStore(path: path)
            let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
            let charge = SagaStep<Order, NoOutput>.pivot("charge") { context in
                if context.input.sku == "declined" { throw NonRetryableError("card declined") }
                return NoOutput()
            }
            let placeOrder = SagaDefinition<Order, Reservation>("place-order", returning: reserveStock) {
                reserveStock
                charge
            }
            let engine = SagaEngine(store: store, logger: logger)
            let (completed, compensated) = try await withRunningSagaEngine(engine) { engine in
                (
                    try await engine.execute(placeOrder, id: "ok", input: Order(sku: "tea", quantity: 3)),
                    try await engine.execute(placeOrder, id: "declined", input: Order(sku: "declined", quantity: 1))
                )
            }
            #expect(completed.output?.quantity == 3)
            #expect(compensated.status == .compensated)
            #expect(try reservedSagas(path) == ["ok"])
            let kinds = try await store.records(of: "declined").map(\.kind)
            #expect(kinds.contains(.stepSucceeded))
            #expect(kinds.contains(.compensationSucceeded))
            #expect(kinds.last == .sagaCompensated)
            try await store.close()
        }
    }
}
