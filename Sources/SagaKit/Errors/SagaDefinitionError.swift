/// A saga definition that cannot be registered, with the rule it breaks.
///
/// ```swift
/// do { try engine.register(placeOrder) }
/// catch let error as SagaDefinitionError where error.code == .compensatableAfterPivot { … }
/// ```
public struct SagaDefinitionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The bounded kind of problem; usable as a metric label.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Sendable {
            case emptySaga, emptyParallelGroup, invalidName, duplicateStepName, compensatableAfterPivot
            case multiplePivots, retryableBeforePivot, pivotInParallelGroup, missingCompensation
            case invalidUnknownOutcomePolicy, retryableBesideCompensatable
        }

        let base: Base

        /// The saga has no steps.
        public static let emptySaga = Code(base: .emptySaga)
        /// A parallel group lists no steps.
        public static let emptyParallelGroup = Code(base: .emptyParallelGroup)
        /// A saga or step name is empty, too long, or holds `/` or control characters.
        public static let invalidName = Code(base: .invalidName)
        /// Two steps share a name.
        public static let duplicateStepName = Code(base: .duplicateStepName)
        /// A compensatable step follows the pivot.
        public static let compensatableAfterPivot = Code(base: .compensatableAfterPivot)
        /// More than one step is a pivot.
        public static let multiplePivots = Code(base: .multiplePivots)
        /// A retryable step comes before the pivot or before a compensatable step.
        public static let retryableBeforePivot = Code(base: .retryableBeforePivot)
        /// The pivot is inside a parallel group.
        public static let pivotInParallelGroup = Code(base: .pivotInParallelGroup)
        /// A compensatable step has no compensation.
        public static let missingCompensation = Code(base: .missingCompensation)
        /// A pivot or retryable step asks to compensate an unknown outcome.
        public static let invalidUnknownOutcomePolicy = Code(base: .invalidUnknownOutcomePolicy)
        /// A parallel group holds both a retryable step and a compensatable one, in any order: if the
        /// compensatable step failed for good, the retryable step's effect could stand while the saga
        /// compensates.
        public static let retryableBesideCompensatable = Code(base: .retryableBesideCompensatable)

        public var description: String { base.rawValue }
    }

    /// What is wrong.
    public let code: Code
    /// The saga's name.
    public let saga: String
    /// The step at fault, if one is.
    public let step: String?
    /// A sentence naming the problem.
    public let message: String

    package init(_ code: Code, saga: String, step: String?, message: String) {
        self.code = code
        self.saga = saga
        self.step = step
        self.message = message
    }

    public var description: String { "invalid saga definition (\(code)): \(message)" }
}

extension SagaDefinitionError {
    /// Two errors are equal when their codes are: the code is what callers branch on; the message
    /// and context describe one occurrence.
    ///
    /// ```swift
    /// #expect(first == second)  // both definition errors have the same code
    /// ```
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    /// Hashes the code only, consistently with `==`.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
