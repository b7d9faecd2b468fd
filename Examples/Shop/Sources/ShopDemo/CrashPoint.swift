public import SagaKit
import SagaKitTesting
import ShopServices
import Synchronization

/// A named instant in a place-order saga where the demo can make its process "die".
///
/// Each point sits on one side of a durable write of the saga log or of a participant call, so what
/// recovery finds in the log, and in the services' databases, is exactly known:
///
/// | point | the log holds | the services hold | recovery |
/// |---|---|---|---|
/// | `after-start` | the saga, deduct-stock's intent | nothing | deducts (attempt 2), orders |
/// | `after-deduct` | deduct-stock's intent, no outcome | the deduction | deducts again: a replay, no change |
/// | `before-create` | deduct-stock's outcome, create-order's intent | the deduction | creates the order |
/// | `after-create` | create-order's intent, no outcome | deduction and order | creates again: the same order |
/// | `before-refund` | the refund's intent (the order write failed) | the deduction | refunds |
/// | `after-refund` | the refund's intent, no outcome | nothing (refunded) | refunds again: no change |
///
/// ```swift
/// let point = CrashPoint(name: "before-create")!
/// print(point.explanation)
/// ```
public struct CrashPoint: Hashable, Sendable, CustomStringConvertible, CaseIterable {
    private enum Base: String, CaseIterable {
        case afterStart = "after-start"
        case afterDeduct = "after-deduct"
        case beforeCreate = "before-create"
        case afterCreate = "after-create"
        case beforeRefund = "before-refund"
        case afterRefund = "after-refund"
    }

    private let base: Base

    /// The saga and deduct-stock's intent are logged; the product service was not called.
    public static let afterStart = CrashPoint(base: .afterStart)
    /// The product service deducted the stock; the log does not know (the outcome is unknown).
    public static let afterDeduct = CrashPoint(base: .afterDeduct)
    /// deduct-stock's outcome and create-order's intent are logged; the order service was not called.
    public static let beforeCreate = CrashPoint(base: .beforeCreate)
    /// The order service wrote the order; the log does not know.
    public static let afterCreate = CrashPoint(base: .afterCreate)
    /// The order write failed and the refund's intent is logged; the product service was not called.
    public static let beforeRefund = CrashPoint(base: .beforeRefund)
    /// The product service refunded the stock; the log does not know.
    public static let afterRefund = CrashPoint(base: .afterRefund)

    /// Every point, in the order a saga passes them.
    public static var allCases: [CrashPoint] { Base.allCases.map(CrashPoint.init(base:)) }

    /// The point with this name (also `after-deduct-logged` for ``beforeCreate``), or `nil`.
    public init?(name: String) {
        if name == "after-deduct-logged" {
            self = .beforeCreate
            return
        }
        guard let base = Base(rawValue: name) else { return nil }
        self.base = base
    }

    private init(base: Base) { self.base = base }

    /// The point's name, as `--crash-at` takes it.
    public var name: String { base.rawValue }
    /// The point's name.
    public var description: String { base.rawValue }

    /// Whether the point lies on the compensation path (the saga must fail forward to reach it).
    public var isOnCompensationPath: Bool { self == .beforeRefund || self == .afterRefund }

    /// What is durable when the process dies here, in one sentence.
    public var explanation: String {
        switch base {
        case .afterStart:
            "the saga and deduct-stock's intent are in the log; the product service has not been called"
        case .afterDeduct:
            "the product service deducted the stock, but its outcome never reached the log"
        case .beforeCreate:
            "deduct-stock's outcome and create-order's intent are in the log; the order service has not been called"
        case .afterCreate:
            "the order service wrote the order, but its outcome never reached the log"
        case .beforeRefund:
            "the order write failed and the refund's intent is in the log; the product service has not been called"
        case .afterRefund:
            "the product service refunded the stock, but the refund's outcome never reached the log"
        }
    }
}

/// Stops an engine at a ``CrashPoint`` as if its process died there.
///
/// Built on SagaKitTesting's public `CrashSwitch`, which sees the durable points of a saga's
/// execution. Once armed, the first saga (or the given one) that reaches the point "dies":
/// `onCrash` runs, and from then on the engine writes nothing more for any saga, like a dead process.
///
/// ```swift
/// let trigger = CrashTrigger()
/// let engine = SagaEngine(store: store, configuration: trigger.configure(.init()), logger: logger)
/// trigger.arm(.beforeCreate, sagaID: "order-3")
/// ```
public final class CrashTrigger: Sendable {
    private struct State {
        var point: CrashPoint?
        var sagaID: String?
        var crashedSaga: String?
    }

    /// The armed point, shared with the switch's predicate.
    private final class Arming: Sendable {
        let state = Mutex(State())
    }

    private let arming = Arming()
    private let crashSwitch: CrashSwitch

    /// Creates a disarmed trigger.
    ///
    /// - Parameter onCrash: Called once, when the crash happens, before the engine is stopped. The
    ///   `saga-demo load --crash-at` mode kills its own process from here.
    public init(onCrash: @escaping @Sendable (_ point: CrashPoint, _ sagaID: String) -> Void = { _, _ in }) {
        let arming = self.arming
        self.crashSwitch = CrashSwitch { durable in
            let fired = arming.state.withLock { state -> CrashPoint? in
                guard state.crashedSaga == nil, let point = state.point,
                    state.sagaID.map({ $0 == durable.sagaID }) ?? true, Self.matches(point, durable)
                else { return nil }
                state.crashedSaga = durable.sagaID
                return point
            }
            guard let fired else { return false }
            onCrash(fired, durable.sagaID)
            return true
        }
    }

    /// Arms the trigger: the next saga (or `sagaID` only) to reach `point` crashes the engine.
    public func arm(_ point: CrashPoint, sagaID: String? = nil) {
        arming.state.withLock {
            $0.point = point
            $0.sagaID = sagaID
        }
    }

    /// Whether the crash happened.
    public var crashed: Bool { crashSwitch.crashed }
    /// The saga that reached the point, once crashed.
    public var crashedSaga: String? { arming.state.withLock { $0.crashedSaga } }

    /// Returns `configuration` with this trigger installed.
    public func configure(_ configuration: SagaEngine.Configuration) -> SagaEngine.Configuration {
        crashSwitch.configure(configuration)
    }

    /// Whether the engine, at `durable`, is at `point`.
    private static func matches(_ point: CrashPoint, _ durable: SagaDurablePoint) -> Bool {
        let deduct = durable.step == PlaceOrderSaga.deductStockStep
        let create = durable.step == PlaceOrderSaga.createOrderStep
        switch durable.moment {
        case .afterAppend:
            return point == .afterStart && durable.recordKinds.contains(.sagaStarted)
        case .beforeCall:
            return (point == .beforeCreate && create) || (point == .beforeRefund && deduct && durable.isCompensation)
        case .afterCall:
            return (point == .afterDeduct && deduct && !durable.isCompensation) || (point == .afterCreate && create)
                || (point == .afterRefund && deduct && durable.isCompensation)
        default:
            return false
        }
    }
}
