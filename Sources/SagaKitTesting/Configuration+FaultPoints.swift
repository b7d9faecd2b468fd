import SagaKit

extension SagaEngine.Configuration {
    /// This configuration with `hook` called at every durable point, after any hook already
    /// installed: the testing kit's tools (crash plans, crash switches, traces) compose.
    func addingFaultPoint(_ hook: @escaping @Sendable (FaultPoint) throws -> Void) -> Self {
        var configuration = self
        let previous = faultPoint
        configuration.faultPoint = { point in
            try previous?(point)
            try hook(point)
        }
        return configuration
    }
}
