import Synchronization

/// Injected failures of the order service's write, for demonstrations and tests.
///
/// Two ways to make writes fail, which add up:
/// - ``failNextWrites(_:)``: the next *n* order writes fail, whatever their key;
/// - ``failureRate``: each order fails with this probability, decided by a seeded hash of its
///   idempotency key. The decision depends on the key and the seed only, not on the order in which
///   concurrent orders arrive, so a load run with the same seed fails the same orders every time, and
///   a retry of a failed order fails again (as a deterministic refusal would).
///
/// An injected failure is a `NonRetryableError` of type ``ShopFailure/orderWriteFailed``, thrown
/// inside the write transaction, so nothing is written.
///
/// ```swift
/// let faults = WriteFaults(failureRate: 0.1, seed: 42)
/// let orders = try OrderService(path: "orders.sqlite", configuration: .init(faults: faults))
/// faults.failNextWrites(1)   // the next order fails whatever its key
/// ```
public final class WriteFaults: Sendable {
    private struct State {
        var pending = 0
        var rate: Double
        var injected = 0
    }

    /// The seed of the per-key decision.
    public let seed: UInt64
    private let state: Mutex<State>

    /// Creates a fault policy.
    ///
    /// - Parameters:
    ///   - failureRate: The probability, from 0 to 1, that an order write fails. Default 0.
    ///   - seed: The seed of the per-key decision. Default 0.
    public init(failureRate: Double = 0, seed: UInt64 = 0) {
        self.seed = seed
        self.state = Mutex(State(rate: Self.clamp(failureRate)))
    }

    /// The probability, from 0 to 1, that an order write fails (values outside are clamped).
    public var failureRate: Double {
        get { state.withLock { $0.rate } }
        set { state.withLock { $0.rate = Self.clamp(newValue) } }
    }

    /// Makes the next `count` order writes fail.
    public func failNextWrites(_ count: Int = 1) {
        state.withLock { $0.pending += max(0, count) }
    }

    /// How many writes these faults made fail so far.
    public var injectedCount: Int { state.withLock { $0.injected } }

    /// Whether the write of the order with this key fails; counts it if so.
    package func shouldFail(key: String) -> Bool {
        let draw = Self.unitInterval(seed: seed, key: key)
        return state.withLock { state in
            if state.pending > 0 {
                state.pending -= 1
                state.injected += 1
                return true
            }
            if draw < state.rate {
                state.injected += 1
                return true
            }
            return false
        }
    }

    /// A uniform value in `0..<1` from the seed and the key (FNV-1a, then a SplitMix64 finalizer).
    static func unitInterval(seed: UInt64, key: String) -> Double {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return Double(SeededGenerator.mix(hash) >> 11) / Double(UInt64(1) << 53)
    }

    private static func clamp(_ rate: Double) -> Double {
        rate.isNaN ? 0 : min(1, max(0, rate))
    }
}

/// SplitMix64: a small, fast, seeded random number generator, so runs repeat with the same seed.
///
/// ```swift
/// var generator = SeededGenerator(seed: 42)
/// let quantity = Int.random(in: 1...3, using: &generator)
/// ```
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator; equal seeds give equal sequences.
    public init(seed: UInt64) {
        self.state = seed
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// The SplitMix64 finalizer: mixes the bits of `value`.
    package static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
