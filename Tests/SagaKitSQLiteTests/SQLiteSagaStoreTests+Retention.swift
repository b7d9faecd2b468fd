import Foundation
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Testing

@Suite(.tags(.retention), .timeLimit(.minutes(2))) struct SQLiteSagaStoreRetentionTests {
    /// Appends a saga that ends with `status`, its last record at `time`.
    func saga(_ id: String, _ status: SagaStatus, at time: Date, in store: SQLiteSagaStore) async throws {
        try await store.append(creation(id, at: time))
        try await store.append(
            SagaLogAppend(
                sagaID: id, records: [record(id, 2, .stepStarted, at: time, step: "a", attempt: 1)], status: status))
    }

    @Test func prunesOnlyFinishedSagasOlderThanTheCutoff() async throws {
        try await withStore { store, _ in
            try await saga("old-completed", .completed, at: at(10), in: store)
            try await saga("old-compensated", .compensated, at: at(10), in: store)
            try await saga("old-resolved", .resolved, at: at(10), in: store)
            try await saga("old-running", .running, at: at(10), in: store)
            try await saga("old-compensating", .compensating, at: at(10), in: store)
            try await saga("old-attention", .needsAttention, at: at(10), in: store)
            try await saga("new-completed", .completed, at: at(100), in: store)

            let pruned = try await store.prune(finishedBefore: at(50))

            #expect(pruned == 3)
            for id in ["old-completed", "old-compensated", "old-resolved"] {
                #expect(try await store.summary(of: id) == nil)
                #expect(try await store.records(of: id).isEmpty)
            }
            for id in ["old-running", "old-compensating", "old-attention", "new-completed"] {
                #expect(try await store.summary(of: id) != nil)
                #expect(try await store.records(of: id).count == 2)
            }
            #expect(try await store.activeSagaRecords().map(\.summary.id) == ["old-running", "old-compensating"])
        }
    }

    @Test func prunesInBatchesUntilNothingIsLeft() async throws {
        try await withStore { store, _ in
            for index in 0..<25 {
                try await saga("done-\(index)", .completed, at: at(Double(index)), in: store)
            }
            try await saga("running", .running, at: at(0), in: store)

            #expect(try await store.prune(finishedBefore: at(1000), batchSize: 4) == 25)
            #expect(try await store.sagas(matching: SagaQuery(limit: 100)).map(\.id) == ["running"])
            #expect(try await store.prune(finishedBefore: at(1000), batchSize: 4) == 0)
        }
    }

    @Test func aPrunedIDCanStartANewSaga() async throws {
        try await withStore { store, _ in
            try await saga("order-1", .completed, at: at(0), in: store)
            try await store.prune(finishedBefore: at(1))
            try await store.append(creation("order-1", name: "again", at: at(2)))
            #expect(try await store.summary(of: "order-1")?.name == "again")
            #expect(try await store.records(of: "order-1").count == 1)
        }
    }

    @Test func aClosedStoreRefusesToPrune() async throws {
        try await withTemporaryDirectory { directory in
            let store = try SQLiteSagaStore(path: directory.path(of: "sagas.sqlite"))
            try await store.close()
            let error = await storeError { try await store.prune(finishedBefore: Date()) }
            #expect(error?.code == .io)
        }
    }
}
