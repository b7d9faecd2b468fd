import Foundation
import Testing

@testable import SagaKit

/// The edges of the public API: settings validated whenever they are set, errors compared by code.
@Suite("API edges", .tags(.engine), .timeLimit(.minutes(1)))
struct APIEdgeTests {
    @Test func aConcurrencyLimitOfZeroIsRefusedWhenItIsSet() async {
        await #expect(processExitsWith: .failure) {
            var configuration = SagaEngine.Configuration()
            configuration.maxConcurrentSagas = 0
            _ = configuration
        }
    }

    @Test func aConcurrencyLimitOfZeroIsRefusedAtCreation() async {
        await #expect(processExitsWith: .failure) {
            _ = SagaEngine.Configuration(maxConcurrentSagas: 0)
        }
    }

    @Test func aConcurrencyLimitOfOneIsKept() {
        var configuration = SagaEngine.Configuration(maxConcurrentSagas: 1)
        #expect(configuration.maxConcurrentSagas == 1)
        configuration.maxConcurrentSagas = 7
        #expect(configuration.maxConcurrentSagas == 7)
    }

    @Test func errorsCompareEqualByCode() {
        let first = SagaError(.unknownSaga, sagaID: "a", message: "no saga 'a'")
        let second = SagaError(.unknownSaga, sagaID: "b", message: "no saga 'b'")
        #expect(first == second)
        #expect(Set([first, second]).count == 1)
        #expect(first != SagaError(.shuttingDown, sagaID: "a", message: "no saga 'a'"))

        #expect(SagaStoreError(.inUse, path: "/a", message: "x") == SagaStoreError(.inUse, path: "/b", message: "y"))
        #expect(SagaStoreError(.inUse, message: "x") != SagaStoreError(.locked, message: "x"))

        let definition = SagaDefinitionError(.emptySaga, saga: "a", step: nil, message: "x")
        #expect(definition == SagaDefinitionError(.emptySaga, saga: "b", step: "s", message: "y"))
        #expect(definition != SagaDefinitionError(.multiplePivots, saga: "a", step: nil, message: "x"))
    }

    @Test func durationsConvertToSecondsOnce() {
        #expect(Duration.milliseconds(1500).seconds == 1.5)
        #expect(Duration.zero.seconds == 0)
        #expect(abs(Duration.nanoseconds(1).seconds - 1e-9) < 1e-18)
    }
}
