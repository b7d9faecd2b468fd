public import Foundation
import GRDB
import SagaKit

/// The user service: registered users, in its own SQLite file.
///
/// ``registerUser(name:email:)`` validates its input and refuses a second registration of an email
/// address (compared without regard to case), so registering the same person twice leaves one user.
///
/// ```swift
/// let users = try UserService(path: "users.sqlite")
/// let ada = try await users.registerUser(name: "Ada Lovelace", email: "ada@example.com")
/// // try await users.registerUser(name: "Ada", email: "ADA@example.com")  → DuplicateEmail
/// ```
public final class UserService: Sendable {
    /// The database file's path.
    public let path: String
    let database: DatabasePool

    /// Opens the user database at `path`, creating it if needed.
    ///
    /// - Throws: ``ShopStorageError`` when the file is not an SQLite database, belongs to another
    ///   service, or cannot be created.
    public init(path: String) throws {
        self.path = path
        self.database = try ServiceDatabase.open(path: path, service: "users", migrator: Self.migrator)
    }

    /// Closes the database; later calls fail.
    public func close() throws {
        try database.close()
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("users.v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE users (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        name TEXT NOT NULL,
                        email TEXT NOT NULL,
                        email_key TEXT NOT NULL UNIQUE,
                        registered_at REAL NOT NULL
                    );
                    """)
        }
        return migrator
    }

    /// Registers a user.
    ///
    /// The name is trimmed and must hold 1 to 100 characters. The email address is trimmed and must
    /// look like `local@domain.tld`: one `@`, no spaces, a dot inside the domain, at most 254
    /// characters.
    ///
    /// - Throws: `NonRetryableError` of type ``ShopFailure/invalidName``,
    ///   ``ShopFailure/invalidEmail`` (the message says what is wrong), or
    ///   ``ShopFailure/duplicateEmail`` when the address is taken. Nothing is written when it throws.
    public func registerUser(name: String, email: String) async throws -> User {
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.count <= 100 else {
            throw NonRetryableError(
                name.isEmpty ? "a user's name must not be empty" : "a user's name must be at most 100 characters",
                type: ShopFailure.invalidName)
        }
        let email = email.trimmingCharacters(in: .whitespacesAndNewlines)
        if let problem = Self.emailProblem(email) {
            throw NonRetryableError(
                "the email address '\(email)' is malformed: \(problem)", type: ShopFailure.invalidEmail)
        }
        let emailKey = email.lowercased()
        let now = Date().timeIntervalSince1970
        return try await database.write { db in
            if try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM users WHERE email_key = ?)", arguments: [emailKey]) == true
            {
                throw NonRetryableError(
                    "the email address '\(email)' is already registered", type: ShopFailure.duplicateEmail)
            }
            try db.execute(
                sql: "INSERT INTO users (name, email, email_key, registered_at) VALUES (?, ?, ?, ?)",
                arguments: [name, email, emailKey, now])
            return User(
                id: db.lastInsertedRowID, name: name, email: email, registeredAt: Date(timeIntervalSince1970: now))
        }
    }

    /// The user with this id, if any.
    public func user(id: Int64) async throws -> User? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [id]).map(Self.user(row:))
        }
    }

    /// The user registered with this email address (compared without regard to case), if any.
    public func user(email: String) async throws -> User? {
        let key = email.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        return try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE email_key = ?", arguments: [key]).map(Self.user(row:))
        }
    }

    /// Every user, in registration order.
    public func users() async throws -> [User] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM users ORDER BY id").map(Self.user(row:))
        }
    }

    /// What is wrong with an email address, or `nil` if it is acceptable.
    static func emailProblem(_ email: String) -> String? {
        if email.isEmpty { return "it is empty" }
        if email.count > 254 { return "it is longer than 254 characters" }
        if email.unicodeScalars.contains(where: { CharacterSet.whitespacesAndNewlines.contains($0) }) {
            return "it contains a space"
        }
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            return parts.count < 2 ? "it has no '@'" : "it has more than one '@'"
        }
        let (local, domain) = (parts[0], parts[1])
        if local.isEmpty { return "nothing comes before the '@'" }
        if domain.isEmpty { return "nothing comes after the '@'" }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        if labels.count < 2 { return "its domain '\(domain)' has no dot" }
        if labels.contains(where: \.isEmpty) { return "its domain '\(domain)' has an empty part" }
        return nil
    }

    static func user(row: Row) -> User {
        User(
            id: row["id"], name: row["name"], email: row["email"],
            registeredAt: Date(timeIntervalSince1970: row["registered_at"]))
    }
}

/// A registered user.
public struct User: Codable, Hashable, Sendable {
    /// The user id, assigned by the user service.
    public var id: Int64
    /// The name, trimmed.
    public var name: String
    /// The email address as given (trimmed).
    public var email: String
    /// When the user registered.
    public var registeredAt: Date

    /// Creates a user value.
    public init(id: Int64, name: String, email: String, registeredAt: Date) {
        self.id = id
        self.name = name
        self.email = email
        self.registeredAt = registeredAt
    }
}
