import Foundation
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Synchronization
import Testing

@Suite("Testing kit", .tags(.recovery), .timeLimit(.minutes(1)))
struct TestingKitTests {
    @Test func inMemoryStoreKeepsTheStoreContract() async throws {
        try await SagaStoreContract { InMemorySagaStore() }.verify()
    }

    @Test func sqliteStoreKeepsTheStoreContract() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "sagakit-contract-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await SagaStoreContract {
            try SQLiteSagaStore(path: directory.appendingPathComponent("\(UUID().uuidString).sqlite").path)
        }
        .verify()
    }

    @Test func theContractCatchesAStoreThatLosesAtomicity() async throws {
        /// Writes an append's records one by one, so a duplicate half-way leaves a partial append.
        final class LeakyStore: SagaStore {
            let inner = InMemorySagaStore()
            func append(_ append: SagaLogAppend) async throws {
                for (index, record) in append.records.enumerated() {
                    var part = append
                    part.records = [record]
                    if index > 0 { part.creation = nil }
                    try await inner.append(part)
                }
            }
            func summary(of sagaID: String) async throws -> SagaSummary? { try await inner.summary(of: sagaID) }
            func records(of sagaID: String) async throws -> [SagaLogRecord] { try await inner.records(of: sagaID) }
            func sagas(matching query: SagaQuery) async throws -> [SagaSummary] {
                try await inner.sagas(matching: query)
            }
            func activeSagaRecords() async throws -> [SagaLogRecords] { try await inner.activeSagaRecords() }
        }
        let error = await #expect(throws: SagaStoreContract.Violation.self) {
            try await SagaStoreContract { LeakyStore() }.verify()
        }
        #expect(error?.rule == "appends atomically and refuses a duplicate sequence")
    }

    @Test func idempotentParticipantsPassTheDoubleRunCheck() async throws {
        let world = Mutex<Participant?>(nil)
        let check = IdempotenceCheck(snapshot: { world.withLock { $0 }!.effects }) {
            let participant = Participant()
            world.withLock { $0 = participant }
            return SagaScenario(definition: threeStepSaga(participant), input: Order(id: 1))
        }
        #expect(try await check.run() == nil)
    }

    @Test func theDoubleRunCheckCatchesAParticipantThatIsNotIdempotent() async throws {
        /// Counts every delivery: applying twice shows.
        final class Counter: Sendable {
            let value = Mutex(0)
        }
        let world = Mutex<Counter?>(nil)
        let check = IdempotenceCheck(snapshot: { world.withLock { $0 }!.value.withLock { $0 } }) {
            let counter = Counter()
            world.withLock { $0 = counter }
            let add = SagaStep<Order, NoOutput>.pivot("add") { _ in
                counter.value.withLock { $0 += 1 }
                return NoOutput()
            }
            return SagaScenario(definition: SagaDefinition("count") { add }, input: Order(id: 1))
        }
        let mismatch = try await check.run()
        #expect(mismatch?.single == 1)
        #expect(mismatch?.double == 2)
    }
}
