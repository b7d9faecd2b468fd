import Foundation
import ShopHarness
import Synchronization

/// A closed-loop load: `concurrency` callers, each placing one order after another, until `limit`
/// orders were placed or the deadline passed.
struct LoadDriver: Sendable {
    /// One placed order: its HTTP status and how long the answer took.
    struct Sample: Sendable {
        var status: UInt
        var latency: Duration
    }

    /// What a load measured.
    struct Result: Sendable {
        var samples: [Sample]
        var elapsed: Duration

        var ordersPerSecond: Double { Double(samples.count) / elapsed.seconds }

        /// The latency below which `fraction` of the answers came (exact: every sample is kept).
        func percentile(_ fraction: Double) -> Duration {
            let sorted = samples.map(\.latency).sorted()
            guard !sorted.isEmpty else { return .zero }
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
        }

        /// How many answers had each status, in order of status.
        var statusCounts: [(status: UInt, count: Int)] {
            Dictionary(grouping: samples, by: \.status).map { ($0.key, $0.value.count) }.sorted {
                $0.status < $1.status
            }
        }
    }

    let shop: Shop
    let concurrency: Int
    /// Users 1…`users` order in turn (they must exist).
    let users: Int
    /// Each order's `Idempotency-Key` is `prefix-N`, so that two loads never share a saga.
    let prefix: String

    /// Places orders of one unit of product 101 until `limit` were placed or `deadline` passed.
    func run(limit: Int = .max, until deadline: ContinuousClock.Instant? = nil) async throws -> Result {
        let next = Counter()
        let started = ContinuousClock.now
        let samples = try await withThrowingTaskGroup(of: [Sample].self) { group in
            for _ in 0..<concurrency {
                group.addTask { [shop, users, prefix] in
                    var samples: [Sample] = []
                    while deadline.map({ ContinuousClock.now < $0 }) ?? true, let number = next.take(below: limit) {
                        let began = ContinuousClock.now
                        let answer = try await shop.order(1 + number % users, 101, 1, key: "\(prefix)-\(number)")
                        samples.append(Sample(status: answer.status, latency: ContinuousClock.now - began))
                    }
                    return samples
                }
            }
            var all: [Sample] = []
            for try await part in group { all += part }
            return all
        }
        return Result(samples: samples, elapsed: ContinuousClock.now - started)
    }
}

/// Hands out 0, 1, 2… to concurrent callers.
final class Counter: Sendable {
    private let value = Mutex(0)

    /// The next number, or `nil` once `limit` numbers were handed out.
    func take(below limit: Int) -> Int? {
        value.withLock { value in
            guard value < limit else { return nil }
            defer { value += 1 }
            return value
        }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// The duration in milliseconds, as a `Double`.
    var milliseconds: Double { seconds * 1000 }
}
