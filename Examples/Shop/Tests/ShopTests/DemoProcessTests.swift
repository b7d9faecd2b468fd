import Foundation
import ShopDemo
import ShopServices
import Subprocess
import Testing

/// The built `saga-demo` executable, when the build put it beside the test bundle (`swift test`
/// builds every product of the package).
let demoExecutable: URL? = {
    let candidate = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("saga-demo")
    return FileManager.default.isExecutableFile(atPath: candidate.path) ? candidate : nil
}()

/// `saga-demo` as a process: exit statuses, one-line errors, and a SIGKILL in the middle of a load.
@Suite(
    "saga-demo process", .tags(.commandLine), .timeLimit(.minutes(2)),
    .enabled(if: demoExecutable != nil, "the saga-demo executable is not built beside the tests"))
struct DemoProcessTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }

    func demo(_ arguments: [String]) async throws -> ProcessRun {
        try await runProcess(try #require(demoExecutable), arguments)
    }

    @Test(arguments: [["--orders", "x"], ["--frobnicate"], ["load", "--fail-rate", "2"]])
    func badArgumentsExitWithStatus2AndOneLine(arguments: [String]) async throws {
        let run = try await demo(arguments)
        #expect(run.status == 2)
        #expect(run.stdout.isEmpty)
        #expect(run.stderr.hasPrefix("saga-demo: error: ") && run.stderr.filter { $0 == "\n" }.count == 1)
    }

    @Test func aForeignDataDirectoryExitsWithStatus1AndIsLeftAlone() async throws {
        try Data("mine".utf8).write(to: URL(fileURLWithPath: directory.file("notes.txt")))
        let run = try await demo(["--data-dir", directory.path])
        #expect(run.status == 1)
        #expect(
            run.stderr.hasPrefix("saga-demo: error: the data directory") && run.stderr.filter { $0 == "\n" }.count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["notes.txt"])
    }

    @Test func helpPrintsUsage() async throws {
        let run = try await demo(["--help"])
        #expect(run.status == 0 && run.stdout.hasPrefix("usage: saga-demo"))
    }

    /// `load --crash-at` kills its own process with SIGKILL at the point; `check` on the directory
    /// resumes what it left and finds the invariant holding.
    @Test func aKilledLoadIsResumedByTheNextRun() async throws {
        let data = directory.file("data")
        let killed = try await demo([
            "load", "--data-dir", data, "--orders", "200", "--crash-at", "before-create", "--json",
        ])
        #expect(killed.reason == .signaled(SIGKILL), "\(killed.reason)")
        #expect(killed.stderr.contains("crashing on purpose"))

        let check = try await demo(["check", "--data-dir", data, "--json"])
        #expect(check.status == 0, "\(check.stderr)")
        let output = try JSONDecoder().decode(CheckJSON.self, from: Data(check.stdout.utf8))
        #expect(output.resumed.resumed >= 1)
        #expect(output.resumed.completed + output.resumed.compensated == output.resumed.resumed)
        #expect(output.unfinishedInLog == 0 && output.invariant.holds)
        #expect(output.completedSagas == output.ordersInDatabase)
    }

    struct CheckJSON: Decodable {
        var resumed: ResumeReport
        var unfinishedInLog: Int
        var completedSagas: Int
        var ordersInDatabase: Int
        var invariant: StockInvariant
    }
}
