import Foundation

/// A saga declared up front: a stable name, ordered steps and parallel groups, and how its result is
/// formed from the steps' outputs.
///
/// ```swift
/// let placeOrder = SagaDefinition<PlaceOrder, OrderID>("place-order", returning: createOrder) {
///     deductStock      // compensatable: refunded if the order cannot be written
///     createOrder      // pivot: once it succeeds, the order stands
/// }
/// ```
///
/// Register it with ``SagaEngine/register(_:)`` (or let ``SagaEngine/start(_:id:input:options:)`` do
/// so), which validates it: see ``SagaDefinitionError``.
///
/// - Important: The saga name and step names are written to the log. Every instance records the
///   definition's ``fingerprint``; an instance is only resumed by a definition with the same one. To
///   change a saga while instances are in flight, give the new version new structure and keep
///   registering the old one until its instances finish.
public struct SagaDefinition<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// The saga's stable name.
    public let name: String
    /// The elements, in order: single steps and parallel groups.
    public let elements: [SagaElement<Input>]

    let result: @Sendable (SagaResultContext<Input>) throws -> Output

    /// Creates a definition whose result is computed from the steps' outputs.
    ///
    /// - Parameters:
    ///   - name: The stable saga name.
    ///   - steps: The steps and ``Parallel`` groups, in order.
    ///   - result: Builds the saga's output once every step has succeeded.
    public init(
        _ name: String,
        @SagaBuilder<Input> steps: () -> [SagaElement<Input>],
        result: @escaping @Sendable (SagaResultContext<Input>) throws -> Output
    ) {
        self.name = name
        let elements = steps()
        self.elements = elements
        self.result = result
        // Built once: `start` looks the definition up by fingerprint on every call.
        self.plan = SagaPlan(
            name: name, groups: elements.map { SagaPlan.Group(steps: $0.steps, isParallel: $0.isParallel) })
    }

    /// Creates a definition whose output is the output of one of its steps.
    public init(
        _ name: String,
        returning step: SagaStep<Input, Output>,
        @SagaBuilder<Input> steps: () -> [SagaElement<Input>]
    ) {
        self.init(name, steps: steps, result: { context in try context.output(of: step) })
    }

    /// A hex digest of the saga's structure: its name, and each element's steps with their names,
    /// kinds and whether they compensate. Closures and options are not part of it.
    public var fingerprint: String { plan.fingerprint }

    /// Checks the definition's structure.
    ///
    /// - Throws: ``SagaDefinitionError`` naming the first problem found.
    public func validate() throws(SagaDefinitionError) {
        try plan.validate()
    }

    /// The structure the engine executes.
    package let plan: SagaPlan
}

extension SagaDefinition where Output == NoOutput {
    /// Creates a definition with no output.
    public init(_ name: String, @SagaBuilder<Input> steps: () -> [SagaElement<Input>]) {
        self.init(name, steps: steps, result: { _ in NoOutput() })
    }
}

/// The type-erased structure of a saga: what the state machine needs to decide.
package struct SagaPlan: Sendable {
    package struct Group: Sendable {
        package var steps: [AnySagaStep]
        package var isParallel: Bool
    }

    package let name: String
    package let groups: [Group]
    package let fingerprint: String
    package let stepsByName: [String: AnySagaStep]

    package init(name: String, groups: [Group]) {
        self.name = name
        self.groups = groups
        var canonical = "sagakit-fingerprint-v1\n\(name)\n"
        var byName: [String: AnySagaStep] = [:]
        for group in groups {
            canonical += group.isParallel ? "parallel[" : "step["
            canonical += group.steps.map {
                "\($0.name):\($0.kind.fingerprintName):\($0.isCompensatable ? "undo" : "-")"
            }
            .joined(separator: ",")
            canonical += "]\n"
            for step in group.steps {
                if byName[step.name] == nil { byName[step.name] = step }
            }
        }
        self.fingerprint = Fingerprint.hex(of: canonical)
        self.stepsByName = byName
    }

    package func validate() throws(SagaDefinitionError) {
        func fail(_ code: SagaDefinitionError.Code, _ step: String?, _ message: String) -> SagaDefinitionError {
            SagaDefinitionError(code, saga: name, step: step, message: message)
        }
        if !Self.isValidName(name) {
            throw fail(
                .invalidName, nil, "saga name '\(name)' must be 1 to 200 characters with no '/' or control characters")
        }
        if groups.isEmpty { throw fail(.emptySaga, nil, "saga '\(name)' has no steps") }
        var seen = Set<String>()
        var pivotSeen: String?
        var retryableSeen: String?
        for group in groups {
            if group.steps.isEmpty {
                throw fail(.emptyParallelGroup, nil, "saga '\(name)' has an empty parallel group")
            }
            if group.isParallel, let pivot = group.steps.first(where: { $0.kind == .pivot }) {
                throw fail(
                    .pivotInParallelGroup, pivot.name, "pivot step '\(pivot.name)' cannot be part of a parallel group")
            }
            // Siblings run at once: a retryable sibling may succeed while a compensatable one fails for
            // good, and the saga would then compensate around an effect it cannot undo.
            if group.isParallel, let retryable = group.steps.first(where: { $0.kind == .retryable }),
                let undoable = group.steps.first(where: { $0.kind == .compensatable })
            {
                throw fail(
                    .retryableBesideCompensatable, retryable.name,
                    "retryable step '\(retryable.name)' runs in parallel with compensatable step '\(undoable.name)'; if '\(undoable.name)' failed for good the saga would compensate while '\(retryable.name)', which has no compensation, stood; put the retryable step in a group after the pivot"
                )
            }
            for step in group.steps {
                if !Self.isValidName(step.name) {
                    throw fail(
                        .invalidName, step.name,
                        "step name '\(step.name)' must be 1 to 200 characters with no '/' or control characters")
                }
                if !seen.insert(step.name).inserted {
                    throw fail(
                        .duplicateStepName, step.name, "step name '\(step.name)' is used twice in saga '\(name)'")
                }
                switch step.kind {
                case .compensatable:
                    if let pivotSeen {
                        throw fail(
                            .compensatableAfterPivot, step.name,
                            "compensatable step '\(step.name)' comes after pivot '\(pivotSeen)'; a saga cannot undo work once its pivot succeeded"
                        )
                    }
                    if let retryableSeen {
                        throw fail(
                            .retryableBeforePivot, retryableSeen,
                            "retryable step '\(retryableSeen)' comes before compensatable step '\(step.name)'; retryable steps have no compensation, so they must follow the point of no return"
                        )
                    }
                    if !step.isCompensatable {
                        throw fail(
                            .missingCompensation, step.name, "compensatable step '\(step.name)' has no compensation")
                    }
                case .pivot:
                    if let pivotSeen {
                        throw fail(
                            .multiplePivots, step.name,
                            "saga '\(name)' has two pivots, '\(pivotSeen)' and '\(step.name)'; it may have at most one")
                    }
                    if let retryableSeen {
                        throw fail(
                            .retryableBeforePivot, retryableSeen,
                            "retryable step '\(retryableSeen)' comes before pivot '\(step.name)'")
                    }
                    pivotSeen = step.name
                default:
                    if retryableSeen == nil { retryableSeen = step.name }
                }
                if step.kind != .compensatable, step.options.onUnknownOutcome == .compensate {
                    throw fail(
                        .invalidUnknownOutcomePolicy, step.name,
                        "\(step.kind) step '\(step.name)' cannot compensate an unknown outcome; only compensatable steps can"
                    )
                }
            }
        }
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 200
            && !name.unicodeScalars.contains { $0 == "/" || $0.properties.generalCategory == .control }
    }
}

/// A stable 64-bit FNV-1a digest, printed as 16 hex digits (structure fingerprints, not security).
enum Fingerprint {
    static func hex(of text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
