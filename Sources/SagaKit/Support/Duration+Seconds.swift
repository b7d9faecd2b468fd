extension Duration {
    /// The duration in seconds, as a `Double`: for `TimeInterval` APIs, jitter and metrics. The one
    /// conversion every SagaKit target uses.
    package var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}
