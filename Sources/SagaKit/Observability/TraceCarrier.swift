import Instrumentation
import ServiceContextModule

/// Moves a trace context in and out of a saga's `saga.started` metadata, under `trace.` keys.
enum TraceCarrier {
    static let prefix = "trace."

    struct DictionaryInjector: Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
            carrier[TraceCarrier.prefix + key] = value
        }
    }

    struct DictionaryExtractor: Extractor {
        func extract(key: String, from carrier: [String: String]) -> String? {
            carrier[TraceCarrier.prefix + key]
        }
    }

    static func inject(_ context: ServiceContext, using instrument: any Instrument) -> [String: String] {
        var carrier: [String: String] = [:]
        instrument.inject(context, into: &carrier, using: DictionaryInjector())
        return carrier
    }

    static func extract(_ metadata: [String: String], using instrument: any Instrument) -> ServiceContext {
        var context = ServiceContext.topLevel
        instrument.extract(metadata, into: &context, using: DictionaryExtractor())
        return context
    }
}
