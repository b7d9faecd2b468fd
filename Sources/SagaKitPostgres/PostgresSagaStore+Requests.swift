#if Postgres
public import Foundation
import Logging
import PostgresNIO
public import SagaKit
import Synchronization

// MARK: - Operator requests
//
// `sagakit_requests` (migration `sagakit.v2.requests`) is the channel through which an engine asks the
// engine that owns a saga to act on it: an operator's cancellation made through the wrong replica.
// Each request is one row, written by one autocommitted statement of its own (the requester's insert,
// the owner's answer), stamped with the database's `clock_timestamp()`. Nothing here is on the append
// path: the group commit never reads or writes the table, and no NOTIFY is sent; the owner finds its
// requests by reading them at its sweep.

extension PostgresSagaStore {
    /// The request columns, qualified by the alias `r`, in the order ``request(_:)`` reads them.
    private static let requestColumns = """
        r.id, r.saga_id, r.kind, r.reason, r.requested_at, r.requested_by, r.state, r.answer, r.answered_at, \
        r.answered_by
        """

    /// Whether this store holds an epoch for the saga: it created, claimed or adopted it and has not seen
    /// it finish.
    ///
    /// A store that lost the saga to another engine's claim still says `true` until its next append is
    /// refused by the fence.
    ///
    /// ```swift
    /// if !store.holdsOwnership(of: "order-42") { print("another engine runs order-42") }
    /// ```
    public func holdsOwnership(of sagaID: String) -> Bool {
        epochs.withLock { $0[sagaID] != nil }
    }

    /// Records a request for the engine that owns a saga, in `sagakit_requests`, and returns it as stored.
    ///
    /// The row gets `requested_at = clock_timestamp()` (the database's clock), `requested_by =`
    /// ``instanceID`` and `state = 'pending'`, in one statement of its own; returns after its commit.
    /// Recording an `id` that is already stored changes nothing and returns the stored request.
    ///
    /// ```swift
    /// let request = try await store.recordRequest(
    ///     id: UUID(), kind: .cancel, sagaID: "order-42", reason: "customer cancelled")
    /// ```
    ///
    /// - Throws: `SagaStoreError`: `unknownSaga` when no saga has the id, `io`, `locked`, `readOnly`.
    public func recordRequest(
        id: UUID, kind: SagaOperatorRequest.Kind, sagaID: String, reason: String
    ) async throws -> SagaOperatorRequest {
        let kindName = kind.rawValue
        let stored = try await read("recording a \(kind) request for saga '\(sagaID)'") { client, logger in
            _ = try await client.queryIfOpen(
                """
                INSERT INTO sagakit_requests (id, saga_id, kind, reason, requested_at, requested_by)
                SELECT \(id), s.id, \(kindName), \(reason), clock_timestamp(), \(instanceID)
                FROM sagakit_sagas s WHERE s.id = \(sagaID)
                ON CONFLICT (id) DO NOTHING
                """, logger: logger)
            return try await Self.requests(
                client.queryIfOpen(
                    "SELECT \(unescaped: Self.requestColumns) FROM sagakit_requests r WHERE r.id = \(id)",
                    logger: logger)
            ).first
        }
        guard let stored else {
            throw SagaStoreError(
                .unknownSaga, path: endpoint, message: "saga '\(sagaID)' does not exist; no request was recorded")
        }
        return stored
    }

    /// The pending requests this store's engine must answer, oldest first: those for the sagas it owns
    /// (`owner =` ``instanceID``), whatever their status, and those for sagas that are not running or
    /// compensating and whose owner's heartbeat is older than the ``Configuration/lease`` (or whose
    /// owner has no row), which any engine may answer from the log.
    ///
    /// A request for a running saga whose owner died is returned to the store that claims the saga.
    ///
    /// ```swift
    /// let mine = try await store.pendingRequests(limit: 100)
    /// ```
    ///
    /// - Parameter limit: The most requests to return; `nil` for all.
    public func pendingRequests(limit: Int? = nil) async throws -> [SagaOperatorRequest] {
        let lease = configuration.lease
        let leaseSeconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        let limit = limit.map { max(0, $0) }
        return try await read("reading pending operator requests") { client, logger in
            try await Self.requests(
                client.queryIfOpen(
                    """
                    SELECT \(unescaped: Self.requestColumns)
                    FROM sagakit_requests r
                    JOIN sagakit_sagas s ON s.id = r.saga_id
                    LEFT JOIN sagakit_engines e ON e.instance_id = s.owner
                    WHERE r.state = 'pending'
                      AND (s.owner = \(instanceID)
                           OR (s.status NOT IN ('running', 'compensating')
                               AND (e.instance_id IS NULL
                                    OR e.heartbeat_at < clock_timestamp() - make_interval(secs => \(leaseSeconds)))))
                    ORDER BY r.requested_at, r.requested_order
                    LIMIT \(limit)
                    """, logger: logger))
        }
    }

    /// Answers a pending request: sets its state and answer, `answered_at = clock_timestamp()` and
    /// `answered_by =` ``instanceID``, only if it is still pending.
    ///
    /// ```swift
    /// try await store.answerRequest(request.id, with: .refused("saga 'order-42' has passed its pivot"))
    /// ```
    ///
    /// - Returns: `true` when this answer was stored; `false` when the request was answered already or is
    ///   unknown.
    public func answerRequest(_ id: UUID, with answer: SagaOperatorRequest.Answer) async throws -> Bool {
        let state = answer.state.rawValue
        let message = answer.message
        return try await read("answering operator request \(id)") { client, logger in
            let rows = try await client.queryIfOpen(
                """
                UPDATE sagakit_requests
                SET state = \(state), answer = \(message), answered_at = clock_timestamp(),
                    answered_by = \(instanceID)
                WHERE id = \(id) AND state = 'pending'
                RETURNING id
                """, logger: logger)
            return !rows.isEmpty
        }
    }

    /// Every request recorded for a saga, answered or not, oldest first.
    ///
    /// ```swift
    /// for request in try await store.requests(of: "order-42") { print(request.state, request.answer?.message ?? "") }
    /// ```
    public func requests(of sagaID: String) async throws -> [SagaOperatorRequest] {
        try await read("reading the operator requests of saga '\(sagaID)'") { client, logger in
            try await Self.requests(
                client.queryIfOpen(
                    """
                    SELECT \(unescaped: Self.requestColumns) FROM sagakit_requests r
                    WHERE r.saga_id = \(sagaID) ORDER BY r.requested_at, r.requested_order
                    """, logger: logger))
        }
    }

    /// Decodes the rows of a query selecting ``requestColumns``.
    private static func requests(_ rows: PostgresQueryResult) async throws -> [SagaOperatorRequest] {
        var requests: [SagaOperatorRequest] = []
        for row in rows { requests.append(try request(row)) }
        return requests
    }

    private static func request(_ row: PostgresRow) throws -> SagaOperatorRequest {
        let cells = row.makeRandomAccess()
        let state = SagaOperatorRequest.State(rawValue: try cells[6].decode(String.self))
        let message = try cells[7].decode(String?.self) ?? ""
        let answer: SagaOperatorRequest.Answer? =
            switch state {
            case .pending: nil
            case .applied: .applied(message)
            default: .refused(message)
            }
        return SagaOperatorRequest(
            id: try cells[0].decode(UUID.self),
            sagaID: try cells[1].decode(String.self),
            kind: SagaOperatorRequest.Kind(rawValue: try cells[2].decode(String.self)),
            reason: try cells[3].decode(String.self),
            requestedAt: try cells[4].decode(Date.self),
            requestedBy: try cells[5].decode(UUID.self).uuidString.lowercased(),
            answer: answer,
            answeredAt: try cells[8].decode(Date?.self),
            answeredBy: try cells[9].decode(UUID?.self).map { $0.uuidString.lowercased() })
    }
}
#endif
