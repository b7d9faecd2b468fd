import Foundation
import ShopDemo
import ShopServices

/// The human-readable rendering of the demo's results.
enum TextReport {
    static func heading(_ title: String) {
        Console.out()
        let rule = String(repeating: "━", count: max(3, 96 - title.count - 4))
        Console.out("━━ \(title) \(rule)")
    }

    static func directory(_ directory: DataDirectory) {
        Console.out("SagaKit shop demo")
        Console.out("data directory: \(directory.path)\(directory.isNew ? " (new)" : " (existing: resuming it)")")
        Console.out(
            "  \(ShopFiles.products), \(ShopFiles.orders), \(ShopFiles.users): one SQLite file per service (WAL, synchronous=FULL)"
        )
        Console.out("  \(ShopFiles.sagas): the saga log (SQLiteSagaStore)")
    }

    static func resumed(_ report: ResumeReport, isNew: Bool) {
        if report.resumed == 0 {
            if !isNew { Console.out("no unfinished sagas in the log to resume") }
            return
        }
        Console.out(
            "resumed \(report.resumed) unfinished saga\(report.resumed == 1 ? "" : "s") from an earlier run: "
                + "\(report.completed) completed, \(report.compensated) compensated"
                + (report.needsAttention > 0 ? ", \(report.needsAttention) need attention" : "")
                + (report.failed + report.stranded > 0
                    ? ", \(report.failed + report.stranded) could not be resumed" : ""))
    }

    static func scenario(_ report: ScenarioReport) {
        heading("\(report.number). \(report.title)")
        Console.out(
            "\(report.customer) (user \(report.order.user)) orders \(report.order.quantity) × \(report.order.product) — saga \(report.sagaID)"
        )
        for note in report.notes { Console.out("  · \(note)") }
        Console.out()
        timeline(report.timeline)
        Console.out()
        var result = "result: \(report.status)"
        if let orderID = report.orderID { result += " — order #\(orderID)" }
        if let cause = report.cause { result += " — cause: \(cause)" }
        Console.out(result)
        Console.out(
            "from the databases: stock of \(report.order.product) \(report.stockBefore) → \(report.stockAfter); "
                + "orders with key \(report.sagaID)/create-order: \(report.ordersWithKey); "
                + "deduction key \(report.sagaID)/deduct-stock: \(report.deduction ?? "never seen")")
    }

    static func timeline(_ timeline: Timeline) {
        Console.out(
            "    " + pad("time", 11, right: true) + "  " + pad("event", 16) + pad("step", 14) + pad("try", 4) + "detail"
        )
        for entry in timeline.entries {
            var detail: [String] = []
            if let key = entry.idempotencyKey { detail.append("key \(key)") }
            if let error = entry.error { detail.append(error) }
            if !entry.detail.isEmpty { detail.append(entry.detail) }
            if let duration = entry.durationMilliseconds { detail.append("took \(milliseconds(duration))") }
            Console.out(
                "    " + pad("+" + milliseconds(entry.offsetMilliseconds), 11, right: true) + "  "
                    + pad(entry.event, 16) + pad(entry.step ?? "", 14) + pad(entry.attempt.map(String.init) ?? "", 4)
                    + detail.joined(separator: "; "))
        }
    }

    static func loadStarting(_ options: LoadOptions) {
        let percent = String(format: "%g", options.failureRate * 100)
        heading("4. Load: \(options.orders) orders, \(options.concurrency) at a time, \(percent)% of order writes fail")
    }

    static func load(_ report: LoadReport) {
        Console.out(
            "orders:          \(report.orders) in \(String(format: "%.2f", report.seconds)) s — "
                + "\(String(format: "%.0f", report.sagasPerSecond)) sagas/s (concurrency \(report.concurrency), seed \(report.seed))"
        )
        Console.out("completed:       \(report.completed) (orders written for this run: \(report.ordersWritten))")
        let causes = report.failures.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }
        Console.out(
            "compensated:     \(report.compensated)\(causes.isEmpty ? "" : " — " + causes.joined(separator: ", "))")
        Console.out(
            "needs attention: \(report.needsAttention); errors: \(report.errors); unfinished in the log: \(report.unfinishedInLog)"
        )
        invariant(report.invariant, source: "\(ShopFiles.products) and \(ShopFiles.orders)")
    }

    static func invariant(_ invariant: StockInvariant, source: String) {
        Console.out("stock invariant, read from \(source): received = stock + ordered")
        Console.out(
            "    " + pad("product", 10) + pad("received", 10, right: true) + "   " + pad("stock", 8, right: true)
                + "   " + pad("ordered", 8, right: true))
        for line in invariant.lines {
            Console.out(row(line.product, line.received, line.stock, line.ordered, line.holds))
        }
        Console.out(row("total", invariant.received, invariant.stock, invariant.ordered, invariant.holds))
        Console.out(
            invariant.holds
                ? "stock invariant holds: initial stock \(invariant.received) (opening stock + deliveries) = current stock \(invariant.stock) + confirmed orders \(invariant.ordered)"
                : "stock invariant BROKEN: initial stock \(invariant.received) (opening stock + deliveries) ≠ current stock \(invariant.stock) + confirmed orders \(invariant.ordered)"
        )
    }

    static func monolith(_ report: MonolithReport) {
        Console.out(
            "orders:    \(report.orders) in \(String(format: "%.2f", report.seconds)) s — "
                + "\(String(format: "%.0f", report.ordersPerSecond)) orders/s (concurrency \(report.concurrency))")
        Console.out("confirmed: \(report.confirmed) (orders written for this run: \(report.ordersWritten))")
        let causes = report.refused.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }
        Console.out(
            "refused:   \(report.orders - report.confirmed)\(causes.isEmpty ? "" : " — " + causes.joined(separator: ", "))"
                + " (each rolled back in its own transaction: nothing to compensate)")
        invariant(report.invariant, source: ShopFiles.monolith)
    }

    private static func row(_ product: String, _ received: Int, _ stock: Int, _ ordered: Int, _ holds: Bool) -> String {
        "    " + pad(product, 10) + pad(String(received), 10, right: true) + " = " + pad(String(stock), 8, right: true)
            + " + " + pad(String(ordered), 8, right: true) + (holds ? "   ✓" : "   ✗")
    }

    static func milliseconds(_ value: Double) -> String {
        value >= 1000 ? String(format: "%.2f s", value / 1000) : String(format: "%.1f ms", value)
    }

    static func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - text.count))
        return right ? fill + text : text + fill
    }
}

/// Prints the tour's results as they happen.
struct TextTourObserver: TourObserver {
    let progress = ProgressBar()
    let isNew: Bool

    func resumed(_ report: ResumeReport) { TextReport.resumed(report, isNew: isNew) }
    func scenario(_ report: ScenarioReport) { TextReport.scenario(report) }
    func loadStarting(_ options: LoadOptions) { TextReport.loadStarting(options) }
    func loadProgress(_ progress: LoadProgress) { self.progress.update(progress) }

    func load(_ report: LoadReport) {
        progress.finish()
        TextReport.load(report)
    }
}
