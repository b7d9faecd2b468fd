package import Foundation

/// Operator actions decided from the log alone. A retry and a cancellation go through an execution
/// and its machine like every other record; a resolution needs no definition (a saga whose
/// definition is gone can still be resolved), so it is decided here from the records themselves.
extension SagaStateMachine {
    /// The append that resolves a saga, as ``resolution(of:records:note:at:checked:)`` decides it.
    package struct Resolution: Sendable, Equatable {
        /// The `operator.resolved` record, at the sequence right after the saga's last record.
        package var record: SagaLogRecord
        /// The cause the saga keeps as its last error.
        package var lastError: RecordedError?
    }

    /// Resolves a saga that needs attention, from its records (ordered by sequence).
    ///
    /// A saga needs attention exactly while its last record is `saga.needs_attention`: only an
    /// operator action may follow it. The resolution goes at the next sequence, so appending it is a
    /// compare-and-set: a record anyone appended since `records` were read takes that sequence, and
    /// the store refuses a second one. Returns `nil` when the saga is not waiting for attention.
    /// `checked: false` skips the check (the testing kit's planted bug).
    package static func resolution(
        of sagaID: String, records: [SagaLogRecord], note: String, at now: Date, checked: Bool = true
    ) -> Resolution? {
        guard let last = records.last, last.kind == .sagaNeedsAttention || !checked else { return nil }
        let record = SagaLogRecord(
            sagaID: sagaID, sequence: last.sequence + 1, timestamp: now, kind: .operatorResolved, note: note)
        return Resolution(record: record, lastError: SagaCause.folding(records).error)
    }
}
