import Testing

extension Tag {
    /// Calls over a real gRPC connection to an in-process server.
    @Tag static var grpc: Self
    /// Runs the built `product-service` executable.
    @Tag static var process: Self
}
