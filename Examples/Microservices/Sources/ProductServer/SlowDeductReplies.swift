public import GRPCCore
import ProductContract

/// A test-only fault: every `DeductStock` call is applied at once and answered `delay` later, as over
/// a slow network, so that a test can find sagas in the middle of their deduction (to pause or kill the
/// order-service running them). `product-service --deduct-reply-delay-ms N` installs it; nothing else
/// should.
///
/// ```swift
/// let server = ProductServerService(
///     products: products, logger: logger, interceptors: [SlowDeductReplies(delay: .milliseconds(200))])
/// ```
public struct SlowDeductReplies: ServerInterceptor {
    let delay: Duration

    /// Delays the reply of every deduction by `delay`.
    public init(delay: Duration) {
        self.delay = delay
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next:
            @concurrent @Sendable (StreamingServerRequest<Input>, ServerContext) async throws
            -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        // A unary handler has run to completion, its transaction committed, when `next` returns.
        let response = try await next(request, context)
        if context.descriptor == Product_ProductService.Method.DeductStock.descriptor {
            try await Task.sleep(for: delay)
        }
        return response
    }
}
