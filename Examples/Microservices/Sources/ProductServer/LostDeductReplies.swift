public import GRPCCore
public import Logging
import ProductContract
import Synchronization

/// A test-only fault: the first `count` `DeductStock` calls that succeed are applied, and each is then
/// answered with `UNAVAILABLE`, as if its reply had been lost on the way back.
///
/// The deduction is committed before the reply is replaced, so the caller sees exactly the case a
/// saga has to survive: a call whose outcome is unknown but which did take effect. A retry with the
/// same idempotency key must then find the deduction (a replay) instead of deducting again.
/// `product-service --lose-deduct-replies N` installs it; nothing else should.
///
/// ```swift
/// let server = ProductServerService(
///     products: products, logger: logger, interceptors: [LostDeductReplies(count: 1, logger: logger)])
/// ```
public final class LostDeductReplies: ServerInterceptor {
    private let remaining: Mutex<Int>
    private let logger: Logger

    /// Loses the replies of the first `count` successful deductions.
    public init(count: Int, logger: Logger) {
        self.remaining = Mutex(max(0, count))
        self.logger = logger
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
        guard context.descriptor == Product_ProductService.Method.DeductStock.descriptor,
            case .success = response.accepted
        else { return response }
        let lose = remaining.withLock { remaining in
            guard remaining > 0 else { return false }
            remaining -= 1
            return true
        }
        guard lose else { return response }
        logger.warning("test fault: the deduction was applied, its reply is lost")
        throw RPCError(code: .unavailable, message: "the reply was lost (test fault --lose-deduct-replies)")
    }
}
