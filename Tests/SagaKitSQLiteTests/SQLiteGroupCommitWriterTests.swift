import Foundation
import GRDB
import SagaKitSQLite
import SagaKitTesting
import Testing

@Suite(.tags(.groupCommit), .timeLimit(.minutes(2))) struct SQLiteGroupCommitWriterTests {
    struct Refused: Error {}

    func withWriter<T>(_ body: (SQLiteGroupCommitWriter, DatabasePool, String) async throws -> T) async throws -> T {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "service.sqlite")
            var configuration = Configuration()
            configuration.journalMode = .wal
            let pool = try DatabasePool(path: path, configuration: configuration)
            try await pool.write { db in
                try db.execute(sql: "CREATE TABLE items (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)")
            }
            let result = try await body(SQLiteGroupCommitWriter(pool), pool, path)
            try pool.close()
            return result
        }
    }

    @Test func returnsEachWritesResultAfterItCommits() async throws {
        try await withWriter { writer, pool, _ in
            let id = try await writer.write { db in
                try db.execute(sql: "INSERT INTO items (key, value) VALUES ('a', 1)")
                return db.lastInsertedRowID
            }
            #expect(id == 1)
            #expect(try await pool.read { try Int.fetchOne($0, sql: "SELECT value FROM items WHERE key = 'a'") } == 1)
            #expect(writer.committedTransactionCount == 1)
        }
    }

    @Test func concurrentWritesShareTransactionsAndAllCommit() async throws {
        try await withWriter { writer, pool, _ in
            let count = 500
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    group.addTask {
                        try await writer.write { db in
                            try db.execute(
                                sql: "INSERT INTO items (key, value) VALUES (?, ?)", arguments: ["k\(index)", index])
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM items") } == count)
            #expect(writer.committedTransactionCount < count)
        }
    }

    @Test func aFailingWriteRollsBackAloneAndOthersInItsBatchCommit() async throws {
        try await withWriter { writer, pool, _ in
            let results = await withTaskGroup(of: (Int, Bool).self) { group in
                for index in 0..<200 {
                    group.addTask {
                        do {
                            try await writer.write { db in
                                try db.execute(
                                    sql: "INSERT INTO items (key, value) VALUES (?, ?)",
                                    arguments: ["k\(index)", index])
                                if index % 3 == 0 { throw Refused() }
                            }
                            return (index, true)
                        } catch {
                            return (index, false)
                        }
                    }
                }
                var results: [Int: Bool] = [:]
                for await (index, succeeded) in group { results[index] = succeeded }
                return results
            }
            for (index, succeeded) in results { #expect(succeeded == (index % 3 != 0)) }
            let keys = try await pool.read { try String.fetchSet($0, sql: "SELECT key FROM items") }
            #expect(keys == Set((0..<200).filter { $0 % 3 != 0 }.map { "k\($0)" }))
        }
    }

    @Test func aConstraintViolationFailsOnlyItsOwnWrite() async throws {
        try await withWriter { writer, pool, _ in
            try await writer.write { db in try db.execute(sql: "INSERT INTO items (key, value) VALUES ('dup', 1)") }
            async let duplicate: Void = writer.write { db in
                try db.execute(sql: "INSERT INTO items (key, value) VALUES ('dup', 2)")
            }
            async let other: Void = writer.write { db in
                try db.execute(sql: "INSERT INTO items (key, value) VALUES ('other', 3)")
            }
            let duplicateResult: Result<Void, any Error>
            do {
                try await duplicate
                duplicateResult = .success(())
            } catch {
                duplicateResult = .failure(error)
            }
            #expect(throws: DatabaseError.self) { try duplicateResult.get() }
            try await other
            #expect(try await pool.read { try Int.fetchOne($0, sql: "SELECT value FROM items WHERE key = 'dup'") } == 1)
            #expect(
                try await pool.read { try Int.fetchOne($0, sql: "SELECT value FROM items WHERE key = 'other'") } == 3)
        }
    }

    @Test func committedWritesAreThereAfterReopening() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path(of: "service.sqlite")
            do {
                let pool = try DatabasePool(path: path)
                try await pool.write { db in
                    try db.execute(sql: "CREATE TABLE items (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)")
                }
                let writer = SQLiteGroupCommitWriter(pool)
                for index in 0..<10 {
                    try await writer.write { db in
                        try db.execute(
                            sql: "INSERT INTO items (key, value) VALUES (?, ?)", arguments: ["k\(index)", index])
                    }
                }
                try pool.close()
            }
            let reopened = try DatabaseQueue(path: path)
            #expect(try await reopened.read { try Int.fetchOne($0, sql: "SELECT SUM(value) FROM items") } == 45)
            try reopened.close()
        }
    }
}
