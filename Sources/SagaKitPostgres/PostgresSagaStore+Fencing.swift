#if Postgres
import Foundation
import Logging
import PostgresNIO
public import SagaKit
import ServiceLifecycle
import Synchronization

extension PostgresSagaStore {
    /// Whether this store's lease is current: its last successful heartbeat renewal was sent less than
    /// ``Configuration/lease`` ago, by the local monotonic clock.
    ///
    /// Once it is `false`, other stores may have claimed this store's running sagas; its appends to them
    /// then fail. The check is local and conservative (it counts from when the renewal was sent); the
    /// database decides claims by its own clock.
    ///
    /// ```swift
    /// if !store.leaseIsCurrent { logger.warning("saga lease lapsed") }
    /// ```
    /// How often an engine on this store claims orphaned sagas: every ``Configuration/heartbeatInterval``,
    /// so that a dead engine's sagas are taken over within the lease plus one heartbeat.
    ///
    /// ```swift
    /// print(store.sweepInterval)  // 5.0 seconds
    /// ```
    public var sweepInterval: Duration { configuration.heartbeatInterval }

    public var leaseIsCurrent: Bool {
        guard let renewed = lastRenewal.withLock({ $0 }) else { return false }
        return ContinuousClock.now - renewed < configuration.lease
    }

    /// Renews this store's heartbeat in `sagakit_engines` with the database's `clock_timestamp()`.
    ///
    /// ``run()`` calls it every ``Configuration/heartbeatInterval``; call it yourself only to renew at
    /// another moment. A store whose row was removed (by an operator, say) inserts it again: sagas claimed
    /// meanwhile stay with their new owners.
    ///
    /// ```swift
    /// try await store.renewHeartbeat()
    /// ```
    ///
    /// - Throws: `SagaStoreError` (`io` when the database cannot be reached, or the store is closed).
    public func renewHeartbeat() async throws {
        let sent = ContinuousClock.now
        _ = try await read("renewing the heartbeat of engine \(instanceID)") { client, logger in
            try await client.queryIfOpen(
                """
                INSERT INTO sagakit_engines (instance_id, started_at, heartbeat_at)
                VALUES (\(instanceID), clock_timestamp(), clock_timestamp())
                ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = clock_timestamp()
                """, logger: logger)
        }
        lastRenewal.withLock { last in
            if last.map({ $0 < sent }) ?? true { last = sent }
        }
    }

    /// Renews the heartbeat every ``Configuration/heartbeatInterval`` until ``close()``, graceful
    /// shutdown or cancellation; a failed renewal is logged and retried at the next beat.
    func heartbeatLoop() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in self.lifecycle.stopRequests {}
            }
            group.addTask {
                try? await cancelWhenGracefulShutdown {
                    while !Task.isCancelled {
                        try await Task.sleep(for: self.configuration.heartbeatInterval)
                        do {
                            try await self.renewHeartbeat()
                        } catch is CancellationError {
                            return
                        } catch {
                            self.logger.warning(
                                "saga store heartbeat failed",
                                metadata: [
                                    "database": "\(self.endpoint)", "instance_id": "\(self.instanceID)",
                                    "error": "\(error)", "lease_is_current": "\(self.leaseIsCurrent)",
                                ])
                        }
                    }
                }
            }
            _ = await group.next()
            group.cancelAll()
        }
    }

    /// Claims, in one transaction, up to `limit` running or compensating sagas whose owner's heartbeat is
    /// older than ``Configuration/lease`` (or whose owner has no row in `sagakit_engines`), and returns
    /// their records, oldest saga first, as ``activeSagaRecords()`` does.
    ///
    /// Each claimed saga gets `owner = instanceID` and `epoch = epoch + 1`, so its previous owner's
    /// appends fail from now on. Rows another store is claiming at the same moment are skipped
    /// (`FOR UPDATE SKIP LOCKED`), so concurrent claimers split the orphans between them. Hand the result
    /// to an engine to resume those sagas.
    ///
    /// ```swift
    /// let orphans = try await store.claimOrphanedSagas(limit: 100)
    /// ```
    ///
    /// - Parameter limit: The most sagas to claim; `nil` for all.
    /// - Throws: `SagaStoreError` (`io`, `locked`, `corrupt`).
    public func claimOrphanedSagas(limit: Int? = nil) async throws -> [SagaLogRecords] {
        try await claim(limit: limit, includingOwned: false)
    }

    /// The records of every running or compensating saga this store owns or can claim, oldest first, each
    /// ordered by sequence: what recovery resumes.
    ///
    /// It claims the orphaned ones first (see ``claimOrphanedSagas(limit:)``), in the same transaction as
    /// it reads the rest. Sagas that another live engine runs are left out: that engine resumes them, or
    /// this store claims them once that engine's lease has ended. So several engines sharing one log can
    /// each recover at start without running a saga twice.
    ///
    /// ```swift
    /// let unfinished = try await store.activeSagaRecords()
    /// ```
    public func activeSagaRecords() async throws -> [SagaLogRecords] {
        try await claim(limit: nil, includingOwned: true)
    }

    private func claim(limit: Int?, includingOwned: Bool) async throws -> [SagaLogRecords] {
        let action = includingOwned ? "loading active sagas" : "claiming orphaned sagas"
        let lease = configuration.lease
        let leaseSeconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        let claimLimit = limit.map { max(0, $0) }
        let result = try await read(action) { client, logger in
            try await client.withConnection { connection in
                _ = try await connection.queryIfOpen("BEGIN", logger: logger)
                do {
                    let sagas = try await Self.claimAndLoad(
                        connection, me: instanceID, leaseSeconds: leaseSeconds, limit: claimLimit,
                        includingOwned: includingOwned, logger: logger)
                    _ = try await connection.queryIfOpen("COMMIT", logger: logger)
                    return sagas
                } catch {
                    _ = try? await connection.queryIfOpen("ROLLBACK", logger: logger)
                    throw error
                }
            }
        }
        epochs.withLock { epochs in
            for saga in result { epochs[saga.summary.id] = saga.epoch }
        }
        let claimed = result.filter(\.claimed).map(\.summary.id)
        if !claimed.isEmpty {
            logger.info(
                "claimed orphaned sagas",
                metadata: [
                    "database": "\(endpoint)", "instance_id": "\(instanceID)", "count": "\(claimed.count)",
                    "saga.ids": "\(claimed.prefix(20).joined(separator: ","))",
                ])
        }
        return result.map { SagaLogRecords(summary: $0.summary, records: $0.records) }
    }

    private struct ClaimedSaga: Sendable {
        var summary: SagaSummary
        var epoch: Int64
        var claimed: Bool
        var records: [SagaLogRecord] = []
    }

    /// Claims the orphans (and, with `includingOwned`, selects this store's own active sagas), then
    /// loads their records; inside the caller's transaction.
    private static func claimAndLoad(
        _ connection: PostgresConnection, me: UUID, leaseSeconds: Double, limit: Int?, includingOwned: Bool,
        logger: Logger
    ) async throws -> [ClaimedSaga] {
        let rows = try await connection.queryIfOpen(
            """
            WITH claimable AS (
                SELECT s.id FROM sagakit_sagas s
                LEFT JOIN sagakit_engines e ON e.instance_id = s.owner
                WHERE s.status IN ('running', 'compensating')
                  AND s.owner IS DISTINCT FROM \(me)
                  AND (e.instance_id IS NULL
                       OR e.heartbeat_at < clock_timestamp() - make_interval(secs => \(leaseSeconds)))
                ORDER BY s.created_at, s.created_order
                LIMIT \(limit)
                FOR UPDATE OF s SKIP LOCKED
            ),
            claimed AS (
                UPDATE sagakit_sagas s SET owner = \(me), epoch = s.epoch + 1
                FROM claimable c WHERE s.id = c.id
                RETURNING s.id, s.epoch, s.created_at, s.created_order
            ),
            owned AS (
                SELECT s.id, s.epoch, s.created_at, s.created_order FROM sagakit_sagas s
                WHERE \(includingOwned) AND s.owner = \(me) AND s.status IN ('running', 'compensating')
            ),
            chosen AS (
                SELECT id, epoch, created_at, created_order, true AS claimed FROM claimed
                UNION ALL
                SELECT id, epoch, created_at, created_order, false FROM owned
            )
            SELECT \(unescaped: LogRow.qualifiedSagaColumns), c.epoch, c.claimed
            FROM chosen c JOIN sagakit_sagas s ON s.id = c.id
            ORDER BY c.created_at, c.created_order
            """, logger: logger)
        let decoder = JSONDecoder()
        var sagas: [ClaimedSaga] = []
        for row in rows {
            let cells = row.makeRandomAccess()
            sagas.append(
                ClaimedSaga(
                    summary: try LogRow.summary(row, decoder), epoch: try cells[7].decode(Int64.self),
                    claimed: try cells[8].decode(Bool.self)))
        }
        guard !sagas.isEmpty else { return [] }
        let ids = sagas.map(\.summary.id)
        var recordsBySaga: [String: [SagaLogRecord]] = [:]
        for row in try await connection.queryIfOpen(
            """
            SELECT \(unescaped: LogRow.recordColumns) FROM sagakit_records
            WHERE saga_id = ANY(\(ids)::text[]) ORDER BY saga_id, seq
            """, logger: logger)
        {
            let record = try LogRow.record(row, decoder)
            recordsBySaga[record.sagaID, default: []].append(record)
        }
        for index in sagas.indices { sagas[index].records = recordsBySaga[sagas[index].summary.id] ?? [] }
        return sagas
    }
}
#endif
