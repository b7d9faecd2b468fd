public import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// HTTP/1.1 calls to the shop's services on 127.0.0.1, each answer read whole.
///
/// Its own connection pool, sized for concurrent callers (the shared `HTTPClient` keeps 8 connections
/// per host and queues the rest), on `HTTPClient.defaultEventLoopGroup`.
///
/// ```swift
/// static let http = LoopbackHTTPClient(configuration: .init(connectionsPerHost: 512))
///
/// let answer = try await Self.http.post(orderPort, "/orders", #"{"user_id": 1, …}"#, key: "order-1")
/// print(answer.status, answer.body)
/// ```
///
/// - Important: Keep a client for the life of the process (a `static let`), or call ``shutdown()``
///   before the last reference goes: the underlying `HTTPClient` traps in a debug build when it is
///   released still running.
public final class LoopbackHTTPClient: Sendable {
    /// A status and a body, as a service answered.
    public struct Answer: Sendable, Hashable {
        /// The HTTP status code, e.g. 201.
        public var status: UInt
        /// The body, decoded as UTF-8.
        public var body: String
    }

    /// How many connections, how long a call may take, how large an answer may be.
    public struct Configuration: Sendable {
        /// Connections per service (host and port) that callers may hold at once; more wait for one.
        /// Default: 64.
        public var connectionsPerHost: Int
        /// How long one call may wait for its answer. Default: 30 s.
        public var timeout: Duration
        /// The largest body read; a longer one fails the call. Default: 1 MiB.
        public var maximumBodyBytes: Int

        /// A configuration; every parameter defaults as its property says.
        public init(connectionsPerHost: Int = 64, timeout: Duration = .seconds(30), maximumBodyBytes: Int = 1 << 20) {
            self.connectionsPerHost = connectionsPerHost
            self.timeout = timeout
            self.maximumBodyBytes = maximumBodyBytes
        }
    }

    /// The configuration it was made with.
    public let configuration: Configuration
    private let client: HTTPClient

    /// A client with its own connection pool.
    ///
    /// - Parameter configuration: Its pool size, timeout and body limit.
    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
        var settings = HTTPClient.Configuration()
        settings.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.connectionsPerHost)
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: settings)
    }

    /// Posts a JSON body to `http://127.0.0.1:port/path`.
    ///
    /// ```swift
    /// let created = try await http.post(userPort, "/users", #"{"name": "Ada", "email": "ada@example.com"}"#)
    /// ```
    ///
    /// - Parameters:
    ///   - port: The service's port on loopback.
    ///   - path: The path, from its leading `/`.
    ///   - body: The JSON body, sent with `Content-Type: application/json`.
    ///   - key: The `Idempotency-Key` header, when given.
    public func post(_ port: Int, _ path: String, _ body: String, key: String? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key { request.headers.add(name: "Idempotency-Key", value: key) }
        request.body = .bytes(ByteBuffer(string: body))
        return try await send(request)
    }

    /// Gets `http://127.0.0.1:port/path`.
    ///
    /// ```swift
    /// let timeline = try await http.get(orderPort, "/sagas/order-1")
    /// ```
    public func get(_ port: Int, _ path: String) async throws -> Answer {
        try await send(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"))
    }

    /// Sends any request and reads its answer whole, within the configured timeout and body limit.
    ///
    /// ```swift
    /// var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/orders/1")
    /// request.method = .DELETE
    /// let answer = try await http.send(request)
    /// ```
    public func send(_ request: HTTPClientRequest) async throws -> Answer {
        let response = try await client.execute(request, timeout: TimeAmount(configuration.timeout))
        let body = try await response.body.collect(upTo: configuration.maximumBodyBytes)
        return Answer(status: response.status.code, body: String(buffer: body))
    }

    /// Closes the connections; no call may follow.
    public func shutdown() async throws {
        try await client.shutdown()
    }
}
