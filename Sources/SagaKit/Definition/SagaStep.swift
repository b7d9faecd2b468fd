import Foundation

/// One step of a saga: a stable name, a kind, an action and, for compensatable steps, a compensation.
///
/// Steps are values; declare them once and list them in a ``SagaDefinition``. Later steps read an
/// earlier step's output with ``StepContext/output(of:)``.
///
/// ```swift
/// let deductStock = SagaStep<PlaceOrder, Deduction>.compensatable("deduct-stock") { context in
///     try await products.deduct(context.input.product, context.input.quantity, key: context.idempotencyKey)
/// } compensation: { _, context in
///     try await products.refund(key: context.idempotencyKey)
/// }
/// ```
///
/// - Important: The name is written to the saga log and identifies the step across versions of your
///   code. Never derive it from a type name, and never rename a step while sagas using it may be in
///   flight: register the old definition beside the new one instead.
public struct SagaStep<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// The step's stable name, unique within its saga.
    public let name: String
    /// The step's kind.
    public let kind: SagaStepKind
    /// Retry, timeout and unknown-outcome settings.
    public var options: StepOptions

    let action: @Sendable (StepContext<Input>) async throws -> Output
    let compensation: (@Sendable (Output?, CompensationContext<Input>) async throws -> Void)?
    let local: (any Sendable)?
    let localCompensation: (any Sendable)?

    package init(
        name: String,
        kind: SagaStepKind,
        options: StepOptions,
        action: @escaping @Sendable (StepContext<Input>) async throws -> Output,
        compensation: (@Sendable (Output?, CompensationContext<Input>) async throws -> Void)?,
        local: (any Sendable)? = nil,
        localCompensation: (any Sendable)? = nil
    ) {
        self.name = name
        self.kind = kind
        self.options = options
        self.action = action
        self.compensation = compensation
        self.local = local
        self.localCompensation = localCompensation
    }

    /// A step whose effect can be undone.
    ///
    /// The compensation runs, in reverse order, when a later step (or this one) fails for good before
    /// the pivot succeeds. It runs once for every such step whose action *started*, even if the action
    /// failed, because a failed remote call does not prove the effect did not happen: its first
    /// argument is the output the action logged, or `nil` when the action never reported success.
    ///
    /// - Parameters:
    ///   - name: The stable step name.
    ///   - options: Retries, timeout and unknown-outcome policy.
    ///   - action: The forward action; its result is logged and passed to the compensation.
    ///   - compensation: The undo, keyed by the same ``CompensationContext/idempotencyKey``.
    public static func compensatable(
        _ name: String,
        options: StepOptions = StepOptions(),
        action: @escaping @Sendable (StepContext<Input>) async throws -> Output,
        compensation: @escaping @Sendable (Output?, CompensationContext<Input>) async throws -> Void
    ) -> SagaStep {
        SagaStep(name: name, kind: .compensatable, options: options, action: action, compensation: compensation)
    }

    /// The saga's point of no return. If it fails for good, earlier steps are compensated; once it
    /// succeeds, the saga only moves forward.
    public static func pivot(
        _ name: String,
        options: StepOptions = StepOptions(),
        action: @escaping @Sendable (StepContext<Input>) async throws -> Output
    ) -> SagaStep {
        SagaStep(name: name, kind: .pivot, options: options, action: action, compensation: nil)
    }

    /// A step after the pivot, retried until it succeeds (by default without an attempt limit).
    /// If it fails with a non-retryable error, the saga stops in ``SagaStatus/needsAttention``.
    public static func retryable(
        _ name: String,
        options: StepOptions = StepOptions(),
        action: @escaping @Sendable (StepContext<Input>) async throws -> Output
    ) -> SagaStep {
        SagaStep(name: name, kind: .retryable, options: options, action: action, compensation: nil)
    }

    /// Returns a copy of the step with different options.
    public func with(_ options: StepOptions) -> SagaStep {
        var copy = self
        copy.options = options
        return copy
    }
}

/// A step's output for steps that produce nothing worth logging.
public struct NoOutput: Codable, Hashable, Sendable {
    /// Creates the empty output.
    public init() {}
}

/// One element of a saga: a single step, or a group of steps that run in parallel.
public struct SagaElement<Input: Codable & Sendable>: Sendable {
    package let steps: [AnySagaStep]
    package let isParallel: Bool

    package init(steps: [AnySagaStep], isParallel: Bool) {
        self.steps = steps
        self.isParallel = isParallel
    }
}

/// A group of steps that run concurrently, and are compensated concurrently.
///
/// ```swift
/// SagaDefinition<Trip, Booking>("book-trip", returning: confirm) {
///     Parallel {
///         reserveFlight
///         reserveHotel
///     }
///     confirm
/// }
/// ```
public struct Parallel<Input: Codable & Sendable>: Sendable {
    let steps: [AnySagaStep]

    /// Creates a parallel group from the steps the builder lists.
    public init(@ParallelBuilder<Input> _ steps: () -> [AnySagaStep]) {
        self.steps = steps()
    }
}

/// Builds the ordered elements of a ``SagaDefinition``.
@resultBuilder
public enum SagaBuilder<Input: Codable & Sendable> {
    /// Lists a single step.
    public static func buildExpression<Output>(_ step: SagaStep<Input, Output>) -> [SagaElement<Input>] {
        [SagaElement(steps: [AnySagaStep(step)], isParallel: false)]
    }

    /// Lists a parallel group.
    public static func buildExpression(_ group: Parallel<Input>) -> [SagaElement<Input>] {
        [SagaElement(steps: group.steps, isParallel: true)]
    }

    /// Joins the listed elements in order.
    public static func buildBlock(_ components: [SagaElement<Input>]...) -> [SagaElement<Input>] {
        components.flatMap { $0 }
    }

    /// Joins elements listed by a `for` loop.
    public static func buildArray(_ components: [[SagaElement<Input>]]) -> [SagaElement<Input>] {
        components.flatMap { $0 }
    }

    /// Lists elements under an `if`.
    public static func buildOptional(_ component: [SagaElement<Input>]?) -> [SagaElement<Input>] {
        component ?? []
    }

    /// Lists the elements of an `if` branch.
    public static func buildEither(first component: [SagaElement<Input>]) -> [SagaElement<Input>] {
        component
    }

    /// Lists the elements of an `else` branch.
    public static func buildEither(second component: [SagaElement<Input>]) -> [SagaElement<Input>] {
        component
    }
}

/// Builds the steps of a ``Parallel`` group.
@resultBuilder
public enum ParallelBuilder<Input: Codable & Sendable> {
    /// Lists a step of the group.
    public static func buildExpression<Output>(_ step: SagaStep<Input, Output>) -> [AnySagaStep] {
        [AnySagaStep(step)]
    }

    /// Joins the group's steps.
    public static func buildBlock(_ components: [AnySagaStep]...) -> [AnySagaStep] {
        components.flatMap { $0 }
    }

    /// Joins steps listed by a `for` loop.
    public static func buildArray(_ components: [[AnySagaStep]]) -> [AnySagaStep] {
        components.flatMap { $0 }
    }
}
