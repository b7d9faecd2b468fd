import Foundation
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Testing

// A user's own saga, as the "Testing your sagas" article assumes it: fakes of two services
// (idempotent by key) and the place-order saga over them.
actor Products {
    var stock = ["tea": 10]
    var applied: Set<String> = []
    func deduct(_ product: String, _ quantity: Int, key: String) {
        guard applied.insert(key).inserted else { return }
        stock[product, default: 0] -= quantity
    }
    func refund(_ product: String, _ quantity: Int, key: String) {
        guard applied.remove(key) != nil else { return }
        stock[product, default: 0] += quantity
    }
}

actor Orders {
    var sold: [String: Int] = [:]
    var keys: Set<String> = []
    func create(_ order: PlaceOrderInput, key: String) {
        guard keys.insert(key).inserted else { return }
        sold[order.product, default: 0] += order.quantity
    }
}

struct PlaceOrderInput: Codable, Sendable { var product: String; var quantity: Int }

func placeOrder(_ products: Products, _ orders: Orders) -> SagaDefinition<PlaceOrderInput, NoOutput> {
    SagaDefinition("place-order") {
        SagaStep<PlaceOrderInput, NoOutput>.compensatable("deduct-stock") { context in
            await products.deduct(context.input.product, context.input.quantity, key: context.idempotencyKey)
            return NoOutput()
        } compensation: { _, context in
            await products.refund(context.input.product, context.input.quantity, key: context.idempotencyKey)
        }
        SagaStep<PlaceOrderInput, NoOutput>.pivot("create-order") { context in
            await orders.create(context.input, key: context.idempotencyKey)
            return NoOutput()
        }
    }
}

@Suite("Testing your sagas (article)", .timeLimit(.minutes(1)))
struct TestingYourSagasArticleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    // ARTICLE-BEGIN
    @Test func placeOrderSurvivesACrashAtEveryDurablePoint() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let explorer = CrashExplorer<PlaceOrderInput, NoOutput>(
            makeStore: { try SQLiteSagaStore(path: directory.appendingPathComponent("\($0).sqlite").path) },
            closeStore: { try await ($0 as? SQLiteSagaStore)?.close() }
        ) {
            let products = Products()  // a fresh world for every crash point
            let orders = Orders()
            let faults = ParticipantFaults()
            faults.inject(.loseReply(call: 1), into: "deduct-stock")  // applied, but the reply is lost
            let stockAddsUp = SagaInvariant("stock + sold = 10") { _ in
                let left = await products.stock["tea"] ?? 0
                let sold = await orders.sold["tea"] ?? 0
                return left + sold == 10 ? nil : "stock \(left) + sold \(sold)"
            }
            return SagaScenario(
                definition: placeOrder(products, orders), input: PlaceOrderInput(product: "tea", quantity: 2),
                invariants: [stockAddsUp], faults: faults)
        }
        let report = try await explorer.explore()
        #expect(report.violations.isEmpty, "\(report)")
        #expect(report.explored > 10)
    }
    // ARTICLE-END

    @Test func theArticleShowsThisCode() throws {
        let article = try String(
            contentsOf: Self.root.appendingPathComponent(
                "Sources/SagaKitTesting/SagaKitTesting.docc/TestingYourSagas.md"),
            encoding: .utf8)
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        func region(_ text: String, _ begin: String, _ end: String, dedent: Bool) -> String? {
            guard let start = text.range(of: begin),
                let stop = text.range(of: end, range: start.upperBound..<text.endIndex)
            else { return nil }
            return text[start.upperBound..<stop.lowerBound].split(separator: "\n", omittingEmptySubsequences: false)
                .map { dedent && $0.hasPrefix("    ") ? String($0.dropFirst(4)) : String($0) }
                .joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let compiled = try #require(region(source, "// ARTICLE-BEGIN", "    // ARTICLE-END", dedent: true))
        let shown = try #require(region(article, "<!-- compiled-test -->\n```swift", "```", dedent: false))
        #expect(shown == compiled)
        #expect(compiled.split(separator: "\n").count < 30, "the article promises a test in under 30 lines")
    }
}
