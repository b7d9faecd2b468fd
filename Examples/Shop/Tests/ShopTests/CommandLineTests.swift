import Foundation
import GRDB
import ShopDemo
import ShopServices
import Testing

@Suite("saga-demo command line", .tags(.commandLine), .timeLimit(.minutes(2)))
struct DemoCommandTests {
    @Test func noArgumentsIsTheTourWithDefaults() throws {
        let command = try DemoCommand.parse([])
        #expect(command.mode == .tour)
        #expect(command.orders == 500 && command.concurrency == 16 && command.failureRate == 0.1 && command.seed == 42)
        #expect(command.dataDirectory == nil && command.crashPoint == nil && !command.json && !command.untilKilled)
    }

    @Test func parsesEveryOption() throws {
        let command = try DemoCommand.parse([
            "load", "--orders", "12", "--concurrency=3", "--fail-rate", "0.25", "--seed", "7", "--data-dir", "/tmp/d",
            "--crash-at", "after-deduct-logged", "--json", "--log-level", "debug",
        ])
        #expect(command.mode == .load)
        #expect(command.orders == 12 && command.concurrency == 3 && command.failureRate == 0.25 && command.seed == 7)
        #expect(command.dataDirectory == "/tmp/d" && command.crashPoint == .beforeCreate && command.json)
        #expect("\(command.logLevel)" == "debug")
    }

    @Test func loadAndMonolithDefaultToMoreOrders() throws {
        #expect(try DemoCommand.parse(["load"]).orders == 1000)
        #expect(try DemoCommand.parse(["monolith"]).orders == 1000)
        #expect(try DemoCommand.parse(["load", "--orders", "0"]).orders == 0)
        let killed = try DemoCommand.parse(["load", "--until-killed", "--data-dir", "d"])
        #expect(killed.untilKilled)
    }

    @Test func helpWinsOverEverythingElse() throws {
        #expect(try DemoCommand.parse(["--help"]).showsHelp)
        #expect(try DemoCommand.parse(["load", "-h", "--orders", "3"]).showsHelp)
        #expect(DemoCommand.usage.contains("--until-killed"))
    }

    @Test(arguments: [
        (["--bogus"], "unknown option '--bogus'; see 'saga-demo --help'"),
        (["-x"], "unknown option '-x'; see 'saga-demo --help'"),
        (["frobnicate"], "unknown subcommand 'frobnicate'; expected tour, load, check or monolith"),
        (["tour", "extra"], "unexpected argument 'extra'; the subcommand comes first"),
        (["--orders"], "option '--orders' needs a value"),
        (["--orders", "many"], "invalid value 'many' for --orders: expected a whole number from 0 to 10000000"),
        (["--orders", "-1"], "invalid value '-1' for --orders: expected a whole number from 0 to 10000000"),
        (["--orders", "1e3"], "invalid value '1e3' for --orders: expected a whole number from 0 to 10000000"),
        (["--concurrency", "0"], "invalid value '0' for --concurrency: expected a whole number from 1 to 4096"),
        (["--fail-rate", "1.5"], "invalid value '1.5' for --fail-rate: expected a number from 0 to 1"),
        (["--fail-rate", "nan"], "invalid value 'nan' for --fail-rate: expected a number from 0 to 1"),
        (["--fail-rate", "-0.1"], "invalid value '-0.1' for --fail-rate: expected a number from 0 to 1"),
        (["--seed", "-3"], "invalid value '-3' for --seed: expected a whole number from 0 to 18446744073709551615"),
        (
            ["--crash-at", "nowhere"],
            "unknown crash point 'nowhere'; expected one of after-start, after-deduct, before-create, after-create, before-refund, after-refund"
        ),
        (["--json", "--json"], "option '--json' is given twice"),
        (["--json=yes"], "option '--json' takes no value"),
        (["--data-dir="], "option '--data-dir' needs a non-empty path"),
        (
            ["--log-level", "loud"],
            "invalid value 'loud' for --log-level: expected trace, debug, info, notice, warning, error or critical"
        ),
        (["--until-killed", "--data-dir", "d"], "option '--until-killed' does not apply to 'saga-demo tour'"),
        (["monolith", "--crash-at", "before-create"], "option '--crash-at' does not apply to 'saga-demo monolith'"),
        (["check", "--data-dir", "d", "--orders", "3"], "option '--orders' does not apply to 'saga-demo check'"),
        (["check"], "'saga-demo check' needs --data-dir: the directory to check"),
        (["load", "--until-killed"], "'saga-demo load --until-killed' needs --data-dir, so that a restart can resume"),
        (
            ["load", "--until-killed", "--orders", "5", "--data-dir", "d"],
            "options '--orders' and '--until-killed' exclude each other"
        ),
    ])
    func badInputIsOneLineNamingTheProblem(arguments: [String], message: String) {
        #expect(throws: DemoUsageError(message)) { try DemoCommand.parse(arguments) }
        #expect(!message.contains("\n"))
    }
}

@Suite("Data directory", .tags(.commandLine), .timeLimit(.minutes(1)))
struct DataDirectoryTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }

    func message(_ path: String) -> String? {
        do {
            _ = try DataDirectory.prepare(path)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func createsAMissingDirectoryWithItsParents() throws {
        let path = directory.file("a/b/c")
        let data = try DataDirectory.prepare(path)
        #expect(data.isNew)
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue)
    }

    @Test func acceptsAnEmptyDirectoryAndADirectoryTheDemoCreated() async throws {
        let data = try DataDirectory.prepare(directory.path)
        #expect(data.isNew)
        let shop = try await ShopRuntime.open(data, mode: "test")
        try await shop.close()
        let again = try DataDirectory.prepare(directory.path)
        #expect(!again.isNew)
        #expect(FileManager.default.fileExists(atPath: again.path(of: ShopFiles.sagas + "-sagakit.lock")))
    }

    @Test func refusesAFile() throws {
        let file = directory.file("file")
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        #expect(message(file) == "the data directory '\(file)' is a file, not a directory")
        #expect(
            message(file + "/sub") == "cannot create the data directory '\(file)/sub': '\(file)' is not a directory")
    }

    @Test func refusesADirectoryWithFilesThatAreNotTheDemosAndTouchesNothing() throws {
        let notes = directory.file("notes.txt")
        try Data("mine".utf8).write(to: URL(fileURLWithPath: notes))
        try Data("also mine".utf8).write(to: URL(fileURLWithPath: directory.file("todo.txt")))
        #expect(
            message(directory.path)
                == "the data directory '\(directory.path)' holds files that are not saga-demo's ('notes.txt' and 1 more); use an empty or new directory"
        )
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == ["notes.txt", "todo.txt"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: notes)) == Data("mine".utf8))
    }

    @Test func refusesDemoFileNamesWithoutTheDemosMarker() throws {
        try Data().write(to: URL(fileURLWithPath: directory.file(ShopFiles.sagas)))
        #expect(
            message(directory.path)
                == "the data directory '\(directory.path)' holds 'sagas.sqlite' but no 'demo.sqlite', so saga-demo did not create it; use an empty or new directory"
        )
    }

    @Test func refusesADemoMarkerThatIsNotTheDemos() throws {
        let marker = directory.file(ShopFiles.demo)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: marker))
        #expect(message(directory.path)?.hasSuffix("is not an SQLite database; it was left untouched") == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: marker)) == Data("garbage".utf8))

        // Another application's SQLite database under the demo's name is refused as well, unchanged.
        try FileManager.default.removeItem(atPath: marker)
        let queue = try DatabaseQueue(path: marker)
        try queue.write { try $0.execute(sql: "CREATE TABLE invoices (id INTEGER PRIMARY KEY)") }
        try queue.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: marker))
        #expect(message(directory.path)?.contains("is an SQLite database of another application") == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: marker)) == before)
    }

    @Test func refusesAnUncreatablePath() {
        #expect(message("")?.contains("empty") == true)
        #expect(
            message("/proc/saga-demo-test")?.hasPrefix("cannot create the data directory '/proc/saga-demo-test'")
                == true)
    }

    @Test func freshPathsAreNewAndUnderTheTemporaryDirectory() {
        let one = DataDirectory.freshPath()
        #expect(one.hasPrefix(FileManager.default.temporaryDirectory.path))
        #expect(!FileManager.default.fileExists(atPath: one))
        #expect(one != DataDirectory.freshPath())
    }

    @Test func theDemosFileNamesAreRecognised() {
        for name in ["demo.sqlite", "sagas.sqlite-wal", "sagas.sqlite-sagakit.lock", "monolith.sqlite-shm"] {
            #expect(ShopFiles.isDemoFile(name), "\(name)")
        }
        for name in ["notes.txt", "sagas.sqlite.bak", ".DS_Store", "products.sqlite-journal2"] {
            #expect(!ShopFiles.isDemoFile(name), "\(name)")
        }
    }
}
