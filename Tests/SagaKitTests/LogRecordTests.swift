import Foundation
import SagaKit
import SagaKitTesting
import Testing

@Suite("Log records", .tags(.engine), .timeLimit(.minutes(1)))
struct LogRecordTests {
    struct OutOfStock: SagaRetryClassifying, CustomStringConvertible {
        var isRetryable: Bool { false }
        var sagaErrorType: String { "shop.OutOfStock" }
        var description: String { "no tea left" }
    }

    @Test func yourErrorsAreRecordedUnderTheirOwnStableNames() {
        let recorded = RecordedError(OutOfStock())
        #expect(recorded.type == "shop.OutOfStock")
        #expect(recorded.message == "no tea left")
        #expect(!recorded.isRetryable)
        #expect(RecordedError(NonRetryableError("x", type: "Refused")).type == "Refused")
    }

    @Test func historyPayloadsDecodeAsTheirTypesAndRecordsNameTheirKeys() async throws {
        let participant = Participant()
        let store = InMemorySagaStore()
        let engine = SagaEngine(store: store, configuration: testConfiguration(), logger: quietLogger)
        _ = try await withRunningSagaEngine(engine) {
            try await $0.execute(threeStepSaga(participant), id: "h-1", input: Order(id: 7))
        }
        let history = try await engine.history(of: "h-1")
        #expect(try history.first?.decodePayload(as: Order.self) == Order(id: 7))
        let charged = try #require(history.first { $0.kind == .stepSucceeded && $0.step == "charge" })
        #expect(try charged.decodePayload(as: Receipt.self) == Receipt(step: "charge", order: 7))
        #expect(charged.idempotencyKey == "h-1/charge")
        let intent = try #require(history.first { $0.kind == .stepStarted })
        #expect(throws: SagaError.self) { try intent.decodePayload(as: Receipt.self) }
    }
}
