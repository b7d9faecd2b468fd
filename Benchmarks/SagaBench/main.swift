import Foundation
import SagaKitSQLite

// saga-bench: SagaKit's throughput, latency, recovery, memory and log-growth figures.
//
//     swift run -c release saga-bench [--quick] [--sections LIST] [--dir PATH] [--json PATH]
//     swift run -c release --traits Postgres saga-bench --sections postgres --postgres-url URL
//
// See Docs/PERFORMANCE.md for the method and the figures from a CI-class machine.

struct Options {
    var quick = false
    var sections: Set<String> = ["throughput", "mix", "recovery", "memory", "growth"]
    var modes: Set<Mode> = [.engineOnly, .fullShop]
    var directory = (NSTemporaryDirectory() as NSString).appendingPathComponent("saga-bench")
    var json: String?
    var growthEvents: [Int]?
    var recoverySagas: Int?
    var memorySagas: Int?
    var seconds: Double?
    var repeats: Int?
    var concurrencies = [1, 16, 64, 256, 1024]
    var synchronous: [SQLiteSagaStore.Configuration.Synchronous] = [.full, .normal]
    var postgresURL = ProcessInfo.processInfo.environment["SAGAKIT_POSTGRES_URL"]
    var engines = [1, 2, 3]
    var postgresConcurrency = 256
    var commitsInFlight: Int?

    static let usage = """
        usage: saga-bench [options]
          --quick                 a fast smoke run: short loads, one repeat, small recovery/memory/growth sizes
          --sections LIST         comma-separated: throughput,mix,recovery,memory,growth (default: all), and
                                  postgres (only when asked; built with --traits Postgres, needs a server)
          --modes LIST            comma-separated: engine-only,full-shop,in-memory (default: the first two;
                                  in-memory is a diagnostic: the engine-only saga without a disk)
          --dir PATH              scratch directory for the databases (default: $TMPDIR/saga-bench); the raw
                                  commit rate is measured in the same directory
          --json PATH             also write every figure as JSON to PATH
          --seconds S             duration of each timed load (default 2, quick 0.4)
          --repeats N             timed loads per row; the row reports their median (default 3, quick 1)
          --concurrencies LIST    the throughput section's concurrencies (default 1,16,64,256,1024)
          --synchronous LIST      the throughput section's durability: full,normal (default both)
          --recovery-sagas N      in-flight sagas left for recovery (default 20000, quick 2000)
          --memory-sagas N        sagas held in flight for the memory figure (default 20000, quick 2000)
          --growth-events LIST    log sizes in events (default 0,100000,1000000,10000000; quick 0,100000)
          --postgres-url URL      the postgres section's server (default: $SAGAKIT_POSTGRES_URL)
          --engines LIST          the postgres section's engine process counts (default 1,2,3)
          --postgres-concurrency N  sagas in flight per engine process (default 256); the postgres section's
                                  window is --seconds (default 5, quick 1) after a warm-up of 1 s (quick 0.5)
          --commits-in-flight N   each engine's PostgresSagaStore maximumCommitsInFlight (default: the store's)
        """

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        func value(_ flag: String) throws -> String {
            guard let value = iterator.next() else { throw BenchError("\(flag) needs a value\n\(Self.usage)") }
            return value
        }
        func list(_ text: String) -> [String] { text.split(separator: ",").map { String($0) } }
        while let argument = iterator.next() {
            switch argument {
            case "--quick": quick = true
            case "--sections": sections = Set(list(try value(argument)))
            case "--modes":
                modes = Set(
                    try list(try value(argument)).map { name in
                        guard let mode = Mode(rawValue: name) else { throw BenchError("unknown mode \(name)") }
                        return mode
                    })
            case "--dir": directory = try value(argument)
            case "--json": json = try value(argument)
            case "--seconds": seconds = Double(try value(argument))
            case "--repeats": repeats = Int(try value(argument))
            case "--concurrencies":
                concurrencies = try list(try value(argument)).map { text in
                    guard let number = Int(text), number > 0 else {
                        throw BenchError("--concurrencies takes positive numbers, got \(text)")
                    }
                    return number
                }
            case "--synchronous":
                synchronous = try list(try value(argument)).map { name in
                    switch name {
                    case "full": return .full
                    case "normal": return .normal
                    default: throw BenchError("--synchronous takes full or normal, got \(name)")
                    }
                }
            case "--recovery-sagas": recoverySagas = Int(try value(argument))
            case "--memory-sagas": memorySagas = Int(try value(argument))
            case "--growth-events": growthEvents = list(try value(argument)).compactMap { Int($0) }
            case "--postgres-url": postgresURL = try value(argument)
            case "--engines":
                engines = try list(try value(argument)).map { text in
                    guard let number = Int(text), number > 0 else {
                        throw BenchError("--engines takes positive numbers, got \(text)")
                    }
                    return number
                }
            case "--postgres-concurrency": postgresConcurrency = max(1, Int(try value(argument)) ?? 256)
            case "--commits-in-flight":
                guard let count = Int(try value(argument)), count >= 1 else {
                    throw BenchError("--commits-in-flight takes a count of at least 1")
                }
                commitsInFlight = count
            case "--help", "-h":
                print(Self.usage)
                exit(0)
            default: throw BenchError("unknown argument \(argument)\n\(Self.usage)")
            }
        }
    }
}

struct Report: Codable {
    var machine: String
    var startedAt: Date
    var rawCommitsPerSecondAtStart: Double
    var throughput: [ThroughputRow] = []
    var recovery: RecoveryResult?
    var memory: MemoryResult?
    var growth: [ThroughputRow] = []
    var prune: PruneResult?
    var postgres: PostgresReport?
}

func format(_ value: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", value) }

func printHeader() {
    print(
        "| mode | sync | conc. | mix | log events | sagas/s | p50 ms | p99 ms | raw commits/s | × raw | log tx/saga | CPU µs/saga |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
}

func printRow(_ row: ThroughputRow) {
    print(
        "| \(row.mode) | \(row.synchronous) | \(row.concurrency) | \(row.failureMix ? "10% fail" : "-") | "
            + "\(row.logEventsBefore.map(String.init) ?? "-") | \(format(row.sagasPerSecond)) | \(format(row.p50MS, 2)) | "
            + "\(format(row.p99MS, 2)) | \(format(row.rawCommitsPerSecond)) | \(format(row.ratioToRaw, 2)) | "
            + "\(format(row.logCommitsPerSaga, 2)) | \(format(row.cpuMicrosPerSaga)) |")
    fflush(nil)
}

func machineDescription() -> String {
    let cpu =
        (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
        .first { $0.hasPrefix("model name") }.map {
            String($0.split(separator: ":").last ?? "").trimmingCharacters(in: .whitespaces)
        }
        ?? "unknown CPU"
    return
        "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(cpu), \(ProcessInfo.processInfo.physicalMemory >> 30) GiB"
}

func main() async throws {
    #if Postgres
        if CommandLine.arguments.dropFirst().first == "postgres-worker" {
            try await runPostgresWorker(Array(CommandLine.arguments.dropFirst(2)))
            return
        }
    #endif
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    if options.sections.contains("postgres") {
        #if Postgres
            guard options.postgresURL?.isEmpty == false else {
                throw BenchError("the postgres section needs --postgres-url URL or SAGAKIT_POSTGRES_URL")
            }
        #else
            throw BenchError(
                "the postgres section needs the Postgres trait: swift run -c release --traits Postgres saga-bench ...")
        #endif
    }
    let quick = options.quick
    let plan = ThroughputPlan(
        duration: .milliseconds(Int((options.seconds ?? (quick ? 0.4 : 2)) * 1000)),
        repeats: options.repeats ?? (quick ? 1 : 3),
        rawDuration: .milliseconds(quick ? 250 : 1000))
    try FileManager.default.createDirectory(atPath: options.directory, withIntermediateDirectories: true)
    let probe = try RawCommitProbe(directory: options.directory)
    let startRaw = try probe.measure(for: .seconds(quick ? 0.5 : 2))
    var report = Report(machine: machineDescription(), startedAt: Date(), rawCommitsPerSecondAtStart: startRaw)
    print("# saga-bench\n")
    print("machine: \(report.machine); scratch: \(options.directory)")
    print("raw single-row durable commit rate (WAL, synchronous=FULL) at start: \(format(startRaw)) commits/s\n")

    let modes: [Mode] = [.engineOnly, .fullShop, .inMemory].filter { options.modes.contains($0) }
    if options.sections.contains("throughput") {
        print("## Throughput and latency\n")
        printHeader()
        for mode in modes {
            for synchronous in options.synchronous {
                for concurrency in options.concurrencies {
                    let row = try await measureThroughput(
                        mode: mode, synchronous: synchronous, concurrency: concurrency, failureMix: false, plan: plan,
                        root: options.directory, probe: probe)
                    printRow(row)
                    report.throughput.append(row)
                }
            }
        }
        print()
    }
    if options.sections.contains("mix") {
        print("## 10% failure-and-refund mix (pivot fails for good, the deduction is compensated)\n")
        printHeader()
        for mode in modes {
            let row = try await measureThroughput(
                mode: mode, synchronous: .full, concurrency: 256, failureMix: true, plan: plan,
                root: options.directory, probe: probe)
            printRow(row)
            report.throughput.append(row)
        }
        print()
    }
    if options.sections.contains("recovery") {
        let count = options.recoverySagas ?? (quick ? 2000 : 20_000)
        let result = try await measureRecovery(count: count, root: options.directory, probe: probe)
        report.recovery = result
        print("## Recovery\n")
        print("| in-flight sagas | load records s | run() to all finished s | resumed/s | raw commits/s |")
        print("|---:|---:|---:|---:|---:|")
        print(
            "| \(result.sagas) | \(format(result.loadSeconds, 3)) | \(format(result.resumeToFinishedSeconds, 3)) | "
                + "\(format(result.resumedPerSecond)) | \(format(result.rawCommitsPerSecond)) |\n")
        fflush(nil)
    }
    if options.sections.contains("memory") {
        let count = options.memorySagas ?? (quick ? 2000 : 20_000)
        let result = try await measureMemory(count: count, root: options.directory)
        report.memory = result
        print("## Memory per in-flight saga\n")
        print("| sagas in flight | RSS before MiB | RSS in flight MiB | bytes per saga |")
        print("|---:|---:|---:|---:|")
        print(
            "| \(result.sagas) | \(format(Double(result.rssBeforeBytes) / 1_048_576, 1)) | "
                + "\(format(Double(result.rssInFlightBytes) / 1_048_576, 1)) | \(format(result.bytesPerSaga)) |\n")
        fflush(nil)
    }
    if options.sections.contains("growth") {
        let sizes = options.growthEvents ?? (quick ? [0, 100_000] : [0, 100_000, 1_000_000, 10_000_000])
        print("## Log growth (engine-only, synchronous=FULL, concurrency 256; history generated with SQL)\n")
        printHeader()
        for size in sizes {
            let directory = try scratch(options.directory, "growth")
            let path = (directory as NSString).appendingPathComponent("sagas.sqlite")
            let events = try await generateFinishedLog(path: path, events: size)
            let row = try await measureThroughput(
                mode: .engineOnly, synchronous: .full, concurrency: 256, failureMix: false, plan: plan,
                root: options.directory, probe: probe, existingLog: (path, events))
            printRow(row)
            report.growth.append(row)
            if size == sizes.last, size > 0 {
                let store = try SQLiteSagaStore(path: path)
                let clock = ContinuousClock()
                let start = clock.now
                let pruned = try await store.prune(
                    finishedBefore: Date().addingTimeInterval(-86_400), batchSize: 10_000)
                let seconds = (clock.now - start).seconds
                try await store.close()
                report.prune = PruneResult(eventsBefore: events, sagasPruned: pruned, seconds: seconds)
                var after = try await measureThroughput(
                    mode: .engineOnly, synchronous: .full, concurrency: 256, failureMix: false, plan: plan,
                    root: options.directory, probe: probe, existingLog: (path, 0))
                after.mode = "engine-only (pruned)"
                printRow(after)
                report.growth.append(after)
                print("\nprune(finishedBefore:) deleted \(pruned) sagas (\(events) events) in \(format(seconds, 1)) s")
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
        print()
    }
    #if Postgres
        if options.sections.contains("postgres"), let url = options.postgresURL {
            report.postgres = try await measurePostgres(
                PostgresPlan(
                    url: url, engines: options.engines, concurrency: options.postgresConcurrency,
                    commitsInFlight: options.commitsInFlight, warmup: quick ? 0.5 : 1,
                    duration: options.seconds ?? (quick ? 1 : 5),
                    repeats: options.repeats ?? (quick ? 1 : 3), probeDuration: .seconds(quick ? 1 : 3)))
        }
    #endif
    if let json = options.json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try encoder.encode(report).write(to: URL(fileURLWithPath: json))
        print("JSON written to \(json)")
    }
}

do {
    try await main()
} catch {
    FileHandle.standardError.write(Data("saga-bench: \(error)\n".utf8))
    exit(1)
}
