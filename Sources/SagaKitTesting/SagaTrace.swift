import SagaKit
import Synchronization

/// What happened to sagas under test, as the engine's hooks saw it: every participant call and
/// every durable log write, in order, across engines (a crash and the recovery after it).
public final class SagaTrace: Sendable {
    /// One observed event.
    public struct Event: Hashable, Sendable, CustomStringConvertible {
        /// What kind of event.
        public enum Kind: Hashable, Sendable {
            /// A participant call is about to be made.
            case callStarted
            /// A participant call returned successfully.
            case callSucceeded
            /// A participant call failed and the engine learned it.
            case callFailed
            /// Records were durably appended.
            case appended
        }

        /// The saga concerned.
        public var sagaID: String
        /// What happened.
        public var kind: Kind
        /// The step called, for calls.
        public var step: String?
        /// Whether the call was a compensation.
        public var isCompensation: Bool
        /// The record kinds appended, for appends.
        public var records: [String]

        public var description: String {
            switch kind {
            case .callStarted: "call \(isCompensation ? "compensation of " : "")\(step ?? "")"
            case .callSucceeded: "return \(isCompensation ? "compensation of " : "")\(step ?? "")"
            case .callFailed: "fail \(isCompensation ? "compensation of " : "")\(step ?? "")"
            case .appended: "append \(records.joined(separator: "+"))"
            }
        }
    }

    private let events = Mutex<[Event]>([])

    /// Creates an empty trace.
    public init() {}

    /// The events so far, in order.
    public var all: [Event] { events.withLock { $0 } }

    /// The events of one saga, in order.
    public func events(of sagaID: String) -> [Event] { all.filter { $0.sagaID == sagaID } }

    func record(_ point: FaultPoint) {
        let event: Event
        switch point.moment {
        case .beforeCall:
            event = Event(
                sagaID: point.sagaID, kind: .callStarted, step: point.step, isCompensation: point.isCompensation,
                records: [])
        case .afterCall:
            event = Event(
                sagaID: point.sagaID, kind: .callSucceeded, step: point.step, isCompensation: point.isCompensation,
                records: [])
        case .afterAppend:
            event = Event(
                sagaID: point.sagaID, kind: .appended, step: nil, isCompensation: false, records: point.records)
        case .callFailed:
            event = Event(
                sagaID: point.sagaID, kind: .callFailed, step: point.step, isCompensation: point.isCompensation,
                records: [])
        case .beforeAppend:
            return
        }
        events.withLock { $0.append(event) }
    }
}

/// The durable points of an engine's execution, in the order they were reached, and a switch that
/// crashes the engine at one of them.
final class FaultPointRecorder: Sendable {
    struct State {
        var points: [String] = []
        var crashAt: Int?
        /// When set, only this saga's points count towards `crashAt`.
        var crashSaga: String?
        var counted = 0
        var crashed: String?
    }

    private let state = Mutex(State())
    let trace: SagaTrace

    init(trace: SagaTrace, crashAt: Int? = nil, inSaga saga: String? = nil) {
        self.trace = trace
        state.withLock {
            $0.crashAt = crashAt
            $0.crashSaga = saga
        }
    }

    var points: [String] { state.withLock { $0.points } }
    var crashed: String? { state.withLock { $0.crashed } }

    func configure(_ configuration: SagaEngine.Configuration) -> SagaEngine.Configuration {
        configuration.addingFaultPoint { [self] point in try self.hit(point) }
    }

    private func hit(_ point: FaultPoint) throws {
        if point.moment == .callFailed {
            trace.record(point)
            return
        }
        let crash = state.withLock { state -> Bool in
            if state.crashed != nil { return true }
            let counts = state.crashSaga.map { $0 == point.sagaID } ?? true
            if counts {
                if state.crashAt == state.counted {
                    state.crashed = "\(state.counted + 1): \(point)"
                    return true
                }
                state.counted += 1
            }
            state.points.append(point.description)
            return false
        }
        if crash { throw SimulatedCrash() }
        trace.record(point)
    }
}
