import SagaKit
import ShopServices
import Testing

@Suite("User service", .tags(.services), .timeLimit(.minutes(1)))
struct UserServiceTests {
    let directory: TemporaryDirectory
    let users: UserService

    init() throws {
        directory = try TemporaryDirectory()
        users = try UserService(path: directory.file("users.sqlite"))
    }

    @Test func registersAUser() async throws {
        let ada = try await users.registerUser(name: "  Ada Lovelace ", email: " ada@example.com ")
        #expect(ada.name == "Ada Lovelace")
        #expect(ada.email == "ada@example.com")
        #expect(try await users.user(id: ada.id) == ada)
        #expect(try await users.user(email: "ADA@example.com") == ada)
    }

    @Test func aDuplicateEmailIsRefusedAndChangesNothing() async throws {
        let ada = try await users.registerUser(name: "Ada Lovelace", email: "ada@example.com")
        let error = await shopFailure { _ = try await users.registerUser(name: "Ada", email: "Ada@Example.com") }
        #expect(error?.type == ShopFailure.duplicateEmail)
        #expect(error?.message == "the email address 'Ada@Example.com' is already registered")
        #expect(try await users.users() == [ada])
    }

    @Test(
        arguments: [
            ("", "it is empty"),
            ("ada", "it has no '@'"),
            ("ada@@example.com", "it has more than one '@'"),
            ("@example.com", "nothing comes before the '@'"),
            ("ada@", "nothing comes after the '@'"),
            ("ada@example", "its domain 'example' has no dot"),
            ("ada@example..com", "its domain 'example..com' has an empty part"),
            ("ada lovelace@example.com", "it contains a space"),
        ])
    func aMalformedEmailIsRefusedWithItsReason(email: String, reason: String) async throws {
        let error = await shopFailure { _ = try await users.registerUser(name: "Ada", email: email) }
        #expect(error?.type == ShopFailure.invalidEmail)
        #expect(error?.message == "the email address '\(email)' is malformed: \(reason)")
        #expect(try await users.users().isEmpty)
    }

    @Test func anEmptyOrOverlongNameIsRefused() async throws {
        #expect(
            await shopFailure { _ = try await users.registerUser(name: "  ", email: "a@example.com") }?.type
                == ShopFailure.invalidName)
        #expect(
            await shopFailure {
                _ = try await users.registerUser(name: String(repeating: "a", count: 101), email: "a@example.com")
            }?.type == ShopFailure.invalidName)
        #expect(try await users.users().isEmpty)
    }
}
