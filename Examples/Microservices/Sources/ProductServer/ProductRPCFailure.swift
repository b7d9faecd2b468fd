import GRPCCore
import GRPCProtobuf
import SagaKit
import ShopServices

/// A failure as the status a gRPC client receives: a code, a message, and a `google.rpc.ErrorInfo`
/// naming the stable failure type (see the table on ``ProductGRPCService``).
struct ProductRPCFailure {
    var status: GoogleRPCStatus

    init(code: RPCError.Code, message: String, reason: String) {
        status = GoogleRPCStatus(
            code: code, message: message,
            details: .errorInfo(reason: reason, domain: ProductGRPCService.errorDomain))
    }

    /// The status for an error the product service threw.
    init(_ error: any Error) {
        switch error {
        case let failure as NonRetryableError:
            self.init(code: Self.code(ofShopFailure: failure.type), message: failure.message, reason: failure.type)
        case is CancellationError:
            self.init(code: .cancelled, message: "the call was cancelled", reason: "Cancelled")
        default:
            // Not a business failure: the database could not be read or written. A retry with the
            // same key is safe.
            self.init(
                code: .unavailable, message: "the product database failed: \(error)", reason: "StorageUnavailable")
        }
    }

    static func invalidArgument(_ message: String, reason: String) -> GoogleRPCStatus {
        ProductRPCFailure(code: .invalidArgument, message: message, reason: reason).status
    }

    static func code(ofShopFailure type: String) -> RPCError.Code {
        switch type {
        case ShopFailure.unknownProduct: .notFound
        case ShopFailure.invalidQuantity, ShopFailure.invalidKey: .invalidArgument
        case ShopFailure.idempotencyKeyReused: .alreadyExists
        // Out of stock, a deduction cancelled by its refund's tombstone, and any business refusal
        // added later: definite refusals, nothing changed.
        default: .failedPrecondition
        }
    }
}
