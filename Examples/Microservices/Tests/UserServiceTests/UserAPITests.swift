import Foundation
import Hummingbird
import HummingbirdTesting
import ShopServices
import Testing
import UserServer

/// user-service's API in process: registering and reading users, and a 4xx that names the problem
/// for every kind of bad input.
@Suite("user-service API", .timeLimit(.minutes(1)))
struct UserAPITests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("UserAPITests-\(UUID().uuidString)")

    func withAPI(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let users = try UserService(path: directory.appendingPathComponent("users.sqlite").path)
        let app = Application(router: UserAPI(users: users).router())
        try await app.test(.router, body)
        try users.close()
    }

    static func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    static func message(_ response: TestResponse) throws -> String {
        try JSONDecoder().decode(Failure.self, from: Data(response.body.readableBytesView)).error.message
    }

    struct Failure: Decodable {
        struct Detail: Decodable { var message: String }
        var error: Detail
    }

    @Test func registersAndReadsAUser() async throws {
        try await withAPI { client in
            let created = try await client.execute(
                uri: "/users", method: .post, body: Self.json(#"{"name": "Ada Lovelace", "email": "ada@example.com"}"#))
            #expect(created.status == .created)
            let user = try JSONDecoder().decode(UserAPI.UserBody.self, from: Data(created.body.readableBytesView))
            #expect(user.name == "Ada Lovelace" && user.email == "ada@example.com")
            #expect(created.headers[.location] == "/users/\(user.id)")
            let read = try await client.execute(uri: "/users/\(user.id)", method: .get)
            #expect(read.status == .ok)
            #expect(try JSONDecoder().decode(UserAPI.UserBody.self, from: Data(read.body.readableBytesView)) == user)
            let again = try await client.execute(
                uri: "/users", method: .post, body: Self.json(#"{"name": "Ada", "email": "ADA@example.com"}"#))
            #expect(again.status == .conflict)
            #expect(try Self.message(again).contains("already registered"))
        }
    }

    @Test(arguments: [
        (#"{"name": "Ada"}"#, "'email' is missing"),
        (#"{"name": "Ada", "email": "ada@example.com", "admin": true}"#, "unknown field 'admin'"),
        (#"{"name": 7, "email": "ada@example.com"}"#, "'name' must be a string"),
        (#"{"name": "Ada", "email": "not-an-address"}"#, "malformed"),
        (#"{"name": "", "email": "ada@example.com"}"#, "must not be empty"),
        (#"["Ada"]"#, "must be a JSON object"),
        (#"{"name": "Ada", "#, "not valid JSON"),
        ("", "empty"),
    ])
    func badBodiesAreRefusedWithAMessage(body: String, problem: String) async throws {
        try await withAPI { client in
            let response = try await client.execute(uri: "/users", method: .post, body: Self.json(body))
            #expect(response.status == .badRequest, "\(body)")
            let message = try Self.message(response)
            #expect(message.contains(problem), "\(body): \(message)")
        }
    }

    @Test func anOversizedBodyIsRefused() async throws {
        try await withAPI { client in
            let name = String(repeating: "a", count: 100_000)
            let response = try await client.execute(
                uri: "/users", method: .post, body: Self.json(#"{"name": "\#(name)", "email": "a@example.com"}"#))
            #expect(response.status == .contentTooLarge)
        }
    }

    @Test(arguments: [
        ("/users/999", HTTPResponse.Status.notFound), ("/users/abc", .badRequest), ("/users/-3", .badRequest),
    ])
    func unknownOrMalformedIdsAreRefused(uri: String, status: HTTPResponse.Status) async throws {
        try await withAPI { client in
            let response = try await client.execute(uri: uri, method: .get)
            #expect(response.status == status, "\(uri)")
            let message = try Self.message(response)
            #expect(!message.isEmpty)
        }
    }

    @Test func healthEndpointsAnswer() async throws {
        try await withAPI { client in
            let live = try await client.execute(uri: "/health/live", method: .get)
            let ready = try await client.execute(uri: "/health/ready", method: .get)
            #expect(live.status == .ok && ready.status == .ok)
        }
    }
}
