import Dispatch
import Foundation
import GRDB
import Logging
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Synchronization
import Testing

/// The log format's compatibility promise, checked: a saga log written by log format version 1 (the
/// committed `Fixtures/golden-log-v1.sqlite`, described in `Fixtures/golden-log-v1.md`) opens with
/// today's code, reads back exactly as written, and recovers every unfinished saga in it.
///
/// The fixture is regenerated only when a new log format version gets its own golden log (never to make
/// this test pass): `SAGAKIT_WRITE_GOLDEN_LOG=1 swift test --filter GoldenLogTests/writesTheGoldenLog`.
@Suite(.tags(.logIntegrity), .timeLimit(.minutes(2))) struct GoldenLogTests {
    @Test(.timeLimit(.minutes(1)))
    func readsEverySagaOfTheVersion1LogAsWritten() async throws {
        try await withGoldenLogCopy { path in
            try await GoldenLog.checkAsWritten(path)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func recoversEveryUnfinishedSagaOfTheVersion1Log() async throws {
        try await withGoldenLogCopy { path in
            let store = try SQLiteSagaStore(path: path)
            do {
                try await checkRecovery(store, path: path)
                try await store.close()
            } catch {
                try? await store.close()
                throw error
            }
            // The copy had no commit mark; the recovering store's commits wrote one beside it, and the log
            // reopens against it with nothing left to recover.
            #expect(FileManager.default.fileExists(atPath: path + "-sagakit.lock"))
            let reopened = try SQLiteSagaStore(path: path)
            let active = await result { try await reopened.activeSagaRecords() }
            try await reopened.close()
            #expect(try active.get().isEmpty)
        }
    }

    /// Writes `Fixtures/golden-log-v1.sqlite` from scratch: run only to create the golden log of a log
    /// format version, with `SAGAKIT_WRITE_GOLDEN_LOG=1`.
    @Test(
        .enabled(
            if: ProcessInfo.processInfo.environment["SAGAKIT_WRITE_GOLDEN_LOG"] == "1",
            "writes the golden log into the source tree; set SAGAKIT_WRITE_GOLDEN_LOG=1 to run it"),
        .timeLimit(.minutes(1))
    )
    func writesTheGoldenLog() async throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        try FileManager.default.createDirectory(at: fixtures, withIntermediateDirectories: true)
        let destination = fixtures.appendingPathComponent(GoldenLog.fileName).path
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: GoldenLog.fileName)
            try await GoldenLog.write(path)
            // close() checkpointed the -wal file into the database file: the database file alone is the log.
            let wal = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
            #expect(wal == 0, "the -wal file still holds \(wal) bytes after close()")
            if FileManager.default.fileExists(atPath: destination) {
                try FileManager.default.removeItem(atPath: destination)
            }
            try FileManager.default.copyItem(atPath: path, toPath: destination)
        }
        // What the committed file will hold: the database file alone, read by the checks of the test.
        try await withTemporaryDirectory { directory in
            let copy = directory.path(of: GoldenLog.fileName)
            try FileManager.default.copyItem(atPath: destination, toPath: copy)
            try await GoldenLog.checkAsWritten(copy)
        }
    }

    /// Opens the fixture's log, resumes its unfinished sagas with the definitions they were written by, and
    /// checks how each ends, what its participants were asked to do, and that the settled sagas stay as
    /// they were.
    private func checkRecovery(_ store: SQLiteSagaStore, path: String) async throws {
        let before = try await store.sagas(matching: SagaQuery(limit: 100))
        var histories: [String: [SagaLogRecord]] = [:]
        for saga in before { histories[saga.id] = try await store.records(of: saga.id) }

        let clock = ManualSagaClock(start: GoldenLog.recoveryStart)
        let world = GoldenLog.World(GoldenLog.effectsBeforeRecovery, clock: clock)
        let engine = SagaEngine(store: store, configuration: GoldenLog.configuration(clock: clock), logger: quietLogger)
        let sagas = GoldenLog.Sagas(world: world)
        try sagas.register(on: engine)

        let outcomes = try await withRunningSagaEngine(engine) { engine in
            var outcomes: [String: GoldenLog.Outcome] = [:]
            for saga in GoldenLog.unfinished {
                outcomes[saga.id] = try await GoldenLog.outcome(of: saga, in: engine)
            }
            return outcomes
        }
        #expect(engine.strandedSagas.isEmpty, "recovery left sagas untouched: \(engine.strandedSagas)")

        for saga in GoldenLog.unfinished {
            #expect(outcomes[saga.id] == saga.outcome, "saga '\(saga.id)'")
            let summary = try await store.summary(of: saga.id)
            #expect(summary?.status == saga.outcome.status, "saga '\(saga.id)'")
            // Recovery appends to the history; what the old format wrote stays as it was.
            let old = histories[saga.id] ?? []
            let now = try await store.records(of: saga.id)
            #expect(now.count > old.count, "saga '\(saga.id)' was not resumed")
            #expect(Array(now.prefix(old.count)) == old, "saga '\(saga.id)'")
            if now.count > old.count {
                let first = now[old.count]
                #expect(first.sequence == old.count + 1, "saga '\(saga.id)'")
                #expect(first.kind == saga.resumesWith.kind, "saga '\(saga.id)'")
                #expect(first.step == saga.resumesWith.step, "saga '\(saga.id)'")
                #expect(first.attempt == saga.resumesWith.attempt, "saga '\(saga.id)'")
            }
        }
        for saga in before where !GoldenLog.unfinished.contains(where: { $0.id == saga.id }) {
            #expect(try await store.summary(of: saga.id) == saga, "saga '\(saga.id)'")
            #expect(try await store.records(of: saga.id) == histories[saga.id], "saga '\(saga.id)'")
        }

        // Each unfinished saga's participants were called again only where the log had no outcome, with the
        // saga's stable keys; the idempotent fakes applied each key's effect once.
        let state = world.state.withLock { $0 }
        #expect(state.actionCalls == GoldenLog.actionCallsDuringRecovery)
        #expect(state.compensationCalls == GoldenLog.compensationCallsDuringRecovery)
        #expect(state.applied == GoldenLog.effectsAfterRecovery.applied)
        #expect(state.undone == GoldenLog.effectsAfterRecovery.undone)
        // The local step resumed by recovery committed its row with its record; the compensated one's row is
        // gone.
        #expect(try GoldenLog.orderRows(path) == GoldenLog.orderRowsAfterRecovery)
    }
}

/// Copies the committed fixture, the database file alone, into a fresh directory and runs `body` with the
/// copy's path. The committed file is never opened in place.
private func withGoldenLogCopy(_ body: (String) async throws -> Void) async throws {
    let fixture = try #require(
        Bundle.module.url(forResource: "golden-log-v1", withExtension: "sqlite", subdirectory: "Fixtures"),
        "the golden log is missing from the test bundle")
    try await withTemporaryDirectory { directory in
        let path = directory.path(of: GoldenLog.fileName)
        try FileManager.default.copyItem(atPath: fixture.path, toPath: path)
        // Only the database file: no -wal, -shm or -sagakit.lock companion.
        for suffix in ["-wal", "-shm", "-sagakit.lock"] {
            #expect(!FileManager.default.fileExists(atPath: path + suffix))
        }
        try await body(path)
    }
}

private let quietLogger = Logger(label: "golden-log", factory: { _ in SwiftLogNoOpLogHandler() })

/// The golden log: its sagas, the definitions and participants that wrote them, and what each must look
/// like.
enum GoldenLog {
    static let fileName = "golden-log-v1.sqlite"

    // MARK: Data the sagas carry

    struct Order: Codable, Sendable, Equatable {
        var sku: String
        var quantity: Int
        var amountCents: Int
    }

    struct Reservation: Codable, Sendable, Equatable {
        var reservationID: String
        var quantity: Int
    }

    struct Payment: Codable, Sendable, Equatable {
        var paymentID: String
        var amountCents: Int
    }

    struct Hold: Codable, Sendable, Equatable {
        var holdID: String
        var amountCents: Int
    }

    struct Shipment: Codable, Sendable, Equatable {
        var trackingID: String
    }

    struct Receipt: Codable, Sendable, Equatable {
        var reservationID: String
        var paymentID: String
        var trackingID: String
    }

    /// The output of the local step: the row it inserted.
    struct OrderRow: Codable, Sendable, Equatable {
        var orderNumber: Int64
    }

    /// A retryable failure with a stable type name.
    struct StockUnavailable: SagaRetryClassifying, CustomStringConvertible {
        var isRetryable: Bool { true }
        var sagaErrorType: String { "Stock.Unavailable" }
        var description: String { "stock service unavailable" }
    }

    static let unavailable = RecordedError(
        type: "Stock.Unavailable", message: "stock service unavailable", isRetryable: true)
    static let declined = RecordedError(type: "Payments.Declined", message: "card declined", isRetryable: false)

    /// The input of the saga started `index`-th.
    static func input(_ index: Int) -> Order {
        Order(sku: "sku-\(index)", quantity: index % 3 + 1, amountCents: 1000 + 100 * index)
    }

    // MARK: Participants

    /// Idempotent fake participants: each delivery of a key is counted; its effect is applied once.
    final class World: Sendable {
        struct Effects: Equatable, Sendable {
            /// Keys (`<saga id>/<step>`) whose action took effect.
            var applied: Set<String> = []
            /// Keys whose compensation took effect.
            var undone: Set<String> = []
        }

        struct State: Sendable {
            var actionCalls: [String: Int] = [:]
            var compensationCalls: [String: Int] = [:]
            var applied: Set<String>
            var undone: Set<String>
        }

        let state: Mutex<State>
        /// The clock a participant that takes its time sleeps on.
        let clock: any SagaClock

        init(_ effects: Effects = Effects(), clock: any SagaClock) {
            state = Mutex(State(applied: effects.applied, undone: effects.undone))
            self.clock = clock
        }

        func act<Output>(_ context: StepContext<Order>, _ output: Output) async throws -> Output {
            let key = context.idempotencyKey
            state.withLock { $0.actionCalls[key, default: 0] += 1 }
            if let failure = Script.actionFailure(
                saga: context.sagaID, step: context.stepName, attempt: context.attempt)
            {
                throw failure
            }
            if let pause = Script.pause(saga: context.sagaID, step: context.stepName, attempt: context.attempt) {
                try await clock.sleep(for: pause)
            }
            // A set: a second delivery of the key changes nothing, and the output is derived from the key.
            state.withLock { _ = $0.applied.insert(key) }
            return output
        }

        func undo(_ context: CompensationContext<Order>) throws {
            let key = context.idempotencyKey
            state.withLock { $0.compensationCalls[key, default: 0] += 1 }
            if let failure = Script.compensationFailure(
                saga: context.sagaID, step: context.stepName, attempt: context.attempt)
            {
                throw failure
            }
            state.withLock { _ = $0.undone.insert(key) }
        }

        /// The effects that concern `sagas`.
        func effects(of sagas: [String]) -> Effects {
            func concerns(_ key: String) -> Bool { sagas.contains { key.hasPrefix($0 + "/") } }
            return state.withLock { Effects(applied: $0.applied.filter(concerns), undone: $0.undone.filter(concerns)) }
        }
    }

    /// Which deliveries fail: the same in the generator and in recovery.
    enum Script {
        static func actionFailure(saga: String, step: String, attempt: Int) -> (any Error)? {
            switch (saga, step) {
            case ("golden-retried", "reserve-stock") where attempt <= 2,
                ("golden-cancelled", "reserve-stock") where attempt == 1,
                ("golden-retrying", "reserve-stock") where attempt == 1:
                return StockUnavailable()
            case ("golden-compensated", "charge-payment"), ("golden-needs-attention", "charge-payment"),
                ("golden-resolved", "charge-payment"), ("golden-compensating-unknown", "charge-payment"),
                ("golden-local-compensated", "charge-payment"), ("golden-operator-retried", "charge-payment"):
                return NonRetryableError("card declined", type: "Payments.Declined")
            default:
                return nil
            }
        }

        /// How long a participant takes before it answers, when it does not answer at once.
        static func pause(saga: String, step: String, attempt: Int) -> Duration? {
            // The sibling that answers after the other's outcome is durable, and crashes before its own is.
            saga == "golden-parallel-running" && step == "hold-payment" && attempt == 1 ? .seconds(1) : nil
        }

        static func compensationFailure(saga: String, step: String, attempt: Int) -> (any Error)? {
            switch (saga, step) {
            case ("golden-needs-attention", "reserve-stock"), ("golden-resolved", "reserve-stock"),
                ("golden-operator-retried", "reserve-stock") where attempt <= 2:
                return StockUnavailable()
            default:
                return nil
            }
        }
    }

    // MARK: Definitions

    /// The three definitions the golden log was written with. Their names, steps and kinds must not change:
    /// the log records their fingerprints.
    struct Sagas: Sendable {
        /// Reserve stock (compensatable, three attempts), charge (pivot), ship (retryable).
        let order: SagaDefinition<Order, Receipt>
        /// Reserve stock and hold the payment in parallel, then capture it (pivot).
        let fulfilment: SagaDefinition<Order, Payment>
        /// Record the order in the log's own database (a local step), then charge (pivot).
        let localOrder: SagaDefinition<Order, Payment>

        init(world: World) {
            let reserve = SagaStep<Order, Reservation>.compensatable(
                "reserve-stock",
                options: StepOptions(
                    retry: .exponential(maxAttempts: 3, initialBackoff: .seconds(1), maxBackoff: .seconds(1)))
            ) { context in
                try await world.act(
                    context, Reservation(reservationID: "res-\(context.sagaID)", quantity: context.input.quantity))
            } compensation: { _, context in
                try world.undo(context)
            }
            let charge = SagaStep<Order, Payment>.pivot("charge-payment") { context in
                try await world.act(
                    context, Payment(paymentID: "pay-\(context.sagaID)", amountCents: context.input.amountCents))
            }
            let ship = SagaStep<Order, Shipment>.retryable("ship-order") { context in
                try await world.act(context, Shipment(trackingID: "trk-\(context.sagaID)"))
            }
            let hold = SagaStep<Order, Hold>.compensatable("hold-payment") { context in
                try await world.act(
                    context, Hold(holdID: "hold-\(context.sagaID)", amountCents: context.input.amountCents))
            } compensation: { _, context in
                try world.undo(context)
            }
            let capture = SagaStep<Order, Payment>.pivot("capture-payment") { context in
                try await world.act(
                    context, Payment(paymentID: "cap-\(context.sagaID)", amountCents: context.input.amountCents))
            }
            let record = SagaStep<Order, OrderRow>.local("record-order") { db, context in
                try db.execute(
                    sql: "INSERT INTO golden_orders (saga_id, sku, quantity) VALUES (?, ?, ?)",
                    arguments: [context.sagaID, context.input.sku, context.input.quantity])
                return OrderRow(orderNumber: db.lastInsertedRowID)
            } compensation: { db, _, context in
                try db.execute(sql: "DELETE FROM golden_orders WHERE saga_id = ?", arguments: [context.sagaID])
            }

            order = SagaDefinition("golden-order") {
                reserve
                charge
                ship
            } result: { context in
                Receipt(
                    reservationID: try context.output(of: reserve).reservationID,
                    paymentID: try context.output(of: charge).paymentID,
                    trackingID: try context.output(of: ship).trackingID)
            }
            fulfilment = SagaDefinition("golden-fulfilment", returning: capture) {
                Parallel {
                    reserve
                    hold
                }
                capture
            }
            localOrder = SagaDefinition("golden-local-order", returning: charge) {
                record
                charge
            }
        }

        func register(on engine: SagaEngine) throws {
            try engine.register(order)
            try engine.register(fulfilment)
            try engine.register(localOrder)
        }
    }

    /// Two compensation attempts, one second apart at most; a fixed jitter seed.
    static func configuration(clock: ManualSagaClock) -> SagaEngine.Configuration {
        SagaEngine.Configuration(
            clock: clock,
            compensationRetry: .exponential(maxAttempts: 2, initialBackoff: .seconds(1), maxBackoff: .seconds(1)),
            jitterSeed: 7)
    }

    /// The generator's clock reading when it starts; saga `i` starts `60 × i` seconds later.
    static let start = Date(timeIntervalSince1970: 1_800_000_000)
    /// The recovering engine's clock: an hour after the golden log was written.
    static let recoveryStart = start.addingTimeInterval(3600)

    /// The application's table the local step writes, in the log's own file.
    static func makeApplicationTables(_ path: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE golden_orders (
                        order_number INTEGER PRIMARY KEY,
                        saga_id TEXT NOT NULL UNIQUE,
                        sku TEXT NOT NULL,
                        quantity INTEGER NOT NULL
                    )
                    """)
        }
        try queue.close()
    }

    /// The rows of `golden_orders`, as saga id and order number, read on a connection of their own.
    static func orderRows(_ path: String) throws -> [String: Int64] {
        var options = GRDB.Configuration()
        options.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: options)
        defer { try? queue.close() }
        return try queue.read { db in
            var rows: [String: Int64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT saga_id, order_number FROM golden_orders") {
                rows[row[0]] = row[1]
            }
            return rows
        }
    }

    /// The values of `sagakit_meta`, read on a connection of their own.
    static func meta(_ path: String) throws -> [String: String] {
        var options = GRDB.Configuration()
        options.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: options)
        defer { try? queue.close() }
        return try queue.read { db in
            var values: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT key, value FROM sagakit_meta") {
                values[row[0]] = row[1]
            }
            return values
        }
    }

    // MARK: Writing the golden log

    /// Writes the golden log at `path`: every saga in turn, on one engine, on a clock that moves only when
    /// told to, with every task on one serial executor, so that each run writes the same records.
    static func write(_ path: String) async throws {
        try makeApplicationTables(path)
        let store = try SQLiteSagaStore(path: path)
        do {
            let clock = ManualSagaClock(start: start)
            let world = World(clock: clock)
            try await withTaskExecutorPreference(GoldenLogExecutor()) {
                try await runEverySaga(store, world: world, clock: clock)
            }
            // What the crashed sagas' participants did before the crash is what recovery starts from.
            let effects = world.effects(of: unfinished.map(\.id))
            guard effects == effectsBeforeRecovery else {
                throw GeneratorError("the participants ended with \(effects), not \(effectsBeforeRecovery)")
            }
            try await store.close()
        } catch {
            try? await store.close()
            throw error
        }
    }

    private static func runEverySaga(_ store: SQLiteSagaStore, world: World, clock: ManualSagaClock) async throws {
        var configuration = configuration(clock: clock)
        let crashes: [String: CrashPlan] = [
            "golden-crash-after-intent": CrashPlan(write: 2, moment: .afterWrite),
            "golden-crash-after-call": CrashPlan(write: 3, moment: .beforeWrite),
            "golden-compensating-unknown": CrashPlan(write: 4, moment: .afterWrite),
            "golden-retrying": CrashPlan(write: 2, moment: .afterWrite),
            "golden-parallel-running": CrashPlan(write: 5, moment: .beforeWrite),
            "golden-local-running": CrashPlan(write: 1, moment: .afterWrite),
        ]
        // One plan per saga: each counts only its saga's writes.
        let hooks = crashes.compactMapValues { $0.configure(configuration).faultPoint }
        configuration.faultPoint = { point in try hooks[point.sagaID]?(point) }
        let engine = SagaEngine(store: store, configuration: configuration, logger: quietLogger)
        let sagas = Sagas(world: world)
        try sagas.register(on: engine)

        /// Sets the clock to saga `index`'s start.
        func startSaga(_ index: Int) {
            clock.advance(by: .seconds(60 * index) - clock.elapsed)
        }
        /// Waits for the engine's backoff sleep and ends it: one second covers every jittered delay.
        func endBackoff() async {
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(1))
        }
        func expect<Output>(_ outcome: SagaOutcome<Output>, _ status: SagaStatus, _ id: String) throws {
            guard outcome.status == status else {
                throw GeneratorError("saga '\(id)' ended \(outcome.status), not \(status)")
            }
        }
        func expectCrash<Output>(_ id: String, _ body: () async throws -> SagaOutcome<Output>) async throws {
            do {
                let outcome = try await body()
                throw GeneratorError("saga '\(id)' ended \(outcome.status) instead of crashing")
            } catch let error as SagaError where error.code == .interrupted {
                guard crashes[id]?.crashed == true else { throw error }
            }
        }

        try await withRunningSagaEngine(engine) { engine in
            startSaga(0)
            try expect(
                try await engine.execute(
                    sagas.order, id: "golden-completed", input: input(0), options: SagaOptions(deadline: .seconds(3600))
                ),
                .completed, "golden-completed")

            startSaga(1)
            async let retried = engine.execute(sagas.order, id: "golden-retried", input: input(1))
            await endBackoff()
            await endBackoff()
            try expect(try await retried, .completed, "golden-retried")

            startSaga(2)
            try expect(
                try await engine.execute(sagas.order, id: "golden-compensated", input: input(2)), .compensated,
                "golden-compensated")

            startSaga(3)
            async let attention = engine.execute(sagas.order, id: "golden-needs-attention", input: input(3))
            await endBackoff()
            try expect(try await attention, .needsAttention, "golden-needs-attention")

            startSaga(4)
            async let resolved = engine.execute(sagas.order, id: "golden-resolved", input: input(4))
            await endBackoff()
            try expect(try await resolved, .needsAttention, "golden-resolved")
            clock.advance(by: .seconds(30))
            try await engine.resolve(sagaID: "golden-resolved", note: "stock released by hand in the warehouse")

            startSaga(5)
            async let cancelled = engine.execute(sagas.order, id: "golden-cancelled", input: input(5))
            // Cancel while the first step backs off; the request is in place before the backoff ends (one
            // serial executor: the cancelling task runs up to its wait before this one resumes).
            await clock.waitForSleepers(count: 1)
            async let cancelling: Void = engine.cancel(sagaID: "golden-cancelled", reason: "customer cancelled")
            for _ in 0..<10 { await Task.yield() }
            clock.advance(by: .seconds(1))
            try await cancelling
            try expect(try await cancelled, .compensated, "golden-cancelled")

            startSaga(6)
            try expect(
                try await engine.execute(sagas.fulfilment, id: "golden-parallel-completed", input: input(6)),
                .completed,
                "golden-parallel-completed")

            startSaga(7)
            try expect(
                try await engine.execute(sagas.localOrder, id: "golden-local-completed", input: input(7)), .completed,
                "golden-local-completed")

            startSaga(8)
            try expect(
                try await engine.execute(sagas.localOrder, id: "golden-local-compensated", input: input(8)),
                .compensated,
                "golden-local-compensated")

            startSaga(9)
            try await expectCrash("golden-crash-after-intent") {
                try await engine.execute(sagas.order, id: "golden-crash-after-intent", input: input(9))
            }
            startSaga(10)
            try await expectCrash("golden-crash-after-call") {
                try await engine.execute(sagas.order, id: "golden-crash-after-call", input: input(10))
            }
            startSaga(11)
            try await expectCrash("golden-compensating-unknown") {
                try await engine.execute(sagas.order, id: "golden-compensating-unknown", input: input(11))
            }
            startSaga(12)
            try await expectCrash("golden-retrying") {
                try await engine.execute(sagas.order, id: "golden-retrying", input: input(12))
            }
            startSaga(13)
            try await expectCrash("golden-parallel-running") {
                async let parallel = engine.execute(sagas.fulfilment, id: "golden-parallel-running", input: input(13))
                // hold-payment takes a second to answer; reserve-stock's outcome is durable first (write 4),
                // then hold-payment answers and the crash falls before its outcome is written.
                await clock.waitForSleepers(count: 1)
                while crashes["golden-parallel-running"]?.writes ?? 0 < 4 {
                    try await Task.sleep(for: .milliseconds(1))
                }
                clock.advance(by: .seconds(1))
                return try await parallel
            }
            startSaga(14)
            try await expectCrash("golden-local-running") {
                try await engine.execute(sagas.localOrder, id: "golden-local-running", input: input(14))
            }

            // Settled, but started last: needs attention, then an operator retry compensates it.
            startSaga(15)
            async let needsRetry = engine.execute(sagas.order, id: "golden-operator-retried", input: input(15))
            await endBackoff()
            try expect(try await needsRetry, .needsAttention, "golden-operator-retried")
            clock.advance(by: .seconds(30))
            try await engine.retry(sagaID: "golden-operator-retried", note: "stock service is back")
            try expect(
                try await engine.handle(for: "golden-operator-retried", output: Receipt.self).outcome(), .compensated,
                "golden-operator-retried")
        }
    }

    struct GeneratorError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: What the golden log holds

    /// A decoded payload.
    enum Payload: Equatable, CustomStringConvertible {
        case order(Order)
        case reservation(Reservation)
        case payment(Payment)
        case hold(Hold)
        case shipment(Shipment)
        case receipt(Receipt)
        case orderRow(OrderRow)

        /// The record's payload decoded as the type this payload has.
        func decoding(_ record: SagaLogRecord) throws -> Payload {
            switch self {
            case .order: .order(try record.decodePayload())
            case .reservation: .reservation(try record.decodePayload())
            case .payment: .payment(try record.decodePayload())
            case .hold: .hold(try record.decodePayload())
            case .shipment: .shipment(try record.decodePayload())
            case .receipt: .receipt(try record.decodePayload())
            case .orderRow: .orderRow(try record.decodePayload())
            }
        }

        var description: String {
            switch self {
            case .order(let value): "\(value)"
            case .reservation(let value): "\(value)"
            case .payment(let value): "\(value)"
            case .hold(let value): "\(value)"
            case .shipment(let value): "\(value)"
            case .receipt(let value): "\(value)"
            case .orderRow(let value): "\(value)"
            }
        }
    }

    /// One record as written; `at` is seconds after the saga's start. Kinds (and statuses) are spelled as
    /// version 1 wrote them, not through today's constants.
    struct WrittenRecord {
        var kind: String
        var step: String?
        var attempt: Int?
        var at: Double
        var payload: Payload?
        var error: RecordedError?
        var note: String?
        var metadata: [String: String]
    }

    static func row(
        _ kind: String, _ step: String? = nil, _ attempt: Int? = nil, at: Double = 0,
        payload: Payload? = nil, error: RecordedError? = nil, note: String? = nil, metadata: [String: String] = [:]
    ) -> WrittenRecord {
        WrittenRecord(
            kind: kind, step: step, attempt: attempt, at: at, payload: payload, error: error, note: note,
            metadata: metadata)
    }

    /// One saga as written: its summary and its whole history.
    struct WrittenSaga {
        /// The saga was started `60 × index` seconds after ``GoldenLog/start``, with `input(index)`.
        var index: Int
        var id: String
        var name: String
        var status: String
        var lastError: RecordedError?
        var rows: [WrittenRecord]

        var startedAt: Date { start.addingTimeInterval(Double(60 * index)) }

        var fingerprint: String {
            switch name {
            case "golden-order": "6dc9ebb2bf7fe1b1"
            case "golden-fulfilment": "6a0ec8eb4c362786"
            default: "2bc5a98729f421aa"
            }
        }

        var summary: SagaSummary {
            SagaSummary(
                id: id, name: name, fingerprint: fingerprint, status: SagaStatus(rawValue: status),
                createdAt: startedAt,
                updatedAt: startedAt.addingTimeInterval(rows.map(\.at).max() ?? 0), lastError: lastError)
        }

        /// The records, payloads left out (they are compared decoded).
        var records: [SagaLogRecord] {
            rows.enumerated().map { offset, row in
                SagaLogRecord(
                    sagaID: id, sequence: offset + 1, timestamp: startedAt.addingTimeInterval(row.at),
                    kind: SagaLogRecord.Kind(rawValue: row.kind),
                    step: row.step, attempt: row.attempt, error: row.error, note: row.note, metadata: row.metadata)
            }
        }
    }

    static let reserve = "reserve-stock"
    static let charge = "charge-payment"
    static let ship = "ship-order"
    static let hold = "hold-payment"
    static let capture = "capture-payment"
    static let record = "record-order"

    /// Every saga of the golden log, in the order they were started.
    static let written: [WrittenSaga] = [
        WrittenSaga(
            index: 0, id: "golden-completed", name: "golden-order", status: "completed",
            rows: [
                row(
                    "saga.started", payload: .order(Order(sku: "sku-0", quantity: 1, amountCents: 1000)),
                    metadata: ["sagakit.deadline": "1800003600.0"]),
                row("step.started", reserve, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-completed", quantity: 1))),
                row("step.started", charge, 1),
                row(
                    "step.succeeded", charge, 1,
                    payload: .payment(Payment(paymentID: "pay-golden-completed", amountCents: 1000))),
                row("step.started", ship, 1),
                row("step.succeeded", ship, 1, payload: .shipment(Shipment(trackingID: "trk-golden-completed"))),
                row(
                    "saga.completed",
                    payload: .receipt(
                        Receipt(
                            reservationID: "res-golden-completed", paymentID: "pay-golden-completed",
                            trackingID: "trk-golden-completed"))),
            ]),
        WrittenSaga(
            index: 1, id: "golden-retried", name: "golden-order", status: "completed",
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-1", quantity: 2, amountCents: 1100))),
                row("step.started", reserve, 1),
                row("step.attempt_failed", reserve, 1, error: unavailable),
                row("step.started", reserve, 2, at: 1),
                row("step.attempt_failed", reserve, 2, at: 1, error: unavailable),
                row("step.started", reserve, 3, at: 2),
                row(
                    "step.succeeded", reserve, 3, at: 2,
                    payload: .reservation(Reservation(reservationID: "res-golden-retried", quantity: 2))),
                row("step.started", charge, 1, at: 2),
                row(
                    "step.succeeded", charge, 1, at: 2,
                    payload: .payment(Payment(paymentID: "pay-golden-retried", amountCents: 1100))),
                row("step.started", ship, 1, at: 2),
                row("step.succeeded", ship, 1, at: 2, payload: .shipment(Shipment(trackingID: "trk-golden-retried"))),
                row(
                    "saga.completed", at: 2,
                    payload: .receipt(
                        Receipt(
                            reservationID: "res-golden-retried", paymentID: "pay-golden-retried",
                            trackingID: "trk-golden-retried"))),
            ]),
        WrittenSaga(
            index: 2, id: "golden-compensated", name: "golden-order", status: "compensated", lastError: declined,
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-2", quantity: 3, amountCents: 1200))),
                row("step.started", reserve, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-compensated", quantity: 3))),
                row("step.started", charge, 1),
                row("step.failed", charge, 1, error: declined),
                row("compensation.started", reserve, 1),
                row("compensation.succeeded", reserve, 1),
                row("saga.compensated", error: declined),
            ]),
        WrittenSaga(
            index: 3, id: "golden-needs-attention", name: "golden-order", status: "needs_attention",
            lastError: unavailable,
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-3", quantity: 1, amountCents: 1300))),
                row("step.started", reserve, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-needs-attention", quantity: 1))),
                row("step.started", charge, 1),
                row("step.failed", charge, 1, error: declined),
                row("compensation.started", reserve, 1),
                row("compensation.attempt_failed", reserve, 1, error: unavailable),
                row("compensation.started", reserve, 2, at: 1),
                row("compensation.failed", reserve, 2, at: 1, error: unavailable),
                row("saga.needs_attention", reserve, at: 1, error: unavailable),
            ]),
        WrittenSaga(
            index: 4, id: "golden-resolved", name: "golden-order", status: "resolved", lastError: unavailable,
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-4", quantity: 2, amountCents: 1400))),
                row("step.started", reserve, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-resolved", quantity: 2))),
                row("step.started", charge, 1),
                row("step.failed", charge, 1, error: declined),
                row("compensation.started", reserve, 1),
                row("compensation.attempt_failed", reserve, 1, error: unavailable),
                row("compensation.started", reserve, 2, at: 1),
                row("compensation.failed", reserve, 2, at: 1, error: unavailable),
                row("saga.needs_attention", reserve, at: 1, error: unavailable),
                row("operator.resolved", at: 31, note: "stock released by hand in the warehouse"),
            ]),
        WrittenSaga(
            index: 5, id: "golden-cancelled", name: "golden-order", status: "compensated", lastError: cancelled,
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-5", quantity: 3, amountCents: 1500))),
                row("step.started", reserve, 1),
                row("step.attempt_failed", reserve, 1, error: unavailable),
                row("operator.cancelled", at: 1, note: "customer cancelled"),
                row("compensation.started", reserve, 1, at: 1),
                row("compensation.succeeded", reserve, 1, at: 1),
                row("saga.compensated", at: 1, error: cancelled),
            ]),
        WrittenSaga(
            index: 6, id: "golden-parallel-completed", name: "golden-fulfilment", status: "completed",
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-6", quantity: 1, amountCents: 1600))),
                row("step.started", reserve, 1),
                row("step.started", hold, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-parallel-completed", quantity: 1))),
                row(
                    "step.succeeded", hold, 1,
                    payload: .hold(Hold(holdID: "hold-golden-parallel-completed", amountCents: 1600))),
                row("step.started", capture, 1),
                row(
                    "step.succeeded", capture, 1,
                    payload: .payment(Payment(paymentID: "cap-golden-parallel-completed", amountCents: 1600))),
                row(
                    "saga.completed",
                    payload: .payment(Payment(paymentID: "cap-golden-parallel-completed", amountCents: 1600))),
            ]),
        WrittenSaga(
            index: 7, id: "golden-local-completed", name: "golden-local-order", status: "completed",
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-7", quantity: 2, amountCents: 1700))),
                row("step.started", record, 1),
                row("step.succeeded", record, 1, payload: .orderRow(OrderRow(orderNumber: 1))),
                row("step.started", charge, 1),
                row(
                    "step.succeeded", charge, 1,
                    payload: .payment(Payment(paymentID: "pay-golden-local-completed", amountCents: 1700))),
                row(
                    "saga.completed",
                    payload: .payment(Payment(paymentID: "pay-golden-local-completed", amountCents: 1700))),
            ]),
        WrittenSaga(
            index: 8, id: "golden-local-compensated", name: "golden-local-order", status: "compensated",
            lastError: declined,
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-8", quantity: 3, amountCents: 1800))),
                row("step.started", record, 1),
                row("step.succeeded", record, 1, payload: .orderRow(OrderRow(orderNumber: 2))),
                row("step.started", charge, 1),
                row("step.failed", charge, 1, error: declined),
                row("compensation.started", record, 1),
                row("compensation.succeeded", record, 1),
                row("saga.compensated", error: declined),
            ]),
        // Unfinished from here on: recovery resumes them.
        WrittenSaga(
            index: 9, id: "golden-crash-after-intent", name: "golden-order", status: "running",
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-9", quantity: 1, amountCents: 1900))),
                row("step.started", reserve, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-crash-after-intent", quantity: 1))),
                row("step.started", charge, 1),
            ]),
        WrittenSaga(
            index: 10, id: "golden-crash-after-call", name: "golden-order", status: "running",
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-10", quantity: 2, amountCents: 2000))),
                row("step.started", reserve, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-crash-after-call", quantity: 2))),
                row("step.started", charge, 1),
            ]),
        WrittenSaga(
            index: 11, id: "golden-compensating-unknown", name: "golden-order", status: "compensating",
            lastError: declined,
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-11", quantity: 3, amountCents: 2100))),
                row("step.started", reserve, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-compensating-unknown", quantity: 3))),
                row("step.started", charge, 1),
                row("step.failed", charge, 1, error: declined),
                row("compensation.started", reserve, 1),
            ]),
        WrittenSaga(
            index: 12, id: "golden-retrying", name: "golden-order", status: "running",
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-12", quantity: 1, amountCents: 2200))),
                row("step.started", reserve, 1),
                row("step.attempt_failed", reserve, 1, error: unavailable),
            ]),
        WrittenSaga(
            index: 13, id: "golden-parallel-running", name: "golden-fulfilment", status: "running",
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-13", quantity: 2, amountCents: 2300))),
                row("step.started", reserve, 1),
                row("step.started", hold, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-parallel-running", quantity: 2))),
            ]),
        WrittenSaga(
            index: 14, id: "golden-local-running", name: "golden-local-order", status: "running",
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-14", quantity: 3, amountCents: 2400))),
                row("step.started", record, 1),
            ]),
        // Settled, started after the unfinished ones.
        WrittenSaga(
            index: 15, id: "golden-operator-retried", name: "golden-order", status: "compensated",
            lastError: unavailable,
            rows: [
                row("saga.started", payload: .order(Order(sku: "sku-15", quantity: 1, amountCents: 2500))),
                row("step.started", reserve, 1),
                row(
                    "step.succeeded", reserve, 1,
                    payload: .reservation(Reservation(reservationID: "res-golden-operator-retried", quantity: 1))),
                row("step.started", charge, 1),
                row("step.failed", charge, 1, error: declined),
                row("compensation.started", reserve, 1),
                row("compensation.attempt_failed", reserve, 1, error: unavailable),
                row("compensation.started", reserve, 2, at: 1),
                row("compensation.failed", reserve, 2, at: 1, error: unavailable),
                row("saga.needs_attention", reserve, at: 1, error: unavailable),
                row("operator.retried", at: 31, note: "stock service is back"),
                row("compensation.started", reserve, 3, at: 31),
                row("compensation.succeeded", reserve, 3, at: 31),
                // The cause saga.needs_attention named stays the cause after the retry.
                row("saga.compensated", at: 31, error: unavailable),
            ]),
    ]

    static let cancelled = RecordedError(type: "SagaKit.Cancelled", message: "customer cancelled", isRetryable: false)

    /// The `sagakit_meta` rows: log format 1, and the commit counter after the generator's last commit.
    static let writtenMeta = ["log_format_version": "1", "commit_counter": "81"]
    /// The GRDB migrations the log was created with.
    static let writtenMigrations = ["sagakit.commit-counter", "sagakit.v1"]
    /// The local step's table as written: the compensated saga's row was deleted by its compensation.
    static let writtenOrderRows: [String: Int64] = ["golden-local-completed": 1]

    /// Checks the golden log at `path` (a copy) reads back exactly as written: format, summaries, every
    /// record of every saga with its payload decoded, the unfinished sagas recovery would load, and the
    /// application's table the local step wrote.
    static func checkAsWritten(_ path: String) async throws {
        #expect(try meta(path) == writtenMeta)
        #expect(try migrations(path) == writtenMigrations)
        #expect(try orderRows(path) == writtenOrderRows)
        // A copy without its lock file has no commit mark to compare with: the store opens it as it is.
        #expect(!FileManager.default.fileExists(atPath: path + "-sagakit.lock"))
        let store = try SQLiteSagaStore(path: path)
        do {
            try await checkAsWritten(store)
            try await store.close()
        } catch {
            try? await store.close()
            throw error
        }
    }

    /// Today's names for every record kind and status; each must be spelled as version 1 wrote it.
    static let kindsOfToday: [SagaLogRecord.Kind] = [
        .sagaStarted, .stepStarted, .stepSucceeded, .stepAttemptFailed, .stepFailed, .compensationStarted,
        .compensationSucceeded, .compensationAttemptFailed, .compensationFailed, .sagaCompleted, .sagaCompensated,
        .sagaNeedsAttention, .operatorRetried, .operatorResolved, .operatorCancelled,
    ]
    static let statusesOfToday: [SagaStatus] = [
        .running, .compensating, .completed, .compensated, .needsAttention, .resolved,
    ]

    private static func checkAsWritten(_ store: SQLiteSagaStore) async throws {
        // The golden log holds every kind and status; today's code names each as version 1 spelled it.
        let writtenKinds = Set(written.flatMap { $0.rows.map(\.kind) })
        let todaysKinds = Set(kindsOfToday.map(\.rawValue))
        #expect(
            writtenKinds.subtracting(todaysKinds).isEmpty,
            "record kinds version 1 wrote that today's code does not name: \(writtenKinds.subtracting(todaysKinds).sorted())"
        )
        #expect(
            todaysKinds.subtracting(writtenKinds).isEmpty,
            "record kinds of today that the golden log lacks: \(todaysKinds.subtracting(writtenKinds).sorted())")
        let writtenStatuses = Set(written.map(\.status))
        #expect(writtenStatuses == Set(statusesOfToday.map(\.rawValue)))

        #expect(try await store.sagas(matching: SagaQuery(limit: 100)).map(\.id) == written.map(\.id))
        for saga in written {
            #expect(try await store.summary(of: saga.id) == saga.summary)
            let records = try await store.records(of: saga.id)
            try checkRecords(records, saga)
        }
        let active = try await store.activeSagaRecords()
        #expect(active.map(\.summary.id) == unfinished.map(\.id))
        for loaded in active {
            guard let saga = written.first(where: { $0.id == loaded.summary.id }) else { continue }
            #expect(loaded.summary == saga.summary)
            try checkRecords(loaded.records, saga)
        }
    }

    private static func checkRecords(_ records: [SagaLogRecord], _ saga: WrittenSaga) throws {
        var withoutPayloads = records
        for index in withoutPayloads.indices { withoutPayloads[index].payload = nil }
        #expect(
            withoutPayloads.count == saga.records.count,
            "saga '\(saga.id)' reads back \(withoutPayloads.count) records; \(saga.records.count) were written")
        if let (read, written) = zip(withoutPayloads, saga.records).first(where: { $0 != $1 }) {
            Issue.record("saga '\(saga.id)', record \(written.sequence) reads back as \(read); written: \(written)")
        }
        for (record, row) in zip(records, saga.rows) {
            guard let expected = row.payload else {
                #expect(record.payload == nil, "record \(record.sequence) of saga '\(saga.id)' has a payload")
                continue
            }
            #expect(
                try expected.decoding(record) == expected,
                "the payload of record \(record.sequence) (\(record.kind)) of saga '\(saga.id)'")
        }
    }

    /// The identifiers in `grdb_migrations`, read on a connection of their own.
    static func migrations(_ path: String) throws -> [String] {
        var options = GRDB.Configuration()
        options.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: options)
        defer { try? queue.close() }
        return try queue.read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier")
        }
    }

    // MARK: What recovery must do

    /// How a saga ends, with its output decoded.
    enum Outcome: Equatable {
        case completed(Payload)
        case compensated(SagaFailure)
        case needsAttention(SagaFailure)
        case resolved(String?)

        init<Output>(_ outcome: SagaOutcome<Output>, _ wrap: (Output) -> Payload) {
            switch outcome {
            case .completed(let output): self = .completed(wrap(output))
            case .compensated(let failure): self = .compensated(failure)
            case .needsAttention(let failure): self = .needsAttention(failure)
            case .resolved(let note): self = .resolved(note)
            }
        }

        var status: SagaStatus {
            switch self {
            case .completed: .completed
            case .compensated: .compensated
            case .needsAttention: .needsAttention
            case .resolved: .resolved
            }
        }
    }

    struct UnfinishedSaga {
        var id: String
        var name: String
        /// The first record recovery appends: where the saga resumes.
        var resumesWith: (kind: SagaLogRecord.Kind, step: String, attempt: Int)
        var outcome: Outcome
    }

    /// The sagas the log shows as running or compensating, oldest first, and how recovery must end them.
    static let unfinished: [UnfinishedSaga] = [
        // charge-payment's intent is logged, the call never happened: called again, then ship-order.
        UnfinishedSaga(
            id: "golden-crash-after-intent", name: "golden-order", resumesWith: (.stepStarted, charge, 2),
            outcome: .completed(
                .receipt(
                    Receipt(
                        reservationID: "res-golden-crash-after-intent", paymentID: "pay-golden-crash-after-intent",
                        trackingID: "trk-golden-crash-after-intent")))),
        // charge-payment was called and took effect, its outcome was lost: called again with the same key.
        UnfinishedSaga(
            id: "golden-crash-after-call", name: "golden-order", resumesWith: (.stepStarted, charge, 2),
            outcome: .completed(
                .receipt(
                    Receipt(
                        reservationID: "res-golden-crash-after-call", paymentID: "pay-golden-crash-after-call",
                        trackingID: "trk-golden-crash-after-call")))),
        // reserve-stock's compensation started and has no outcome: compensated again, saga compensated.
        UnfinishedSaga(
            id: "golden-compensating-unknown", name: "golden-order", resumesWith: (.compensationStarted, reserve, 2),
            outcome: .compensated(SagaFailure(step: "charge-payment", cause: declined))),
        // reserve-stock's first attempt failed, the backoff never ended: attempt 2, then the rest.
        UnfinishedSaga(
            id: "golden-retrying", name: "golden-order", resumesWith: (.stepStarted, reserve, 2),
            outcome: .completed(
                .receipt(
                    Receipt(
                        reservationID: "res-golden-retrying", paymentID: "pay-golden-retrying",
                        trackingID: "trk-golden-retrying")))),
        // reserve-stock succeeded, its sibling hold-payment has no outcome: only hold-payment runs again.
        UnfinishedSaga(
            id: "golden-parallel-running", name: "golden-fulfilment", resumesWith: (.stepStarted, hold, 2),
            outcome: .completed(.payment(Payment(paymentID: "cap-golden-parallel-running", amountCents: 2300)))),
        // The local step's intent is logged and its transaction never committed: it runs, then charge-payment.
        UnfinishedSaga(
            id: "golden-local-running", name: "golden-local-order", resumesWith: (.stepStarted, record, 2),
            outcome: .completed(.payment(Payment(paymentID: "pay-golden-local-running", amountCents: 2400)))),
    ]

    static func outcome(of saga: UnfinishedSaga, in engine: SagaEngine) async throws -> Outcome {
        switch saga.name {
        case "golden-order":
            Outcome(try await engine.handle(for: saga.id, output: Receipt.self).outcome()) { .receipt($0) }
        default:
            Outcome(try await engine.handle(for: saga.id, output: Payment.self).outcome()) { .payment($0) }
        }
    }

    /// What the unfinished sagas' participants had done when their process died (the generator's world).
    static let effectsBeforeRecovery = World.Effects(
        applied: [
            "golden-crash-after-intent/reserve-stock",
            "golden-crash-after-call/reserve-stock", "golden-crash-after-call/charge-payment",
            "golden-compensating-unknown/reserve-stock",
            "golden-parallel-running/reserve-stock", "golden-parallel-running/hold-payment",
        ],
        undone: [])

    /// The calls recovery makes: only where the log holds no outcome, and what follows.
    static let actionCallsDuringRecovery = [
        "golden-crash-after-intent/charge-payment": 1, "golden-crash-after-intent/ship-order": 1,
        "golden-crash-after-call/charge-payment": 1, "golden-crash-after-call/ship-order": 1,
        "golden-retrying/reserve-stock": 1, "golden-retrying/charge-payment": 1, "golden-retrying/ship-order": 1,
        "golden-parallel-running/hold-payment": 1, "golden-parallel-running/capture-payment": 1,
        "golden-local-running/charge-payment": 1,
    ]
    static let compensationCallsDuringRecovery = ["golden-compensating-unknown/reserve-stock": 1]

    /// Every effect once, the repeated deliveries (charge-payment, hold-payment) included.
    static let effectsAfterRecovery = World.Effects(
        applied: effectsBeforeRecovery.applied.union([
            "golden-crash-after-intent/charge-payment", "golden-crash-after-intent/ship-order",
            "golden-crash-after-call/ship-order",
            "golden-retrying/reserve-stock", "golden-retrying/charge-payment", "golden-retrying/ship-order",
            "golden-parallel-running/capture-payment",
            "golden-local-running/charge-payment",
        ]),
        undone: ["golden-compensating-unknown/reserve-stock"])

    /// The local step recovery ran committed its row with its record.
    static let orderRowsAfterRecovery: [String: Int64] = ["golden-local-completed": 1, "golden-local-running": 2]
}

/// Runs every job on one thread, in the order enqueued: the generator's tasks interleave the same way on
/// every run, so parallel siblings log in the same order.
final class GoldenLogExecutor: TaskExecutor {
    private let queue = DispatchQueue(label: "SagaKit.GoldenLog.generator")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
