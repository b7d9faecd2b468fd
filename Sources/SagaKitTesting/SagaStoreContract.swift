import Foundation
public import SagaKit

/// The behaviour every `SagaStore` must have, as checks any store can run: SQLite, the in-memory
/// store, or a store of your own.
///
/// ```swift
/// @Test func myStoreKeepsTheContract() async throws {
///     try await SagaStoreContract { try MyStore(url: freshDatabase()) }.verify()
/// }
/// ```
public struct SagaStoreContract: Sendable {
    /// A failed check, naming the rule.
    public struct Violation: Error, CustomStringConvertible, Sendable {
        /// The rule broken.
        public var rule: String
        /// What was observed.
        public var message: String
        public var description: String { "store contract: \(rule): \(message)" }
    }

    /// Opens a fresh, empty store for one check.
    public var makeStore: @Sendable () async throws -> any SagaStore

    /// Creates the contract for stores made by `makeStore`.
    public init(makeStore: @escaping @Sendable () async throws -> any SagaStore) {
        self.makeStore = makeStore
    }

    /// The names of the checks, in the order ``verify()`` runs them.
    public static let rules = [
        "creates a saga and reads it back", "refuses a second creation and keeps the first",
        "refuses an append to an unknown saga", "appends atomically and refuses a duplicate sequence",
        "lists sagas by status and name, oldest first, with paging", "loads running and compensating sagas only",
        "keeps every concurrent append",
    ]

    /// Runs every check; throws the first ``Violation``.
    public func verify() async throws {
        try await createsAndReadsBack()
        try await refusesSecondCreation()
        try await refusesUnknownSaga()
        try await appendsAtomically()
        try await listsSagas()
        try await loadsActiveSagas()
        try await keepsConcurrentAppends()
    }

    static let epoch = Date(timeIntervalSince1970: 1_800_000_000)

    static func record(_ saga: String, _ sequence: Int, _ kind: SagaLogRecord.Kind, step: String? = nil)
        -> SagaLogRecord
    {
        SagaLogRecord(
            sagaID: saga, sequence: sequence, timestamp: epoch.addingTimeInterval(Double(sequence)), kind: kind,
            step: step,
            attempt: step == nil ? nil : 1, payload: Data("{\"n\":\(sequence)}".utf8),
            error: kind == .stepAttemptFailed ? RecordedError(type: "Boom", message: "boom", isRetryable: true) : nil,
            note: kind == .operatorCancelled ? "note" : nil, metadata: kind == .sagaStarted ? ["trace.id": "t"] : [:])
    }

    static func create(_ saga: String, name: String = "contract", status: SagaStatus = .running, at offset: Double = 0)
        -> SagaLogAppend
    {
        SagaLogAppend(
            sagaID: saga, records: [record(saga, 1, .sagaStarted), record(saga, 2, .stepStarted, step: "a")],
            status: status,
            creation: SagaCreation(name: name, fingerprint: "f", createdAt: epoch.addingTimeInterval(offset)))
    }

    func expect(_ condition: Bool, _ rule: String, _ message: @autoclosure () -> String) throws {
        if !condition { throw Violation(rule: rule, message: message()) }
    }

    func createsAndReadsBack() async throws {
        let rule = Self.rules[0]
        let store = try await makeStore()
        try await store.append(Self.create("s1"))
        let failed = SagaLogRecord(
            sagaID: "s1", sequence: 3, timestamp: Self.epoch.addingTimeInterval(3), kind: .stepAttemptFailed, step: "a",
            attempt: 1, error: RecordedError(type: "Boom", message: "boom", isRetryable: true))
        let lastError = RecordedError(type: "Boom", message: "boom", isRetryable: true)
        try await store.append(
            SagaLogAppend(sagaID: "s1", records: [failed], status: .compensating, lastError: lastError))
        let summary = try await store.summary(of: "s1")
        try expect(
            summary?.name == "contract" && summary?.fingerprint == "f", rule, "summary \(String(describing: summary))")
        try expect(
            summary?.status == .compensating && summary?.lastError == lastError, rule,
            "status and last error not updated")
        let records = try await store.records(of: "s1")
        try expect(records.map(\.sequence) == [1, 2, 3], rule, "sequences \(records.map(\.sequence))")
        let expected = Self.create("s1").records + [failed]
        for (read, written) in zip(records, expected) {
            try expect(
                read.kind == written.kind && read.step == written.step && read.attempt == written.attempt
                    && read.payload == written.payload && read.error == written.error && read.note == written.note
                    && read.metadata == written.metadata
                    && abs(read.timestamp.timeIntervalSince(written.timestamp)) < 0.001,
                rule, "record \(written.sequence) read back as \(read)")
        }
        try expect(try await store.summary(of: "missing") == nil, rule, "an unknown id has a summary")
        try expect(try await store.records(of: "missing").isEmpty, rule, "an unknown id has records")
    }

    func storeError(_ body: () async throws -> Void) async -> SagaStoreError? {
        do {
            try await body()
            return nil
        } catch let error as SagaStoreError {
            return error
        } catch {
            return nil
        }
    }

    func refusesSecondCreation() async throws {
        let rule = Self.rules[1]
        let store = try await makeStore()
        try await store.append(Self.create("s1", name: "first"))
        let error = await storeError { try await store.append(Self.create("s1", name: "second")) }
        try expect(error?.code == .sagaAlreadyExists, rule, "got \(String(describing: error))")
        try expect(try await store.summary(of: "s1")?.name == "first", rule, "the first saga was changed")
        try expect(try await store.records(of: "s1").count == 2, rule, "records of the second creation were written")
    }

    func refusesUnknownSaga() async throws {
        let rule = Self.rules[2]
        let store = try await makeStore()
        let error = await storeError {
            try await store.append(
                SagaLogAppend(sagaID: "ghost", records: [Self.record("ghost", 1, .sagaStarted)], status: .running))
        }
        try expect(error?.code == .unknownSaga, rule, "got \(String(describing: error))")
        try expect(try await store.records(of: "ghost").isEmpty, rule, "records were written")
    }

    func appendsAtomically() async throws {
        let rule = Self.rules[3]
        let store = try await makeStore()
        try await store.append(Self.create("s1"))
        let clash = SagaLogAppend(
            sagaID: "s1",
            records: [Self.record("s1", 3, .stepSucceeded, step: "a"), Self.record("s1", 2, .stepStarted, step: "b")],
            status: .completed)
        let error = await storeError { try await store.append(clash) }
        try expect(error?.code == .duplicateRecord, rule, "got \(String(describing: error))")
        try expect(try await store.records(of: "s1").count == 2, rule, "part of a refused append was written")
        try expect(try await store.summary(of: "s1")?.status == .running, rule, "a refused append changed the status")
    }

    func listsSagas() async throws {
        let rule = Self.rules[4]
        let store = try await makeStore()
        try await store.append(Self.create("a", name: "x", status: .running, at: 1))
        try await store.append(Self.create("b", name: "y", status: .needsAttention, at: 2))
        try await store.append(Self.create("c", name: "x", status: .needsAttention, at: 3))
        try await store.append(Self.create("d", name: "x", status: .completed, at: 4))
        let all = try await store.sagas(matching: SagaQuery())
        try expect(all.map(\.id) == ["a", "b", "c", "d"], rule, "all: \(all.map(\.id))")
        let stuck = try await store.sagas(matching: SagaQuery(status: [.needsAttention]))
        try expect(stuck.map(\.id) == ["b", "c"], rule, "needs attention: \(stuck.map(\.id))")
        let named = try await store.sagas(matching: SagaQuery(status: [.needsAttention, .running], name: "x"))
        try expect(named.map(\.id) == ["a", "c"], rule, "by status and name: \(named.map(\.id))")
        let page = try await store.sagas(matching: SagaQuery(limit: 2, offset: 1))
        try expect(page.map(\.id) == ["b", "c"], rule, "page: \(page.map(\.id))")
    }

    func loadsActiveSagas() async throws {
        let rule = Self.rules[5]
        let store = try await makeStore()
        try await store.append(Self.create("run", status: .running, at: 1))
        try await store.append(Self.create("undo", status: .compensating, at: 2))
        try await store.append(Self.create("done", status: .completed, at: 3))
        try await store.append(Self.create("stuck", status: .needsAttention, at: 4))
        let active = try await store.activeSagaRecords()
        try expect(Set(active.map(\.summary.id)) == ["run", "undo"], rule, "active: \(active.map(\.summary.id))")
        try expect(
            active.allSatisfy { $0.records.map(\.sequence) == [1, 2] }, rule, "records of active sagas incomplete")
    }

    func keepsConcurrentAppends() async throws {
        let rule = Self.rules[6]
        let store = try await makeStore()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<100 {
                group.addTask {
                    try await store.append(Self.create("c\(index)", at: Double(index)))
                    try await store.append(
                        SagaLogAppend(
                            sagaID: "c\(index)", records: [Self.record("c\(index)", 3, .stepSucceeded, step: "a")],
                            status: .completed))
                }
            }
            try await group.waitForAll()
        }
        let sagas = try await store.sagas(matching: SagaQuery(status: [.completed], limit: 1_000))
        try expect(sagas.count == 100, rule, "\(sagas.count) of 100 sagas completed")
        for index in [0, 57, 99] {
            try expect(try await store.records(of: "c\(index)").count == 3, rule, "saga c\(index) lost records")
        }
    }
}
