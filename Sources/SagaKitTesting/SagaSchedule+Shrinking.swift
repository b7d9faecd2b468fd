extension SagaSchedule {
    /// Every schedule one step smaller than this one: a saga, a step, a fault, a policy, an operator
    /// action or the crash removed, a parallel group made sequential, or the crash or an operator
    /// action moved earlier. A structural change
    /// shifts the durable points, so each also comes with every earlier crash point.
    public var smallerCandidates: [SagaSchedule] {
        crashShrinkingCandidates(structural: structuralCandidates)
    }

    private var structuralCandidates: [SagaSchedule] {
        var candidates: [SagaSchedule] = []
        for (index, var smaller) in sagaRemovals {
            smaller.operations.removeAll { $0.saga == index }
            for operation in smaller.operations.indices where smaller.operations[operation].saga > index {
                smaller.operations[operation].saga -= 1
            }
            candidates.append(smaller)
        }
        for index in operations.indices {
            var smaller = self
            smaller.operations.remove(at: index)
            candidates.append(smaller)
            if let point = operations[index].afterPoint {
                // Fired once the saga answered instead of at a point, or at an earlier point.
                var later = self
                later.operations[index].afterPoint = nil
                candidates.append(later)
                for earlier in 0..<point {
                    var moved = self
                    moved.operations[index].afterPoint = earlier
                    candidates.append(moved)
                }
            }
        }
        for (sagaIndex, shape) in sagas.enumerated() {
            for (groupIndex, group) in shape.groups.enumerated() {
                for stepIndex in group.indices {
                    var smallerShape = shape
                    let removed = group[stepIndex].name
                    smallerShape.groups[groupIndex].remove(at: stepIndex)
                    if smallerShape.groups[groupIndex].isEmpty { smallerShape.groups.remove(at: groupIndex) }
                    smallerShape.faults.removeAll { $0.step == removed }
                    guard !smallerShape.groups.isEmpty else { continue }
                    var smaller = self
                    smaller.sagas[sagaIndex] = smallerShape
                    candidates.append(smaller)
                }
                for stepIndex in group.indices where group[stepIndex].compensatesUnknownOutcome {
                    var smaller = self
                    smaller.sagas[sagaIndex].groups[groupIndex][stepIndex].compensatesUnknownOutcome = false
                    candidates.append(smaller)
                }
            }
            for faultIndex in shape.faults.indices {
                var smaller = self
                smaller.sagas[sagaIndex].faults.remove(at: faultIndex)
                candidates.append(smaller)
            }
            for (groupIndex, group) in shape.groups.enumerated() where group.count > 1 {
                var sequential = self
                sequential.sagas[sagaIndex].groups.replaceSubrange(groupIndex...groupIndex, with: group.map { [$0] })
                candidates.append(sequential)
            }
        }
        return candidates
    }

    /// Shrinks a failing schedule greedily: takes any smaller candidate that still fails, until
    /// none does. Each candidate is tried up to `attempts` times, because concurrent sagas and
    /// parallel groups may interleave differently from run to run.
    ///
    /// ```swift
    /// let minimal = await schedule.shrunk { try await !SagaScheduleRunner().run($0).isEmpty }
    /// ```
    public func shrunk(attempts: Int = 3, while fails: (SagaSchedule) async throws -> Bool) async rethrows
        -> SagaSchedule
    {
        var current = self
        var progress = true
        while progress {
            progress = false
            for candidate in current.smallerCandidates {
                var failed = false
                for _ in 0..<max(1, attempts) where !failed {
                    failed = try await fails(candidate)
                }
                if failed {
                    current = candidate
                    progress = true
                    break
                }
            }
        }
        return current
    }
}
