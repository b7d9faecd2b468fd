public import SagaKit
import Synchronization

/// A durable point of a saga's execution: one side of a log write or of a participant call, where
/// a process that dies leaves a log recovery can read exactly.
///
/// ```swift
/// let beforeCreate = CrashSwitch { point in
///     point.moment == .beforeCall && point.step == "create-order" && !point.isCompensation
/// }
/// ```
public struct SagaDurablePoint: Hashable, Sendable, CustomStringConvertible {
    /// Which side of which operation.
    public struct Moment: Hashable, Sendable, CustomStringConvertible {
        enum Base: String, Hashable, Sendable { case beforeAppend, afterAppend, beforeCall, afterCall }
        let base: Base

        /// A log write is about to be made.
        public static let beforeAppend = Moment(base: .beforeAppend)
        /// A log write is durable.
        public static let afterAppend = Moment(base: .afterAppend)
        /// A participant is about to be called (its intent is durable).
        public static let beforeCall = Moment(base: .beforeCall)
        /// A participant answered (its outcome is not yet logged).
        public static let afterCall = Moment(base: .afterCall)

        public var description: String { base.rawValue }
    }

    /// The saga at this point.
    public var sagaID: String
    /// Which side of which operation.
    public var moment: Moment
    /// The step called, at call moments.
    public var step: String?
    /// Whether the call is a compensation, at call moments.
    public var isCompensation: Bool
    /// The kinds of the records written, at append moments.
    public var recordKinds: [SagaLogRecord.Kind]

    public var description: String {
        switch moment.base {
        case .beforeAppend, .afterAppend: "\(moment)(\(recordKinds.map(\.rawValue).joined(separator: "+")))"
        case .beforeCall, .afterCall: "\(moment)(\(isCompensation ? "compensate " : "")\(step ?? ""))"
        }
    }

    init?(_ point: FaultPoint) {
        let moment: Moment
        switch point.moment {
        case .beforeAppend: moment = .beforeAppend
        case .afterAppend: moment = .afterAppend
        case .beforeCall: moment = .beforeCall
        case .afterCall: moment = .afterCall
        case .callFailed: return nil
        }
        self.init(
            sagaID: point.sagaID, moment: moment, step: point.step, isCompensation: point.isCompensation,
            recordKinds: point.records.map(SagaLogRecord.Kind.init(rawValue:)))
    }

    init(sagaID: String, moment: Moment, step: String?, isCompensation: Bool, recordKinds: [SagaLogRecord.Kind]) {
        self.sagaID = sagaID
        self.moment = moment
        self.step = step
        self.isCompensation = isCompensation
        self.recordKinds = recordKinds
    }
}

/// Stops an engine as if its process died, at the first durable point a predicate picks.
///
/// From that point on the engine writes nothing more for any saga, as a dead process would not;
/// a new engine on the same log then recovers what was durable. Use it for demos and tests that
/// crash at a named moment of your own saga (``CrashPlan`` counts writes instead, and
/// ``CrashExplorer`` tries every point).
///
/// ```swift
/// let crash = CrashSwitch { $0.moment == .afterCall && $0.step == "deduct-stock" && !$0.isCompensation }
/// let engine = SagaEngine(store: store, configuration: crash.configure(.init()), logger: logger)
/// // … run a saga; crash.crashedAt says where the engine "died".
/// ```
public final class CrashSwitch: Sendable {
    private let shouldCrash: @Sendable (SagaDurablePoint) -> Bool
    private let state = Mutex<SagaDurablePoint?>(nil)

    /// Creates a switch that crashes the engine at the first point for which `shouldCrash` is true.
    ///
    /// - Parameter shouldCrash: Called at every durable point until it returns `true`, on the
    ///   engine's tasks: keep it quick, and do there whatever must happen "as the process dies".
    public init(at shouldCrash: @escaping @Sendable (SagaDurablePoint) -> Bool) {
        self.shouldCrash = shouldCrash
    }

    /// Whether the engine has crashed.
    public var crashed: Bool { state.withLock { $0 != nil } }
    /// Where it crashed, once it has.
    public var crashedAt: SagaDurablePoint? { state.withLock { $0 } }

    /// Returns `configuration` with this switch installed.
    public func configure(_ configuration: SagaEngine.Configuration) -> SagaEngine.Configuration {
        configuration.addingFaultPoint { [self] point in try self.hit(point) }
    }

    private func hit(_ fault: FaultPoint) throws {
        if crashed { throw SimulatedCrash() }
        guard let point = SagaDurablePoint(fault), shouldCrash(point) else { return }
        state.withLock { crashed in
            if crashed == nil { crashed = point }
        }
        throw SimulatedCrash()
    }
}
