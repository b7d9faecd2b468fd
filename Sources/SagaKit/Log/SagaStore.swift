public import Foundation

/// Durable storage for the saga log.
///
/// An engine writes each saga's history through ``append(_:)`` and reads it back for recovery and
/// inspection. SagaKit ships ``InMemorySagaStore`` for tests and `SQLiteSagaStore` (in
/// `SagaKitSQLite`) as the embedded default. A store of your own must keep the contract below;
/// `InMemorySagaStore` is the reference for its semantics.
///
/// - Important: ``append(_:)`` must not return before its records are durable, must apply each
///   ``SagaLogAppend`` atomically, and must reject a record whose `(sagaID, sequence)` is already
///   stored. Appends from different sagas may share one transaction (group commit).
public protocol SagaStore: Sendable {
    /// Durably and atomically writes a batch of one saga's records and its new status.
    ///
    /// - Throws: ``SagaStoreError`` with code ``SagaStoreError/Code/sagaAlreadyExists`` when
    ///   `append.creation` is set and the saga id is taken, or another code when nothing was written.
    func append(_ append: SagaLogAppend) async throws

    /// The summary of one saga, or `nil` if the id is unknown.
    func summary(of sagaID: String) async throws -> SagaSummary?

    /// One saga's records, ordered by sequence.
    func records(of sagaID: String) async throws -> [SagaLogRecord]

    /// Sagas matching a query, oldest first.
    func sagas(matching query: SagaQuery) async throws -> [SagaSummary]

    /// The records of every saga whose status is running or compensating, grouped by saga and
    /// ordered by sequence: what recovery resumes.
    func activeSagaRecords() async throws -> [SagaLogRecords]

    /// Runs a local step's work and the append built from its result in one transaction.
    ///
    /// `makeAppend` receives the work's output and returns the records to commit with it; if it
    /// throws, the work must be rolled back and the error rethrown. Stores that cannot run local
    /// work throw ``SagaStoreError/Code/unsupported``.
    func appendAfterLocalWork(
        _ work: LocalStepWork,
        _ makeAppend: @escaping @Sendable (Data) throws -> SagaLogAppend
    ) async throws -> Data
}

extension SagaStore {
    public func appendAfterLocalWork(
        _ work: LocalStepWork,
        _ makeAppend: @escaping @Sendable (Data) throws -> SagaLogAppend
    ) async throws -> Data {
        throw SagaStoreError(.unsupported, message: "\(Self.self) cannot run local steps in its own transaction")
    }
}

/// A local step's work, handed to the store that understands it.
public struct LocalStepWork: Sendable {
    /// The store-specific body, as the step declared it.
    public let body: any Sendable
    /// The saga and step concerned.
    public let sagaID: String
    /// The step's stable name.
    public let stepName: String
    /// The step's key, `<saga id>/<step name>`.
    public let idempotencyKey: String
    /// The output the step logged, for local compensations; `nil` for actions.
    public let loggedOutput: Data?
    /// The saga's decoded input.
    public let input: any Sendable
    /// The attempt, from 1.
    public let attempt: Int
    /// Earlier steps' logged outputs.
    package let outputs: StepOutputs

    package init(
        body: any Sendable, sagaID: String, stepName: String, idempotencyKey: String, loggedOutput: Data?,
        input: any Sendable, attempt: Int, outputs: StepOutputs
    ) {
        self.attempt = attempt
        self.outputs = outputs
        self.body = body
        self.sagaID = sagaID
        self.stepName = stepName
        self.idempotencyKey = idempotencyKey
        self.loggedOutput = loggedOutput
        self.input = input
    }
}

/// One atomic write to the saga log: records of one saga and the status they leave it in.
public struct SagaLogAppend: Sendable {
    /// The saga written.
    public var sagaID: String
    /// The records, in sequence order.
    public var records: [SagaLogRecord]
    /// The saga's status after these records.
    public var status: SagaStatus
    /// The saga's last failure cause after these records, for listings.
    public var lastError: RecordedError?
    /// Set on the saga's first append: the row to create. The append fails if the id exists.
    public var creation: SagaCreation?

    /// Creates an append.
    public init(
        sagaID: String, records: [SagaLogRecord], status: SagaStatus, lastError: RecordedError? = nil,
        creation: SagaCreation? = nil
    ) {
        self.sagaID = sagaID
        self.records = records
        self.status = status
        self.lastError = lastError
        self.creation = creation
    }
}

/// The identity written when a saga is created.
public struct SagaCreation: Hashable, Sendable {
    /// The saga definition's name.
    public var name: String
    /// The definition's fingerprint.
    public var fingerprint: String
    /// When the saga was started.
    public var createdAt: Date

    /// Creates a creation row.
    public init(name: String, fingerprint: String, createdAt: Date) {
        self.name = name
        self.fingerprint = fingerprint
        self.createdAt = createdAt
    }
}

/// One saga's row in a listing.
public struct SagaSummary: Hashable, Sendable {
    /// The saga's id.
    public var id: String
    /// The saga definition's name.
    public var name: String
    /// The fingerprint of the definition it was started with.
    public var fingerprint: String
    /// Where it stands.
    public var status: SagaStatus
    /// When it started.
    public var createdAt: Date
    /// When its last record was written.
    public var updatedAt: Date
    /// Its last failure cause, if any.
    public var lastError: RecordedError?

    /// Creates a summary.
    public init(
        id: String, name: String, fingerprint: String, status: SagaStatus, createdAt: Date, updatedAt: Date,
        lastError: RecordedError?
    ) {
        self.id = id
        self.name = name
        self.fingerprint = fingerprint
        self.status = status
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.lastError = lastError
    }
}

/// A filter for listing sagas.
///
/// ```swift
/// let stuck = try await engine.sagas(matching: SagaQuery(status: [.needsAttention]))
/// ```
public struct SagaQuery: Hashable, Sendable {
    /// Statuses to include; empty means all. Default empty.
    public var status: Set<SagaStatus>
    /// Saga name to include; `nil` means all. Default `nil`.
    public var name: String?
    /// At most this many rows. Default 100.
    public var limit: Int
    /// Skip this many rows, for paging. Default 0.
    public var offset: Int

    /// Creates a query.
    public init(status: Set<SagaStatus> = [], name: String? = nil, limit: Int = 100, offset: Int = 0) {
        self.status = status
        self.name = name
        self.limit = limit
        self.offset = offset
    }

    /// Whether a summary matches the status and name filters.
    public func matches(_ summary: SagaSummary) -> Bool {
        (status.isEmpty || status.contains(summary.status)) && (name == nil || name == summary.name)
    }
}

/// One saga's summary with its ordered records.
public struct SagaLogRecords: Sendable {
    /// The saga's row.
    public var summary: SagaSummary
    /// Its records, ordered by sequence.
    public var records: [SagaLogRecord]

    /// Creates a saga's records.
    public init(summary: SagaSummary, records: [SagaLogRecord]) {
        self.summary = summary
        self.records = records
    }
}
