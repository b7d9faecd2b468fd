#if Postgres
import Foundation
public import SagaKit

extension PostgresSagaStore {
    /// Settings of a ``PostgresSagaStore``: where the database is, how many connections it uses, and
    /// how long its claim on the sagas it runs lasts.
    ///
    /// ```swift
    /// var configuration = try PostgresSagaStore.Configuration(url: "postgres://sagakit@127.0.0.1:5432/sagakit")
    /// configuration.lease = .seconds(20)
    /// let store = PostgresSagaStore(configuration: configuration, logger: logger)
    /// ```
    ///
    /// - Important: ``lease`` must be well above ``heartbeatInterval`` (the default is six heartbeats):
    ///   an engine whose heartbeat is older than the lease loses its running sagas to the next engine that
    ///   claims them, and its later appends to them fail.
    public struct Configuration: Sendable {
        /// Whether connections use TLS.
        public struct TLS: Hashable, Sendable, CustomStringConvertible {
            enum Base: String, Hashable, Sendable {
                case disable, prefer, require
            }

            let base: Base

            /// Plain TCP only (`sslmode=disable`).
            public static let disable = TLS(base: .disable)
            /// TLS when the server offers it, plain TCP otherwise (`sslmode=prefer`). The default.
            public static let prefer = TLS(base: .prefer)
            /// TLS or no connection, with the server's certificate verified against the system's trust
            /// roots (`sslmode=require`, `verify-ca`, `verify-full`).
            public static let require = TLS(base: .require)

            public var description: String { base.rawValue }
        }

        /// The server's host name or IP address. Default `127.0.0.1`.
        public var host: String = "127.0.0.1"
        /// The server's TCP port. Default 5432.
        public var port: Int = 5432
        /// The role to connect as. Default `sagakit`.
        public var username: String = "sagakit"
        /// The role's password; `nil` for none (trust or peer authentication). Default `nil`.
        public var password: String?
        /// The database holding the saga log. Default `sagakit`.
        public var database: String = "sagakit"
        /// The schema holding the store's tables, created if missing; `nil` uses the server's
        /// `search_path` (usually `public`). Default `nil`.
        ///
        /// Several independent saga logs can share one database, one schema each.
        public var schema: String?
        /// Whether connections use TLS. Default ``TLS/prefer``.
        public var tls: TLS = .prefer
        /// The most connections the store's pool opens. Default 8.
        ///
        /// Appends use at most ``maximumCommitsInFlight`` connections at a time (they are
        /// group-committed), and one more per local step committing; the rest serve reads, heartbeats and
        /// claims.
        public var maximumConnections: Int = 8
        /// How long opening a TCP connection may take. Default 10 seconds.
        public var connectTimeout: Duration = .seconds(10)
        /// How often ``PostgresSagaStore/run()`` renews the store's heartbeat. Default 5 seconds.
        public var heartbeatInterval: Duration = .seconds(5)
        /// How long a heartbeat holds the engine's sagas: another store may claim a running or compensating
        /// saga whose owner's last heartbeat, by the database's clock, is older than this. Default 30
        /// seconds.
        public var lease: Duration = .seconds(30)
        /// The most appends one group commit writes. Default 512.
        public var maximumBatchSize: Int = 512
        /// The most group commits the store has in flight at once. Default 2.
        ///
        /// With one, the appends that arrive while a batch commits wait for its answer; with two, the
        /// next batch is built and sent while the last one waits for the disk, so the database's commit
        /// path, not the round trip, bounds the rate. A saga's appends still commit in order: a batch
        /// takes no append of a saga whose last write is in flight.
        public var maximumCommitsInFlight: Int = 2

        /// Creates a configuration with the defaults.
        ///
        /// ```swift
        /// var configuration = PostgresSagaStore.Configuration()
        /// configuration.host = "db.internal"
        /// ```
        public init() {}

        /// Creates a configuration from a URL such as `postgres://user:password@host:5432/database`.
        ///
        /// The scheme is `postgres` or `postgresql`; user, password, port and database are optional
        /// (defaults above). The query may hold `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
        /// `verify-full`) and `schema` (or `search_path`).
        ///
        /// ```swift
        /// let configuration = try PostgresSagaStore.Configuration(url: "postgres://sagakit@127.0.0.1:54329/sagakit")
        /// ```
        ///
        /// - Throws: `SagaStoreError` with code `cannotOpen` for a URL that is not a PostgreSQL URL.
        public init(url: String) throws(SagaStoreError) {
            guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
                scheme == "postgres" || scheme == "postgresql"
            else {
                throw SagaStoreError(
                    .cannotOpen,
                    message:
                        "'\(Self.redacting(url))' is not a PostgreSQL URL (postgres://user:password@host:port/database)"
                )
            }
            if let host = components.host, !host.isEmpty { self.host = host }
            if let port = components.port { self.port = port }
            if let user = components.user, !user.isEmpty { self.username = user.removingPercentEncoding ?? user }
            self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
            let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            if !path.isEmpty { self.database = path.removingPercentEncoding ?? path }
            for item in components.queryItems ?? [] {
                switch (item.name, item.value) {
                case ("sslmode", "disable"?): tls = .disable
                case ("sslmode", "prefer"?), ("sslmode", "allow"?): tls = .prefer
                case ("sslmode", "require"?), ("sslmode", "verify-ca"?), ("sslmode", "verify-full"?): tls = .require
                case ("schema", let value?), ("search_path", let value?): schema = value
                case ("sslmode", let value):
                    throw SagaStoreError(
                        .cannotOpen, message: "unknown sslmode '\(value ?? "")' in '\(Self.redacting(url))'")
                default:
                    continue
                }
            }
        }

        /// `host:port/database`, for messages; never the password.
        var endpoint: String { "\(host):\(port)/\(database)" }

        /// The URL with its password replaced by `***`, for messages.
        static func redacting(_ url: String) -> String {
            guard var components = URLComponents(string: url), components.password != nil else { return url }
            components.password = "***"
            return components.string ?? "(unreadable URL)"
        }
    }
}
#endif
