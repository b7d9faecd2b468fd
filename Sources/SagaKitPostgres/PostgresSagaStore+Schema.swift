#if Postgres
import Foundation
import Logging
import PostgresNIO
import SagaKit

extension PostgresSagaStore {
    /// One step of the versioned schema, recorded by its identifier in `sagakit_migrations` once applied.
    struct Migration: Sendable {
        let id: String
        /// One SQL statement each (the extended protocol runs one statement at a time).
        let statements: [String]
    }

    /// The schema, oldest first. Identifiers are prefixed so they never collide with the application's
    /// migrations; a migration, once released, never changes.
    static let migrations: [Migration] = [
        Migration(
            id: "sagakit.v1",
            statements: [
                """
                CREATE TABLE sagakit_meta (
                    key text PRIMARY KEY,
                    value text NOT NULL
                )
                """,
                """
                CREATE TABLE sagakit_sagas (
                    id text PRIMARY KEY,
                    name text NOT NULL,
                    fingerprint text NOT NULL,
                    status text NOT NULL,
                    created_at timestamptz NOT NULL,
                    updated_at timestamptz NOT NULL,
                    last_error jsonb,
                    owner uuid,
                    epoch bigint NOT NULL DEFAULT 1,
                    last_sequence bigint NOT NULL,
                    created_order bigint GENERATED ALWAYS AS IDENTITY
                )
                """,
                """
                CREATE INDEX sagakit_sagas_by_status ON sagakit_sagas (status, name, created_at, created_order)
                """,
                """
                CREATE INDEX sagakit_sagas_by_created ON sagakit_sagas (created_at, created_order)
                """,
                """
                CREATE INDEX sagakit_sagas_active_by_owner ON sagakit_sagas (owner)
                    WHERE status IN ('running', 'compensating')
                """,
                """
                CREATE TABLE sagakit_records (
                    saga_id text NOT NULL,
                    seq bigint NOT NULL,
                    at timestamptz NOT NULL,
                    kind text NOT NULL,
                    step text,
                    attempt bigint,
                    payload bytea,
                    error jsonb,
                    note text,
                    metadata jsonb,
                    PRIMARY KEY (saga_id, seq)
                )
                """,
                """
                CREATE TABLE sagakit_engines (
                    instance_id uuid PRIMARY KEY,
                    started_at timestamptz NOT NULL,
                    heartbeat_at timestamptz NOT NULL
                )
                """,
                """
                INSERT INTO sagakit_meta (key, value) VALUES ('log_format_version', '\(logFormatVersion)')
                """,
            ]
        ),
        // Operator requests for the engine that owns a saga (PostgresSagaStore+Requests.swift). Written
        // and read in statements of their own, never by an append: the group commit does not touch it.
        Migration(
            id: "sagakit.v2.requests",
            statements: [
                """
                CREATE TABLE sagakit_requests (
                    id uuid PRIMARY KEY,
                    saga_id text NOT NULL REFERENCES sagakit_sagas (id) ON DELETE CASCADE,
                    kind text NOT NULL,
                    reason text NOT NULL,
                    requested_at timestamptz NOT NULL,
                    requested_by uuid NOT NULL,
                    state text NOT NULL DEFAULT 'pending',
                    answer text,
                    answered_at timestamptz,
                    answered_by uuid,
                    requested_order bigint GENERATED ALWAYS AS IDENTITY
                )
                """,
                """
                CREATE INDEX sagakit_requests_by_saga ON sagakit_requests (saga_id, requested_at, requested_order)
                """,
                """
                CREATE INDEX sagakit_requests_pending ON sagakit_requests (requested_at, requested_order)
                    WHERE state = 'pending'
                """,
            ]
        ),
    ]

    /// The identifiers of every migration, oldest first: what `sagakit_migrations` holds once the schema is
    /// up to date.
    package static var migrationIDs: [String] { migrations.map(\.id) }

    /// An arbitrary, fixed first key of the advisory lock that serialises migrations; the second key is
    /// the schema's hash, so stores on different schemas do not wait for each other.
    static let migrationLockKey: Int32 = 0x5347_4B4D  // "SGKM"

    /// Brings the schema up to date in one transaction under `pg_advisory_xact_lock`, so that engines
    /// starting together migrate once; refuses a log whose recorded format is newer than this code's.
    static func migrate(_ connection: PostgresConnection, schema: String?, endpoint: String, logger: Logger)
        async throws
    {
        try await connection.query("BEGIN", logger: logger)
        do {
            let lockName = schema ?? "(search_path)"
            try await connection.query(
                "SELECT pg_advisory_xact_lock(\(migrationLockKey), hashtext(\(lockName)))", logger: logger)
            if let schema {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(quoteIdentifier(schema))"), logger: logger)
            }
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS sagakit_migrations (
                    id text PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            try checkFormat(try await formatVersion(connection, endpoint: endpoint, logger: logger), endpoint: endpoint)
            var applied = Set<String>()
            for try await id in try await connection.query("SELECT id FROM sagakit_migrations", logger: logger)
                .decode(String.self)
            {
                applied.insert(id)
            }
            for migration in migrations where !applied.contains(migration.id) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO sagakit_migrations (id) VALUES (\(migration.id))", logger: logger)
                logger.debug(
                    "saga log migrated", metadata: ["migration": "\(migration.id)", "database": "\(endpoint)"])
            }
            try await connection.query("COMMIT", logger: logger)
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// The recorded `log_format_version`, or `nil` when the schema holds no saga log yet.
    static func formatVersion(_ connection: PostgresConnection, endpoint: String, logger: Logger) async throws -> Int? {
        var hasMeta = false
        for try await exists in try await connection.query(
            "SELECT to_regclass('sagakit_meta') IS NOT NULL", logger: logger
        ).decode(Bool.self) {
            hasMeta = exists
        }
        guard hasMeta else { return nil }
        var text: String?
        for try await value in try await connection.query(
            "SELECT value FROM sagakit_meta WHERE key = 'log_format_version'", logger: logger
        ).decode(String.self) {
            text = value
        }
        guard let text else { return nil }
        guard let version = Int(text) else {
            throw SagaStoreError(
                .corrupt, path: endpoint, message: "the log_format_version of \(endpoint) is '\(text)', not a number")
        }
        return version
    }

    static func checkFormat(_ version: Int?, endpoint: String) throws(SagaStoreError) {
        guard let version, version > logFormatVersion else { return }
        throw SagaStoreError(
            .unsupportedLogFormat, path: endpoint,
            message:
                "the saga log in \(endpoint) has format version \(version), but this SagaKit reads versions up to \(logFormatVersion); upgrade SagaKit to open it (the database was left untouched)"
        )
    }

    /// `name` as a quoted SQL identifier.
    static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
#endif
