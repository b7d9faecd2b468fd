/// The role a step plays in a saga, which decides what happens when it or a later step fails.
///
/// A saga is an ordered run of *compensatable* steps, then at most one *pivot*, then *retryable* steps.
/// Before the pivot succeeds the saga can still go back: a failure compensates every compensatable step
/// that started. Once the pivot succeeds the saga can only go forward, so every later step must be
/// retryable: it is retried until it succeeds, or the saga stops in ``SagaStatus/needsAttention``.
///
/// ```swift
/// let kind: SagaStepKind = .compensatable
/// ```
public struct SagaStepKind: Hashable, Sendable, CustomStringConvertible {
    package enum Base: String, Sendable {
        case compensatable
        case pivot
        case retryable

        /// The name fingerprints use. Version 1 of the fingerprint spelled the last kind
        /// "retriable"; it stays so, or every logged saga with such a step would be stranded.
        var fingerprintName: String { self == .retryable ? "retriable" : rawValue }
    }

    package let base: Base

    package init(_ base: Base) { self.base = base }

    /// A step with a compensation that semantically undoes its effect.
    public static let compensatable = SagaStepKind(.compensatable)
    /// The point of no return: once it succeeds, the saga only moves forward.
    public static let pivot = SagaStepKind(.pivot)
    /// A step after the pivot that is retried until it succeeds; it has no compensation.
    public static let retryable = SagaStepKind(.retryable)

    /// The kind's name, as messages print it.
    public var description: String { base.rawValue }

    /// The stable name a definition's fingerprint is computed from.
    package var fingerprintName: String { base.fingerprintName }
}
