import Testing

@testable import SagaKit

/// The engine's one waiter type: set once, awaited by many, and a cancelled waiter leaves alone.
@Suite("One-shot waiter", .tags(.engine), .timeLimit(.minutes(1)))
struct OneShotTests {
    @Test func onlyTheFirstResultCounts() async throws {
        let shot = OneShot<Int>()
        #expect(!shot.isSet)
        #expect(shot.set(.success(1)))
        #expect(!shot.set(.success(2)))
        #expect(try await shot.value() == 1, "a waiter after the result gets it at once")
    }

    @Test func everyWaiterGetsTheResult() async throws {
        let shot = OneShot<Int>()
        let waiters = (0..<3).map { _ in Task { try await shot.value() } }
        await eventually("three callers wait") { shot.waiterCount == 3 }
        shot.set(.success(7))
        for waiter in waiters { #expect(try await waiter.value == 7) }
        #expect(shot.waiterCount == 0)
    }

    @Test func aFailureReachesEveryWaiter() async throws {
        struct Broken: Error {}
        let shot = OneShot<Void>()
        let waiter = Task { try await shot.value() }
        await eventually("the caller waits") { shot.waiterCount == 1 }
        shot.set(.failure(Broken()))
        await #expect(throws: Broken.self) { try await waiter.value }
    }

    @Test func aCancelledWaiterStopsWaitingAndTheOthersKeepWaiting() async throws {
        let shot = OneShot<Int>()
        let cancelled = Task { try await shot.value() }
        let patient = Task { try await shot.value() }
        await eventually("both callers wait") { shot.waiterCount == 2 }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(shot.waiterCount == 1)
        shot.set(.success(5))
        #expect(try await patient.value == 5)
    }
}
