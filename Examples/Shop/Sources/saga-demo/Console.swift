import Foundation
import ShopDemo
import ShopServices
import Synchronization

/// Unbuffered output: every line reaches its file descriptor at once, so a reader sees it even if the
/// process is killed right after (the `load --until-killed` mode is meant to be killed).
enum Console {
    static func out(_ line: String = "") {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func err(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// The one line every failure prints: `saga-demo: error: …`, with any line break flattened.
    static func error(_ message: String) {
        let flat = message.split(whereSeparator: \.isNewline).joined(separator: " ")
        err("saga-demo: error: \(flat)\n")
    }

    /// Encodes a value as one line of JSON on standard output.
    static func json(_ value: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        if let data = try? encoder.encode(value) {
            out(String(decoding: data, as: UTF8.self))
        }
    }
}

/// A progress bar on standard error, redrawn in place with a carriage return at most ten times a
/// second.
final class ProgressBar: Sendable {
    private struct State {
        var lastDraw: ContinuousClock.Instant?
        var drawn = false
    }

    private let state = Mutex(State())
    private let width = 30

    func update(_ progress: LoadProgress) {
        let now = ContinuousClock.now
        let draw = state.withLock { state -> Bool in
            let due = state.lastDraw.map { now - $0 >= .milliseconds(100) } ?? true
            let last = progress.total.map { progress.finished >= $0 } ?? false
            guard due || last else { return false }
            state.lastDraw = now
            state.drawn = true
            return true
        }
        guard draw, let total = progress.total, total > 0 else { return }
        let fraction = Double(progress.finished) / Double(total)
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let rate = progress.elapsed > 0 ? Double(progress.finished) / progress.elapsed : 0
        Console.err(
            "\r  [\(bar)] \(progress.finished)/\(total) \(Int(fraction * 100))%  "
                + "\(progress.completed) completed, \(progress.compensated) compensated  "
                + "\(Int(rate.rounded())) sagas/s ")
    }

    func finish() {
        if state.withLock({ $0.drawn }) { Console.err("\n") }
    }
}
