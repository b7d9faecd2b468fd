public import Foundation
public import SagaKit
import ShopServices

/// A saga's history as a readable timeline: one entry per log record, with offsets, durations and
/// idempotency keys, built from `SagaEngine.history(of:)`.
///
/// ```swift
/// let timeline = Timeline(records: try await engine.history(of: "order-1"))
/// for entry in timeline.entries { print(entry.offsetMilliseconds, entry.event, entry.detail) }
/// ```
public struct Timeline: Codable, Hashable, Sendable {
    /// One record of the saga log, explained.
    public struct Entry: Codable, Hashable, Sendable {
        /// The record's sequence number in the saga's history.
        public var sequence: Int
        /// When it was written, as recorded.
        public var timestamp: Date
        /// Milliseconds since the saga started.
        public var offsetMilliseconds: Double
        /// The record kind as the log stores it (`step.started`, `compensation.succeeded`…).
        public var kind: String
        /// A short, readable name for the event.
        public var event: String
        /// The step concerned, if any.
        public var step: String?
        /// The attempt, if any.
        public var attempt: Int?
        /// The idempotency key the step's action or compensation received, for their intents.
        public var idempotencyKey: String?
        /// For outcomes: milliseconds since the matching intent.
        public var durationMilliseconds: Double?
        /// The recorded error, for failures: `type: message`.
        public var error: String?
        /// A readable detail (what the output says, why a step ran again…).
        public var detail: String
    }

    /// The saga's id.
    public var sagaID: String
    /// The entries, in log order.
    public var entries: [Entry]

    /// The final status's record kind, or `nil` while the saga runs.
    public var outcome: String? {
        entries.last.flatMap { entry in
            [SagaLogRecord.Kind.sagaCompleted, .sagaCompensated, .sagaNeedsAttention, .operatorResolved]
                .map(\.rawValue).contains(entry.kind) ? entry.kind : nil
        }
    }

    /// Milliseconds from the saga's start to its last record.
    public var totalMilliseconds: Double { entries.last?.offsetMilliseconds ?? 0 }

    /// Builds the timeline of one saga's records (ordered by sequence).
    public init(records: [SagaLogRecord]) {
        self.sagaID = records.first?.sagaID ?? ""
        let start = records.first?.timestamp ?? Date()
        var intents: [String: Date] = [:]
        var openAttempt: [String: Int] = [:]
        var entries: [Entry] = []
        for record in records {
            let step = record.step
            let stepName = step ?? ""
            let key = step.map { "\(record.sagaID)/\($0)" }
            var entry = Entry(
                sequence: record.sequence, timestamp: record.timestamp,
                offsetMilliseconds: record.timestamp.timeIntervalSince(start) * 1000, kind: record.kind.rawValue,
                event: record.kind.rawValue, step: step, attempt: record.attempt, idempotencyKey: nil,
                durationMilliseconds: nil, error: record.error.map { "\($0.type): \($0.message)" }, detail: "")
            func settle(_ intent: String) {
                if let began = intents.removeValue(forKey: intent) {
                    entry.durationMilliseconds = record.timestamp.timeIntervalSince(began) * 1000
                }
            }
            switch record.kind {
            case .sagaStarted:
                entry.event = "saga started"
                entry.detail = Self.describeInput(record.payload)
            case .stepStarted:
                entry.event = "step started"
                entry.idempotencyKey = key
                if let previous = openAttempt[stepName] {
                    entry.detail =
                        "attempt \(previous) has no logged outcome (the engine stopped): run again with the same key"
                }
                openAttempt[stepName] = record.attempt
                intents["do " + stepName] = record.timestamp
            case .stepSucceeded:
                entry.event = "step succeeded"
                openAttempt[stepName] = nil
                settle("do " + stepName)
                entry.detail = Self.describeOutput(record.payload)
            case .stepAttemptFailed:
                entry.event = "attempt failed"
                openAttempt[stepName] = nil
                settle("do " + stepName)
                entry.detail = "retrying"
            case .stepFailed:
                entry.event = "step failed"
                openAttempt[stepName] = nil
                settle("do " + stepName)
                entry.detail = "for good: compensate what started"
            case .compensationStarted:
                entry.event = "compensating"
                entry.idempotencyKey = key
                if let previous = openAttempt["undo " + stepName] {
                    entry.detail =
                        "attempt \(previous) has no logged outcome (the engine stopped): run again with the same key"
                } else {
                    entry.detail = "the deduction's own key: refunds it at most once"
                }
                openAttempt["undo " + stepName] = record.attempt
                intents["undo " + stepName] = record.timestamp
            case .compensationSucceeded:
                entry.event = "compensated"
                openAttempt["undo " + stepName] = nil
                settle("undo " + stepName)
            case .compensationAttemptFailed:
                entry.event = "compensation attempt failed"
                openAttempt["undo " + stepName] = nil
                settle("undo " + stepName)
                entry.detail = "retrying"
            case .compensationFailed:
                entry.event = "compensation failed"
                openAttempt["undo " + stepName] = nil
                settle("undo " + stepName)
            case .sagaCompleted:
                entry.event = "saga completed"
                entry.detail = Self.describeOutput(record.payload)
            case .sagaCompensated:
                entry.event = "saga compensated"
                entry.detail = "every started step was undone"
            case .sagaNeedsAttention:
                entry.event = "saga needs attention"
            default:
                entry.event = record.kind.rawValue.replacingOccurrences(of: ".", with: " ")
                entry.detail = record.note ?? ""
            }
            entries.append(entry)
        }
        self.entries = entries
    }

    static func describeInput(_ payload: Data?) -> String {
        guard let payload, let order = try? JSONDecoder().decode(PlaceOrder.self, from: payload) else { return "" }
        return "user \(order.user) orders \(order.quantity) × \(order.product)"
    }

    static func describeOutput(_ payload: Data?) -> String {
        guard let payload else { return "" }
        let decoder = JSONDecoder()
        if let confirmation = try? decoder.decode(OrderConfirmation.self, from: payload) {
            return "order #\(confirmation.orderID)"
        }
        if let deduction = try? decoder.decode(StockDeduction.self, from: payload) {
            return deduction.isReplay
                ? "key already applied: nothing deducted again"
                : "\(deduction.quantity) \(deduction.product) deducted"
        }
        return ""
    }
}
