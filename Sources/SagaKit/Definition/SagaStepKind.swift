/// The role a step plays in a saga, which decides what happens when it or a later step fails.
///
/// A saga is an ordered run of *compensatable* steps, then at most one *pivot*, then *retriable* steps.
/// Before the pivot succeeds the saga can still go back: a failure compensates every compensatable step
/// that started. Once the pivot succeeds the saga can only go forward, so every later step must be
/// retriable: it is retried until it succeeds, or the saga stops in ``SagaStatus/needsAttention``.
///
/// ```swift
/// let kind: SagaStepKind = .compensatable
/// ```
public struct SagaStepKind: Hashable, Sendable, CustomStringConvertible {
    package enum Base: String, Sendable {
        case compensatable
        case pivot
        case retriable
    }

    package let base: Base

    package init(_ base: Base) { self.base = base }

    /// A step with a compensation that semantically undoes its effect.
    public static let compensatable = SagaStepKind(.compensatable)
    /// The point of no return: once it succeeds, the saga only moves forward.
    public static let pivot = SagaStepKind(.pivot)
    /// A step after the pivot that is retried until it succeeds; it has no compensation.
    public static let retriable = SagaStepKind(.retriable)

    /// The stable name written to the saga log and used in fingerprints.
    public var description: String { base.rawValue }
}
