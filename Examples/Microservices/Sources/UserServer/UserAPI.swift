import Foundation
import HTTPSupport
import HTTPTypes
public import Hummingbird
import SagaKit
public import ShopServices

/// user-service's HTTP API over its own database: register a user (the article's monolith
/// endpoint) and look one up. order-service checks the customer of every order through it.
///
/// ```swift
/// let users = try UserService(path: "users.sqlite")
/// let app = Application(router: UserAPI(users: users).router(), configuration: .init(address: .hostname("127.0.0.1", port: 8001)))
/// try await app.runService()
/// ```
public struct UserAPI: Sendable {
    /// The users' database.
    public let users: UserService

    /// Creates the API over a user database.
    public init(users: UserService) {
        self.users = users
    }

    /// A new user, as `POST /users` takes it.
    struct NewUser: Decodable {
        var name: String
        var email: String
    }

    /// A user, as the API answers with it.
    public struct UserBody: ResponseCodable, Sendable, Equatable {
        /// The user id.
        public var id: Int64
        /// The name.
        public var name: String
        /// The email address.
        public var email: String

        init(_ user: User) {
            id = user.id
            name = user.name
            email = user.email
        }
    }

    /// The routes: `POST /users`, `GET /users/{id}`, `GET /health/live`, `GET /health/ready`.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.post("users") { request, _ -> EditedResponse<UserBody> in
            let body = try await StrictJSON.decode(NewUser.self, fields: ["name", "email"], from: request)
            do {
                let user = try await users.registerUser(name: body.name, email: body.email)
                return EditedResponse(
                    status: .created, headers: [.location: "/users/\(user.id)"], response: UserBody(user))
            } catch let refusal as NonRetryableError {
                let status: HTTPResponse.Status = refusal.type == ShopFailure.duplicateEmail ? .conflict : .badRequest
                throw HTTPError(status, message: refusal.message)
            }
        }
        router.get("users/:id") { _, context -> UserBody in
            guard let text = context.parameters.get("id"), let id = Int64(text), id > 0 else {
                throw HTTPError(.badRequest, message: "a user id is a positive whole number")
            }
            guard let user = try await users.user(id: id) else {
                throw HTTPError(.notFound, message: "no user with id \(id)")
            }
            return UserBody(user)
        }
        router.get("health/live") { _, _ in HTTPResponse.Status.ok }
        router.get("health/ready") { _, _ in
            _ = try await users.user(id: 1)  // the database answers
            return HTTPResponse.Status.ok
        }
        return router
    }
}
