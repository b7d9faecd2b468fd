import Foundation
import GRDB

/// The yardstick: how many single-row durable commits per second the disk takes right now.
///
/// A tiny table in WAL mode with `synchronous = FULL`, one `INSERT` per `BEGIN IMMEDIATE … COMMIT`,
/// in the same directory as the benchmark's databases. Every throughput is reported as a ratio to
/// the rate measured just before it, because the disk's speed drifts from minute to minute.
struct RawCommitProbe {
    let queue: DatabaseQueue

    init(directory: String) throws {
        var configuration = Configuration()
        configuration.journalMode = .wal
        let path = (directory as NSString).appendingPathComponent("raw-commit.sqlite")
        queue = try DatabaseQueue(path: path, configuration: configuration)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
        }
    }

    /// Commits one row per transaction for about `duration` (at least `minimum` commits); returns
    /// commits per second.
    func measure(for duration: Duration, minimum: Int = 20) throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        var commits = 0
        try queue.writeWithoutTransaction { db in
            let insert = try db.makeStatement(sql: "INSERT INTO raw (value) VALUES (?)")
            while commits < minimum || clock.now - start < duration {
                try db.execute(sql: "BEGIN IMMEDIATE")
                try insert.execute(arguments: [commits])
                try db.execute(sql: "COMMIT")
                commits += 1
            }
            try db.execute(sql: "DELETE FROM raw")
        }
        return Double(commits) / (clock.now - start).seconds
    }
}

extension Duration {
    var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }

    var milliseconds: Double { seconds * 1000 }
}
