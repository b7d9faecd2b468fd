// The "Testing your sagas" article (Sources/SagaKitTesting/SagaKitTesting.docc/TestingYourSagas.md)
// shows every region between `// ARTICLE-BEGIN <name>` and `// ARTICLE-END <name>` below, verbatim,
// in the Swift block after its `<!-- compiled: <name> -->` marker; `theArticleShowsThisCode` keeps
// them identical. Change both together.

// ARTICLE-BEGIN participants
import Foundation
import PropertyBased
import SagaKit
import SagaKitSQLite
import SagaKitTesting
import Synchronization
import Testing

/// A fake stock service: applies each idempotency key at most once, and refunds by the same key.
actor Products {
    var stock = ["tea": 10]
    var applied: Set<String> = []
    func deduct(_ product: String, _ quantity: Int, key: String) {
        guard applied.insert(key).inserted else { return }
        stock[product, default: 0] -= quantity
    }
    func refund(_ product: String, _ quantity: Int, key: String) {
        guard applied.remove(key) != nil else { return }  // never deducted: nothing to refund
        stock[product, default: 0] += quantity
    }
}

/// A fake order service: writes each order once per idempotency key.
actor Orders {
    var sold: [String: Int] = [:]
    var keys: Set<String> = []
    func create(_ order: PlaceOrderInput, key: String) {
        guard keys.insert(key).inserted else { return }
        sold[order.product, default: 0] += order.quantity
    }
}
// ARTICLE-END participants

// ARTICLE-BEGIN definition
struct PlaceOrderInput: Codable, Sendable { var product: String; var quantity: Int }

/// The saga under test, built over the participants it is given.
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
// ARTICLE-END definition

@Suite("Testing your sagas (article)", .timeLimit(.minutes(3)))
struct TestingYourSagasArticleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    // ARTICLE-BEGIN crash-test
    @Test func placeOrderSurvivesACrashAtEveryDurablePoint() async throws {
        try await withTemporaryDirectory(prefix: "PlaceOrderTests") { directory in
            let explorer = CrashExplorer<PlaceOrderInput, NoOutput>(
                makeStore: { try SQLiteSagaStore(path: directory.path(of: "\($0).sqlite")) },
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
    }
    // ARTICLE-END crash-test

    // ARTICLE-BEGIN property-test
    @Test func placeOrderKeepsItsInvariantsUnderGeneratedFaults() async throws {
        let test = try await SagaPropertyTest {
            let products = Products()  // a fresh world for every plan
            let orders = Orders()
            let stockAddsUp = SagaWorldInvariant<PlaceOrderInput, NoOutput>("stock + sold + held = 10") { sagas in
                let (left, sold) = (await products.stock["tea"] ?? 0, await orders.sold["tea"] ?? 0)
                let (deducted, ordered) = (await products.applied, await orders.keys)
                // Units deducted for an order never written: only a saga that needs attention may hold them.
                let holding = sagas.filter {
                    deducted.contains("\($0.sagaID)/deduct-stock") && !ordered.contains("\($0.sagaID)/create-order")
                }
                if let stuck = holding.first(where: { $0.status != .needsAttention }) {
                    return "\(stuck.sagaID) holds stock"
                }
                let held = holding.reduce(0) { $0 + $1.input.quantity }
                return left + sold + held == 10 ? nil : "stock \(left) + sold \(sold) + held \(held)"
            }
            return SagaWorld(definition: placeOrder(products, orders), invariants: [stockAddsUp])
        }
        // Up to three concurrent orders, each with generated faults, and perhaps a crash.
        let orders = Gen.int(in: 1...4).map { PlaceOrderInput(product: "tea", quantity: $0) }
        await propertyCheck(count: test.count, input: test.plans(inputs: orders)) { plan in
            let violations = try await test.check(plan)
            #expect(violations.isEmpty, "\(plan)\n\(violations)")
        }
    }
    // ARTICLE-END property-test

    // ARTICLE-BEGIN fault-names
    @Test func faultsNameStepsOfTheSaga() throws {
        let faults = ParticipantFaults()
        faults.inject(.loseReply(call: 1), into: "deduct-stock")
        faults.inject(.fail(call: 1), into: "create-ordr")  // a typo: the saga has no such step
        let error = #expect(throws: ParticipantFaultsError.self) {
            try faults.verify(against: placeOrder(Products(), Orders()))
        }
        #expect(error?.unknownSteps == ["create-ordr"])
        #expect(error?.knownSteps == ["deduct-stock", "create-order"])
    }
    // ARTICLE-END fault-names

    // ARTICLE-BEGIN idempotence-test
    @Test func placeOrderIsIdempotent() async throws {
        let world = Mutex<(Products, Orders)?>(nil)  // the world the latest scenario built
        let check = IdempotenceCheck(
            snapshot: {
                let (products, orders) = world.withLock { $0! }
                return [await products.stock["tea"] ?? 0, await orders.sold["tea"] ?? 0]
            },
            sagaID: "order-42"
        ) {
            let products = Products()
            let orders = Orders()
            world.withLock { $0 = (products, orders) }
            return SagaScenario(
                definition: placeOrder(products, orders), input: PlaceOrderInput(product: "tea", quantity: 2))
        }
        let mismatch = try await check.run()
        #expect(mismatch == nil, "\(String(describing: mismatch))")
        #expect(await world.withLock { $0! }.1.keys == ["order-42/create-order"])
    }
    // ARTICLE-END idempotence-test

    // ARTICLE-BEGIN saga-id
    @Test func placeOrderWritesOneOrderUnderTheCallersID() async throws {
        try await withTemporaryDirectory(prefix: "PlaceOrderTests") { directory in
            let explorer = CrashExplorer<PlaceOrderInput, NoOutput>(
                makeStore: { try SQLiteSagaStore(path: directory.path(of: "\($0).sqlite")) },
                closeStore: { try await ($0 as? SQLiteSagaStore)?.close() },
                sagaID: "order-42"  // the id your request handler gives this order's saga
            ) {
                let orders = Orders()
                let oneOrder = SagaInvariant("a completed saga wrote order-42 once") { report in
                    let keys = await orders.keys
                    let expected: Set<String> = report.summary?.status == .completed ? ["order-42/create-order"] : []
                    return keys == expected ? nil : "order keys \(keys.sorted())"
                }
                return SagaScenario(
                    definition: placeOrder(Products(), orders), input: PlaceOrderInput(product: "tea", quantity: 2),
                    invariants: [oneOrder])
            }
            let report = try await explorer.explore()
            #expect(report.violations.isEmpty, "\(report)")
        }
    }
    // ARTICLE-END saga-id

    /// The article's regions, by name, dedented by their marker's indentation.
    static func sourceRegions(_ source: String) -> [String: String] {
        var regions: [String: String] = [:]
        var open: (name: String, indent: String, lines: [String])?
        for line in source.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("// ARTICLE-BEGIN ") {
                open = (String(trimmed.dropFirst("// ARTICLE-BEGIN ".count)), String(line.prefix { $0 == " " }), [])
            } else if trimmed.hasPrefix("// ARTICLE-END "), let region = open {
                #expect(trimmed == "// ARTICLE-END \(region.name)", "region '\(region.name)' ends with \(trimmed)")
                regions[region.name] = region.lines.joined(separator: "\n").trimmingCharacters(in: .newlines)
                open = nil
            } else if open != nil {
                open!.lines.append(line.hasPrefix(open!.indent) ? String(line.dropFirst(open!.indent.count)) : line)
            }
        }
        #expect(open == nil, "region '\(open?.name ?? "")' is not closed")
        return regions
    }

    /// The article's Swift blocks, by the name of the `<!-- compiled: name -->` marker before each;
    /// a block without a marker is recorded under "".
    static func articleBlocks(_ article: String) -> [(name: String, code: String)] {
        var blocks: [(name: String, code: String)] = []
        var marker = ""
        var code: [String]?
        for line in article.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if var lines = code {
                if line == "```" {
                    blocks.append((marker, lines.joined(separator: "\n")))
                    code = nil
                    marker = ""
                } else {
                    lines.append(line)
                    code = lines
                }
            } else if line == "```swift" {
                code = []
            } else if line.hasPrefix("<!-- compiled: "), line.hasSuffix(" -->") {
                marker = String(line.dropFirst("<!-- compiled: ".count).dropLast(" -->".count))
            } else if !line.trimmingCharacters(in: .whitespaces).isEmpty {
                marker = ""
            }
        }
        return blocks
    }

    @Test func theArticleShowsThisCode() throws {
        let article = try String(
            contentsOf: Self.root.appendingPathComponent(
                "Sources/SagaKitTesting/SagaKitTesting.docc/TestingYourSagas.md"),
            encoding: .utf8)
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let compiled = Self.sourceRegions(source)
        let shown = Self.articleBlocks(article)
        let names = [
            "participants", "definition", "crash-test", "property-test", "fault-names", "idempotence-test", "saga-id",
        ]
        #expect(Set(compiled.keys) == Set(names))
        #expect(shown.map(\.name) == names, "every Swift block in the article is compiled here, once, in this order")
        for block in shown {
            #expect(block.code == compiled[block.name], "the article's '\(block.name)' block is not the compiled one")
        }
        let test = try #require(compiled["crash-test"])
        #expect(test.split(separator: "\n").count < 30, "the article promises a test in under 30 lines")
    }
}
