public import SagaKit
import Synchronization

/// Where to stop a saga as if its process died: after the n-th durable log write, or just before it
/// (after the participant call that preceded it).
///
/// ```swift
/// let plan = CrashPlan(write: 2, moment: .afterWrite)
/// let engine = SagaEngine(store: store, configuration: plan.configure(configuration), logger: logger)
/// ```
public final class CrashPlan: Sendable {
    /// Which side of the write the crash falls on.
    public struct Moment: Hashable, Sendable, CustomStringConvertible {
        let afterWrite: Bool
        /// The n-th write is durable, and the process dies before doing anything else.
        public static let afterWrite = Moment(afterWrite: true)
        /// The n-th write is about to be made (the participant call before it has happened) and never is.
        public static let beforeWrite = Moment(afterWrite: false)
        public var description: String { afterWrite ? "after write" : "before write" }
    }

    /// The write number, from 1.
    public let write: Int
    /// Which side of that write.
    public let moment: Moment
    private let state = Mutex((writes: 0, crashed: false, detail: ""))

    /// Crashes around the `write`-th log write of the engine.
    public init(write: Int, moment: Moment = .afterWrite) {
        self.write = write
        self.moment = moment
    }

    /// Whether the crash happened (the engine reached the planned write).
    public var crashed: Bool { state.withLock { $0.crashed } }
    /// The record kinds of the write the crash fell on.
    public var crashedAt: String { state.withLock { $0.detail } }
    /// Writes the engine made (or attempted, for `beforeWrite`) up to the crash.
    public var writes: Int { state.withLock { $0.writes } }

    /// Returns `configuration` with this plan's fault hook installed (after any hook installed before).
    public func configure(_ configuration: SagaEngine.Configuration) -> SagaEngine.Configuration {
        configuration.addingFaultPoint { [self] point in try self.hit(point) }
    }

    func hit(_ point: FaultPoint) throws {
        let crash = state.withLock { state -> Bool in
            if state.crashed { return true }
            switch point.moment {
            case .beforeAppend:
                if !moment.afterWrite, state.writes + 1 == write {
                    state.crashed = true
                    state.detail = point.detail
                    return true
                }
            case .afterAppend:
                state.writes += 1
                if moment.afterWrite, state.writes == write {
                    state.crashed = true
                    state.detail = point.detail
                    return true
                }
            default:
                break
            }
            return false
        }
        if crash { throw SimulatedCrash() }
    }
}
