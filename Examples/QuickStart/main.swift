// The README's quick-start saga, compiled and run by `swift run saga-quickstart`.
// The block between the README markers is copied verbatim into README.md; a test keeps them equal.
import Foundation
import Logging
import SagaKit
import SagaKitSQLite

/// A stand-in for the product service: stock per product, deductions applied once per key.
actor ProductService {
    var stock = ["tea": 10]
    var deductions: [String: (product: String, quantity: Int)] = [:]

    func deduct(_ product: String, _ quantity: Int, key: String) throws {
        guard deductions[key] == nil else { return }  // already applied: idempotent
        guard let left = stock[product], left >= quantity else {
            throw NonRetryableError("not enough \(product) in stock", type: "OutOfStock")
        }
        stock[product] = left - quantity
        deductions[key] = (product, quantity)
    }

    func refund(key: String) {
        guard let deduction = deductions.removeValue(forKey: key) else { return }  // nothing to undo
        stock[deduction.product, default: 0] += deduction.quantity
    }
}

/// A stand-in for the order service, failing on demand.
actor OrderService {
    var orders: [String: Int] = [:]
    var failNextWrite = false

    func create(_ order: PlaceOrder, key: String) throws -> OrderID {
        if let id = orders[key] { return OrderID(id: id) }
        if failNextWrite {
            failNextWrite = false
            throw NonRetryableError("the order database refused the write", type: "WriteFailed")
        }
        orders[key] = orders.count + 1
        return OrderID(id: orders.count)
    }

    func failNext() { failNextWrite = true }
}

let products = ProductService()
let orders = OrderService()

// README-BEGIN
struct PlaceOrder: Codable, Sendable { var product: String; var quantity: Int }
struct OrderID: Codable, Sendable { var id: Int }

let deductStock = SagaStep<PlaceOrder, NoOutput>.compensatable("deduct-stock") { context in
    try await products.deduct(context.input.product, context.input.quantity, key: context.idempotencyKey)
    return NoOutput()
} compensation: { _, context in
    await products.refund(key: context.idempotencyKey)  // same key: refunds that deduction, once
}

let createOrder = SagaStep<PlaceOrder, OrderID>.pivot("create-order") { context in
    try await orders.create(context.input, key: context.idempotencyKey)
}

let placeOrder = SagaDefinition<PlaceOrder, OrderID>("place-order", returning: createOrder) {
    deductStock  // compensatable: refunded if the order cannot be written
    createOrder  // pivot: once it succeeds, the order stands
}
// README-END

let directory = FileManager.default.temporaryDirectory.appendingPathComponent("saga-quickstart-\(UUID().uuidString)")
try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
let logger = Logger(label: "quickstart")
let engine = SagaEngine(
    store: try SQLiteSagaStore(path: directory.appendingPathComponent("sagas.sqlite").path), logger: logger)
try engine.register(placeOrder)

try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await engine.run() }
    let order = PlaceOrder(product: "tea", quantity: 2)
    let first = try await engine.execute(placeOrder, id: "order-1", input: order)
    print("order-1:", first.output.map { "placed as order \($0.id)" } ?? "\(first)")

    await orders.failNext()
    let second = try await engine.execute(placeOrder, id: "order-2", input: order)
    if case .compensated(let failure) = second {
        print("order-2: compensated because \(failure.cause.message)")
    }
    print("stock of tea:", await products.stock["tea"] ?? 0, "(10 − 2 for order-1; order-2's deduction refunded)")
    group.cancelAll()
}
print("saga log:", directory.path)
