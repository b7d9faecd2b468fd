/// A crash at a durable point of one saga, as in ``SagaSchedule/Crash`` and ``SagaFaultPlan/Crash``.
protocol DurableCrashPoint {
    /// The index of the saga whose durable points are counted.
    var saga: Int { get set }
    /// The durable point the engine crashes at, counted from 0.
    var point: Int { get set }
}

/// A generated case of sagas that may crash the engine at a durable point, as ``SagaSchedule``
/// and ``SagaFaultPlan`` are, and so shrinks by removing a saga (the crash re-counted), by moving
/// the crash earlier or by removing it.
protocol CrashPointShrinkable {
    /// What the case holds for each saga.
    associatedtype SagaPlan
    /// The kind of crash the case carries.
    associatedtype Crash: DurableCrashPoint
    /// The sagas; a crash counts the durable points of one of them by index.
    var sagas: [SagaPlan] { get set }
    /// The crash, if any.
    var crash: Crash? { get set }
}

extension SagaSchedule.Crash: DurableCrashPoint {}
extension SagaSchedule: CrashPointShrinkable {}
extension SagaFaultPlan.Crash: DurableCrashPoint {}
extension SagaFaultPlan: CrashPointShrinkable {}

extension CrashPointShrinkable {
    /// This case with each of its sagas removed in turn, first to last, each with the index of the
    /// saga removed; empty with fewer than two sagas. The crash is re-counted: dropped if it was
    /// counted in the removed saga, shifted down one saga if it was counted in a later one.
    var sagaRemovals: [(removed: Int, smaller: Self)] {
        guard sagas.count > 1 else { return [] }
        return sagas.indices.map { index in
            var smaller = self
            smaller.sagas.remove(at: index)
            if let saga = crash?.saga {
                if saga == index {
                    smaller.crash = nil
                } else if saga > index {
                    smaller.crash?.saga -= 1
                }
            }
            return (index, smaller)
        }
    }

    /// The smaller candidates of this case, given its `structural` ones (each one change smaller):
    /// each structural candidate followed by itself with every earlier crash point, since a
    /// structural change shifts the durable points; then, if this case crashes, this case without
    /// its crash, followed by this case with every earlier crash point. Earlier points come first.
    func crashShrinkingCandidates(structural: [Self]) -> [Self] {
        var candidates: [Self] = []
        for candidate in structural {
            candidates.append(candidate)
            candidates += candidate.earlierCrashes
        }
        if crash != nil {
            var none = self
            none.crash = nil
            candidates.append(none)
            candidates += earlierCrashes
        }
        return candidates
    }

    /// This case with its crash moved to each earlier durable point, from 0 up; empty without a crash.
    private var earlierCrashes: [Self] {
        guard let crash else { return [] }
        return (0..<crash.point).map { point in
            var earlier = self
            earlier.crash?.point = point
            return earlier
        }
    }
}
