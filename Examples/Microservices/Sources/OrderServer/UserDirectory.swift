import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SagaKit

/// What the place-order saga asks of user-service: whether the customer exists.
public protocol UserDirectory: Sendable {
    /// Returns if the user exists; throws a `NonRetryableError` of type `UnknownUser` if not, and a
    /// retryable error when user-service does not answer.
    func requireUser(id: Int64) async throws
}

/// user-service over HTTP.
public struct HTTPUserDirectory: UserDirectory {
    /// user-service's base URL, for example `http://127.0.0.1:8001`.
    public var baseURL: String
    /// Every request's deadline.
    public var timeout: Duration

    /// Creates a directory over user-service at `baseURL`.
    public init(baseURL: String, timeout: Duration = .seconds(2)) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.timeout = timeout
    }

    public func requireUser(id: Int64) async throws {
        let request = HTTPClientRequest(url: "\(baseURL)/users/\(id)")
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
        } catch {
            throw RemoteCallError(service: "user-service", detail: "\(error)")
        }
        _ = try? await response.body.collect(upTo: 64 * 1024)
        switch response.status.code {
        case 200: return
        case 404: throw NonRetryableError("user-service has no user \(id)", type: "UnknownUser")
        default: throw RemoteCallError(service: "user-service", detail: "HTTP \(response.status.code)")
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
