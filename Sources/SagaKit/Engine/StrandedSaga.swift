/// A saga recovery had to leave alone, and why.
public struct StrandedSaga: Hashable, Sendable {
    /// The saga's id.
    public var id: String
    /// Its definition's name.
    public var name: String
    /// The fingerprint it was started with.
    public var fingerprint: String
    /// Why it was left (definition not registered, fingerprint mismatch, corrupt history).
    public var code: SagaError.Code
    /// A sentence saying what to do.
    public var message: String
}
