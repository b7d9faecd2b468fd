import Foundation
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Testing

/// Faults below the engine: each gives a named error, and no committed record is lost.
@Suite("Bad input and faults", .tags(.engine), .timeLimit(.minutes(1)))
struct BadInputTests {
    struct Blob: Codable, Sendable { var text: String }

    /// `fill` makes a step's output as large as asked, so its outcome record can overflow the file.
    func saga(_ participant: Participant) -> SagaDefinition<Order, NoOutput> {
        SagaDefinition("blobs") {
            compensatable("reserve", participant)
            SagaStep<Order, Blob>.pivot("fill") { context in
                try await participant.call("fill", key: context.idempotencyKey, attempt: context.attempt)
                return Blob(text: String(repeating: "x", count: context.input.id))
            }
        }
    }

    @Test func aFullDiskStopsTheSagaWithANamedErrorAndItFinishesWhenSpaceIsBack() async throws {
        let stores = try TestStores(.sqlite)
        let participant = Participant()
        var configuration = testConfiguration()
        configuration.logWriteRetry = .noRetries
        var capped = SQLiteSagaStore.Configuration()
        capped.maxPageCount = 40  // about 160 KiB
        let engine = SagaEngine(
            store: try await stores.open(configuration: capped), configuration: configuration, logger: quietLogger)
        try await withRunningSagaEngine(engine) { engine in
            let small = try await engine.execute(saga(participant), id: "small", input: Order(id: 10))
            #expect(small.status == .completed)
            let error = await #expect(throws: SagaError.self) {
                try await engine.execute(saga(participant), id: "big", input: Order(id: 400_000))
            }
            #expect(error?.code == .logWriteFailed)
            #expect(error?.message.contains("diskFull") == true)
        }
        try await stores.close()

        // Everything committed before is there; the big saga stopped at its last durable record.
        let reopened = try await stores.open()
        #expect(try await reopened.summary(of: "small")?.status == .completed)
        #expect(try await reopened.summary(of: "big")?.status == .running)
        let logged = try await reopened.records(of: "big")
        #expect(logged.last?.kind == .stepStarted)
        #expect(logged.last?.step == "fill")
        try await stores.close()

        // With room again, a new engine finishes it, calling the step again with the same key.
        let next = SagaEngine(store: try await stores.open(), configuration: testConfiguration(), logger: quietLogger)
        let outcome = try await withRunningSagaEngine(next) { engine in
            try engine.register(saga(participant))
            return try await engine.handle(for: "big", output: NoOutput.self).outcome()
        }
        #expect(outcome.status == .completed)
        #expect(participant.calls("fill").map(\.key) == ["small/fill", "big/fill", "big/fill"])
    }

    @Test func aLogHeldByAnotherEngineIsRefusedByName() async throws {
        let stores = try TestStores(.sqlite)
        _ = try await stores.open()
        let error = #expect(throws: SagaStoreError.self) { _ = try SQLiteSagaStore(path: stores.path) }
        #expect(error?.code == .inUse)
        #expect(error?.message.contains(stores.path) == true)
        try await stores.close()
    }

    @Test func aFileThatIsNotADatabaseIsRefusedAndLeftAsItWas() throws {
        let stores = try TestStores(.sqlite)
        let url = URL(fileURLWithPath: stores.path)
        let contents = Data("orders.csv: id,product\n1,tea\n".utf8)
        try contents.write(to: url)
        let error = #expect(throws: SagaStoreError.self) { _ = try SQLiteSagaStore(path: stores.path) }
        #expect(error?.code == .notADatabase)
        let after = try Data(contentsOf: url)
        #expect(after == contents)
    }
}
