import Foundation

/// How a saga ended, or where it stopped for a person.
///
/// ```swift
/// switch try await engine.execute(placeOrder, id: "order-42", input: order) {
/// case .completed(let order): print("order \(order.id) placed")
/// case .compensated(let failure): print("refunded: \(failure.cause.message)")
/// case .needsAttention(let failure): alert(failure)
/// case .resolved(let note): print("resolved by hand: \(note ?? "")")
/// }
/// ```
public enum SagaOutcome<Output: Sendable>: Sendable {
    /// Every step succeeded; the saga's output.
    case completed(Output)
    /// A step failed for good, or the saga was cancelled, and every started step was compensated.
    case compensated(SagaFailure)
    /// A compensation, or a step after the pivot, failed for good; a person must retry or resolve it.
    case needsAttention(SagaFailure)
    /// A person resolved a saga that needed attention, with this note.
    case resolved(note: String?)

    /// The status this outcome corresponds to.
    public var status: SagaStatus {
        switch self {
        case .completed: .completed
        case .compensated: .compensated
        case .needsAttention: .needsAttention
        case .resolved: .resolved
        }
    }

    /// The output, if the saga completed.
    public var output: Output? {
        if case .completed(let output) = self { return output }
        return nil
    }
}

/// Why a saga compensated or needs attention, as the log recorded it.
public struct SagaFailure: Hashable, Sendable, CustomStringConvertible {
    /// The step whose failure decided it; `nil` for a cancellation.
    public var step: String?
    /// The recorded cause.
    public var cause: RecordedError

    /// Creates a failure.
    public init(step: String?, cause: RecordedError) {
        self.step = step
        self.cause = cause
    }

    public var description: String { (step.map { "step '\($0)': " } ?? "") + cause.description }
}

/// Per-saga settings given to ``SagaEngine/start(_:id:input:options:)``.
public struct SagaOptions: Sendable {
    /// How long the saga may take to reach its pivot, from its start. Past it, the running step
    /// counts as failed and the saga compensates; steps after the pivot are not bound by it.
    /// Default `nil`: no deadline.
    public var deadline: Duration?

    /// Creates options.
    public init(deadline: Duration? = nil) {
        self.deadline = deadline
    }
}

/// A started saga: await its outcome, from this engine or from the log.
public struct SagaHandle<Output: Codable & Sendable>: Sendable {
    /// The saga's id.
    public let sagaID: String
    let engine: SagaEngine

    /// Waits until the saga completes, compensates, needs attention or is resolved.
    ///
    /// A saga the log shows as unfinished is awaited once the engine has loaded the log: call this
    /// while the engine's ``SagaEngine/run()`` is running (or has run).
    ///
    /// - Throws: ``SagaError`` with code ``SagaError/Code/interrupted`` when the engine stops first
    ///   (the saga resumes from the log on the next start), ``SagaError/Code/unknownSaga``,
    ///   ``SagaError/Code/undecodablePayload`` when the logged output no longer decodes as `Output`,
    ///   or `CancellationError` when the waiting task is cancelled (the saga runs on regardless).
    public func outcome() async throws -> SagaOutcome<Output> {
        try engine.decodeOutcome(try await engine.settlement(of: sagaID), as: Output.self)
    }
}

/// A saga's settled state in untyped form.
package struct SagaSettlement: Sendable {
    var status: SagaStatus
    var output: Data?
    var cause: RecordedError?
    var causeStep: String?
    var note: String?
}
