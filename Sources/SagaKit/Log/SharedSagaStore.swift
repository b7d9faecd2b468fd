public import Foundation

/// A saga log that several engines share, each saga run by one engine at a time.
///
/// An embedded store (`SQLiteSagaStore`) belongs to one engine, so recovery at start is all it needs.
/// A shared store (`PostgresSagaStore` in `SagaKitPostgres`) also serves engines in other processes,
/// and any of them may die. It gives each saga an owner and a claim epoch, renews a heartbeat for its
/// engine, and fences every append: an append from an engine that no longer owns the saga fails with
/// ``SagaStoreError/Code/ownershipLost`` and writes nothing.
///
/// When its store is shared, a ``SagaEngine``:
/// - every ``sweepInterval`` calls ``claimOrphanedSagas(limit:)`` and resumes what it claimed from the
///   log, forward or backward, as recovery does at start;
/// - at the same sweep, answers the ``pendingRequests(limit:)`` for the sagas it owns: an operator's
///   cancellation made through another engine (see ``SagaEngine/cancel(sagaID:reason:)``);
/// - at the same sweep, resumes from the log its own sagas whose run stopped because the log could not
///   be written (the database was away longer than the log-write retries last, or a retry found its own
///   unacknowledged commit there); until then ``SagaEngine/strandedSagas`` lists them with
///   ``SagaError/Code/logWriteFailed``, and no operator's ``SagaEngine/resume(sagaID:)`` is needed;
/// - starts no step attempt while ``leaseIsCurrent`` is `false` (its heartbeat could not be renewed,
///   so another engine may take its sagas at any moment), and goes on once it is renewed;
/// - stops a saga's run when an append fails with ``SagaStoreError/Code/ownershipLost``: the saga is
///   another engine's now, and the run's callers get ``SagaError/Code/ownershipLost``.
///
/// ```swift
/// let store = PostgresSagaStore(configuration: try .init(url: url), logger: logger)
/// let engine = SagaEngine(store: store, logger: logger)  // sweeps, because the store is shared
/// ```
///
/// ## Operator requests
///
/// Only a saga's owner appends to it, so an operator action that must reach a saga another live engine
/// runs (a cancellation) goes through a request channel beside the log: the engine the operator talks
/// to records a ``SagaOperatorRequest`` (``recordRequest(id:kind:sagaID:reason:)``), the owner finds it
/// among its ``pendingRequests(limit:)`` at its next sweep, carries it out through its own log, and
/// answers it (``answerRequest(_:with:)``). The request channel is not on the append path: recording or
/// answering a request never writes the saga's log, and appends never read the requests.
///
/// The request requirements have default implementations for stores without a channel: recording
/// throws ``SagaStoreError/Code/unsupported`` (the engine then refuses the action with
/// ``SagaError/Code/ownershipLost``, as before the channel existed), and there is never anything
/// pending.
public protocol SharedSagaStore: SagaStore {
    /// Takes over unfinished (running or compensating) sagas whose engine's lease has run out, making
    /// this store their owner under a new epoch, and returns their records, grouped by saga and
    /// ordered by sequence, as ``SagaStore/activeSagaRecords()`` does.
    ///
    /// - Parameter limit: At most this many sagas in one call; `nil` for no limit.
    func claimOrphanedSagas(limit: Int?) async throws -> [SagaLogRecords]

    /// Whether this store's engine holds its lease: its heartbeat was renewed less than a lease ago.
    var leaseIsCurrent: Bool { get }

    /// How often the engine claims orphaned sagas, answers requests, and checks again for a lease that
    /// is not current.
    var sweepInterval: Duration { get }

    /// Whether this store believes it owns a saga: it created, claimed or adopted it (and, as far as it
    /// knows, nobody claimed it since).
    ///
    /// The engine asks before carrying out a cancellation itself: a running saga this store does not
    /// own is another engine's, so the engine records a request instead of appending. The answer may be
    /// stale in one direction only: a store that lost a saga to a claim it has not seen yet still says
    /// `true`, and its append is then refused by the fence, after which the engine records the request
    /// all the same.
    ///
    /// The default says `true`, so that a store which cannot tell leaves the decision to its fence.
    ///
    /// ```swift
    /// if !store.holdsOwnership(of: "order-42") { print("another engine runs order-42") }
    /// ```
    func holdsOwnership(of sagaID: String) -> Bool

    /// Durably records a request for the engine that owns a saga, and returns it as stored.
    ///
    /// The store stamps the request with its own clock (the database's, for a server) and its own
    /// identity as the requester, in a statement of its own: nothing is appended to the saga's log.
    /// Recording is idempotent on `id`: recording an id that is already stored changes nothing and
    /// returns the stored request, so a caller that lost the answer may simply record it again.
    ///
    /// ```swift
    /// let request = try await store.recordRequest(
    ///     id: UUID(), kind: .cancel, sagaID: "order-42", reason: "customer cancelled")
    /// ```
    ///
    /// - Throws: ``SagaStoreError`` with ``SagaStoreError/Code/unknownSaga`` for an unknown saga, or
    ///   ``SagaStoreError/Code/unsupported`` when the store has no request channel (the default).
    func recordRequest(
        id: UUID, kind: SagaOperatorRequest.Kind, sagaID: String, reason: String
    ) async throws -> SagaOperatorRequest

    /// The unanswered requests this store's engine must answer, oldest first: those for the sagas it
    /// owns, whatever their status, and those for sagas no engine will run again (not running or
    /// compensating, and their owner's lease has run out), which any engine may answer from the log.
    ///
    /// A request for a saga whose owner died while it was running is returned to whichever store claims
    /// the saga. The default returns none.
    ///
    /// - Parameter limit: At most this many requests; `nil` for no limit.
    func pendingRequests(limit: Int?) async throws -> [SagaOperatorRequest]

    /// Answers a pending request; only the first answer counts.
    ///
    /// - Returns: `true` when this answer was stored, `false` when the request was answered already (or
    ///   is unknown).
    /// - Throws: ``SagaStoreError`` when the store cannot be written, or
    ///   ``SagaStoreError/Code/unsupported`` when it has no request channel (the default).
    func answerRequest(_ id: UUID, with answer: SagaOperatorRequest.Answer) async throws -> Bool

    /// Every request recorded for a saga, answered or not, oldest first; empty for an unknown saga.
    ///
    /// This is how an operator sees what became of a request. The default returns none.
    func requests(of sagaID: String) async throws -> [SagaOperatorRequest]
}

extension SharedSagaStore {
    /// Says `true`: a store that cannot tell leaves the decision to its fence.
    public func holdsOwnership(of sagaID: String) -> Bool { true }

    /// Throws ``SagaStoreError/Code/unsupported``: a store without a request channel.
    public func recordRequest(
        id: UUID, kind: SagaOperatorRequest.Kind, sagaID: String, reason: String
    ) async throws -> SagaOperatorRequest {
        throw SagaStoreError(
            .unsupported, message: "\(Self.self) has no request channel for the engine that runs saga '\(sagaID)'")
    }

    /// Returns none: a store without a request channel.
    public func pendingRequests(limit: Int?) async throws -> [SagaOperatorRequest] { [] }

    /// Throws ``SagaStoreError/Code/unsupported``: a store without a request channel.
    public func answerRequest(_ id: UUID, with answer: SagaOperatorRequest.Answer) async throws -> Bool {
        throw SagaStoreError(.unsupported, message: "\(Self.self) has no request channel")
    }

    /// Returns none: a store without a request channel.
    public func requests(of sagaID: String) async throws -> [SagaOperatorRequest] { [] }
}

/// An operator's request for the engine that runs a saga, kept beside a shared log: made through any
/// engine, carried out and answered by the saga's owner.
///
/// ```swift
/// for request in try await engine.operatorRequests(of: "order-42") {
///     print(request.kind, request.state, request.answer?.message ?? "not answered yet")
/// }
/// ```
public struct SagaOperatorRequest: Hashable, Sendable, Identifiable {
    /// What the request asks for.
    public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The name stored with the request.
        public let rawValue: String
        /// A kind from its stored name.
        public init(rawValue: String) { self.rawValue = rawValue }

        /// Cancel the saga, as ``SagaEngine/cancel(sagaID:reason:)`` does on its owner.
        public static let cancel = Kind(rawValue: "cancel")

        public var description: String { rawValue }
    }

    /// Where a request stands.
    public struct State: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The name stored with the request.
        public let rawValue: String
        /// A state from its stored name.
        public init(rawValue: String) { self.rawValue = rawValue }

        /// Not answered yet: the owner carries it out at its next sweep.
        public static let pending = State(rawValue: "pending")
        /// Carried out: for a cancellation, `operator.cancelled` is in the saga's log.
        public static let applied = State(rawValue: "applied")
        /// Not carried out, and never will be; the answer's message says why.
        public static let refused = State(rawValue: "refused")

        public var description: String { rawValue }
    }

    /// How a request was answered: applied or refused, with a sentence saying what happened.
    public struct Answer: Hashable, Sendable {
        /// ``State/applied`` or ``State/refused``.
        public let state: State
        /// What the answering engine did, or why it refused.
        public let message: String

        private init(state: State, message: String) {
            self.state = state
            self.message = message
        }

        /// The request was carried out.
        public static func applied(_ message: String) -> Answer { Answer(state: .applied, message: message) }
        /// The request was not carried out, for the reason given.
        public static func refused(_ message: String) -> Answer { Answer(state: .refused, message: message) }
    }

    /// The request's identity, chosen by the requester (recording it again is idempotent).
    public let id: UUID
    /// The saga concerned.
    public var sagaID: String
    /// What is asked.
    public var kind: Kind
    /// The operator's reason, logged with the action when it is carried out.
    public var reason: String
    /// When the store recorded the request, by the store's clock.
    public var requestedAt: Date
    /// The store instance through which the request was made.
    public var requestedBy: String
    /// The answer; `nil` while the request is pending.
    public var answer: Answer?
    /// When the answer was stored, by the store's clock.
    public var answeredAt: Date?
    /// The store instance that answered.
    public var answeredBy: String?

    /// ``State/pending`` until answered, then the answer's state.
    public var state: State { answer?.state ?? .pending }

    /// Creates a request as a store read it.
    public init(
        id: UUID, sagaID: String, kind: Kind, reason: String, requestedAt: Date, requestedBy: String,
        answer: Answer? = nil, answeredAt: Date? = nil, answeredBy: String? = nil
    ) {
        self.id = id
        self.sagaID = sagaID
        self.kind = kind
        self.reason = reason
        self.requestedAt = requestedAt
        self.requestedBy = requestedBy
        self.answer = answer
        self.answeredAt = answeredAt
        self.answeredBy = answeredBy
    }
}
