import Foundation

#if Postgres
    import Logging
    import PostgresNIO
    import SagaKit
    import SagaKitPostgres
    import Subprocess
    import Synchronization
#endif

// The `postgres` section: several engine processes on one PostgreSQL database. The figures' types are
// compiled in every build (they are part of the JSON report); the measuring code only with the trait.

/// The `postgres` section's figures.
struct PostgresReport: Codable, Sendable {
    /// `server_version`, `fsync`, `synchronous_commit`, `wal_sync_method` as the server reported them.
    var server: [String: String]
    var concurrencyPerEngine: Int
    var warmupSeconds: Double
    var windowSeconds: Double
    var rows: [PostgresRow] = []
}

/// One engine count: the median of its repeated loads, latencies pooled over them.
struct PostgresRow: Codable, Sendable {
    var engines: Int
    /// Total sagas per second of each repeat (the sum over its engines).
    var repeatsSagasPerSecond: [Double]
    var sagasPerSecond: Double
    var p50MS: Double
    var p99MS: Double
    /// PostgreSQL's single-row durable commit rate, measured just before this row's loads.
    var singleRowCommitsPerSecond: Double
    var ratioToSingleRow: Double { singleRowCommitsPerSecond > 0 ? sagasPerSecond / singleRowCommitsPerSecond : 0 }
    /// The stores' group commits per saga, summed over the engines (4 appends per saga without batching).
    var transactionsPerSaga: Double
    /// CPU time of the engine processes per saga, in microseconds.
    var engineCPUMicrosPerSaga: Double
    /// CPU time of the PostgreSQL server's processes per saga, in microseconds (`nil` when the server's
    /// processes cannot be read from `/proc`).
    var postgresCPUMicrosPerSaga: Double?
    /// Busy cores of the whole machine during the windows (from `/proc/stat`), averaged over the repeats.
    var machineBusyCores: Double
    /// Busy cores not accounted for by the engines or the server (other processes on a shared machine).
    var otherBusyCores: Double?
    var sagasTimed: Int
    var failures: Int
}

#if Postgres
    /// How the `postgres` section runs.
    struct PostgresPlan: Sendable {
        var url: String
        var engines: [Int]
        var concurrency: Int
        /// Each engine's `maximumCommitsInFlight`, when the command line set it.
        var commitsInFlight: Int?
        var warmup: Double
        var duration: Double
        var repeats: Int
        var probeDuration: Duration
    }

    /// Measures PostgreSQL's single-row commit rate and the engines' throughput and latency with each
    /// engine count of the plan, each engine a `saga-bench postgres-worker` process; prints the table.
    ///
    /// Every load runs on a schema of its own, dropped after it; the probe's table lives in the run's own
    /// schema, dropped at the end.
    func measurePostgres(_ plan: PostgresPlan) async throws -> PostgresReport {
        let configuration = try PostgresSagaStore.Configuration(url: plan.url)
        guard configuration.tls != .require else {
            throw BenchError("the postgres section connects without TLS: use sslmode=disable or prefer")
        }
        let run = "saga_bench_" + UUID().uuidString.lowercased().prefix(8)
        let logger = silentLogger
        let connection = try await PostgresConnection.connect(
            configuration: .init(
                host: configuration.host, port: configuration.port, username: configuration.username,
                password: configuration.password, database: configuration.database, tls: .disable),
            id: 1, logger: logger)
        var schemas = [run]
        do {
            let report = try await measureSection(plan, run: run, connection: connection) { schemas.append($0) }
            try await dropSchemas(schemas, connection)
            try? await connection.close()
            return report
        } catch {
            try? await dropSchemas(schemas, connection)
            try? await connection.close()
            throw error
        }
    }

    /// The section's body, on the parent's connection; `using` learns each load's schema before it is made.
    private func measureSection(
        _ plan: PostgresPlan, run: String, connection: PostgresConnection, using schema: (String) -> Void
    ) async throws -> PostgresReport {
        let logger = silentLogger
        _ = try await connection.query("SET synchronous_commit = on", logger: logger).collect()
        var server: [String: String] = [:]
        for setting in ["server_version", "fsync", "synchronous_commit", "wal_sync_method"] {
            for try await value in try await connection.query(
                PostgresQuery(unsafeSQL: "SHOW \(setting)"), logger: logger
            )
            .decode(String.self) {
                server[setting] = value
            }
        }
        var backend = 0
        for try await pid in try await connection.query("SELECT pg_backend_pid()", logger: logger).decode(Int32.self) {
            backend = Int(pid)
        }
        // The postmaster is the parent of every server process; nil when the server is not on this machine
        // (no local process of that pid, or one that is not PostgreSQL's).
        let postmaster = ProcessStat(pid: backend).flatMap { $0.command == "postgres" ? $0.parent : nil }
        _ = try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(run)"), logger: logger).collect()
        _ = try await connection.query(
            PostgresQuery(
                unsafeSQL: "CREATE TABLE \(run).single_row (id bigserial PRIMARY KEY, value bigint NOT NULL)"),
            logger: logger
        ).collect()

        var report = PostgresReport(
            server: server, concurrencyPerEngine: plan.concurrency, warmupSeconds: plan.warmup,
            windowSeconds: plan.duration)
        print("## PostgreSQL: several engines on one database\n")
        print(
            "server \(server["server_version"] ?? "?"), fsync=\(server["fsync"] ?? "?"), synchronous_commit="
                + "\(server["synchronous_commit"] ?? "?"), wal_sync_method=\(server["wal_sync_method"] ?? "?"); "
                + "\(plan.concurrency) sagas in flight per engine, \(format(plan.warmup, 1)) s warm-up, "
                + "\(format(plan.duration, 1)) s window, \(plan.repeats) repeat(s)\n")
        printPostgresHeader()
        for engines in plan.engines {
            let single = try await singleRowCommitRate(connection, table: "\(run).single_row", for: plan.probeDuration)
            var rates: [Double] = []
            var latencies: [Int] = []
            var sagas = 0
            var failures = 0
            var transactions = 0
            var engineCPU = 0.0
            var serverCPU: Double? = 0
            var busy: [Double] = []
            var other: [Double] = []
            for repeatIndex in 0..<plan.repeats {
                let loadSchema = "\(run)_e\(engines)_r\(repeatIndex)"
                schema(loadSchema)
                let load = try await runLoad(plan, engines: engines, schema: loadSchema, postmaster: postmaster)
                try await checkDrained(loadSchema, connection)
                try await dropSchemas([loadSchema], connection)
                rates.append(load.workers.reduce(0) { $0 + (Double($1.sagas) / max($1.seconds, 1e-9)) })
                for worker in load.workers {
                    latencies += worker.latenciesMicros
                    sagas += worker.sagas
                    failures += worker.failures
                    transactions += worker.transactions
                    engineCPU += worker.cpuSeconds
                }
                let cores = load.cpu.machineBusyCores
                busy.append(cores)
                let windowEngines = load.workers.reduce(0) { $0 + $1.cpuSeconds } / plan.duration
                if let server = load.cpu.serverSeconds {
                    serverCPU = serverCPU.map { $0 + server }
                    other.append(max(0, cores - windowEngines - server / plan.duration))
                } else {
                    serverCPU = nil
                }
            }
            latencies.sort()
            let sorted = latencies.map { Double($0) / 1000 }
            let row = PostgresRow(
                engines: engines, repeatsSagasPerSecond: rates, sagasPerSecond: median(rates),
                p50MS: percentile(sorted, 0.5), p99MS: percentile(sorted, 0.99), singleRowCommitsPerSecond: single,
                transactionsPerSaga: sagas > 0 ? Double(transactions) / Double(sagas) : 0,
                engineCPUMicrosPerSaga: sagas > 0 ? engineCPU * 1e6 / Double(sagas) : 0,
                postgresCPUMicrosPerSaga: serverCPU.map { sagas > 0 ? $0 * 1e6 / Double(sagas) : 0 },
                machineBusyCores: busy.reduce(0, +) / Double(max(1, busy.count)),
                otherBusyCores: serverCPU == nil ? nil : other.reduce(0, +) / Double(max(1, other.count)),
                sagasTimed: sagas, failures: failures)
            printPostgresRow(row)
            report.rows.append(row)
        }
        print(
            "\nPostgreSQL's single-row durable commit rate (one connection, autocommit INSERT of one row, "
                + "synchronous_commit=on): \(report.rows.map { format($0.singleRowCommitsPerSecond) }.joined(separator: ", ")) "
                + "commits/s, measured before each row\n")
        return report
    }

    func printPostgresHeader() {
        print(
            "| engines | sagas/s | p50 ms | p99 ms | PG single-row commits/s | sagas/s ÷ commits/s | PG tx/saga | "
                + "engine CPU µs/saga | PG CPU µs/saga | busy cores | other cores | sagas/s per repeat |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    }

    func printPostgresRow(_ row: PostgresRow) {
        print(
            "| \(row.engines) | \(format(row.sagasPerSecond)) | \(format(row.p50MS, 2)) | \(format(row.p99MS, 2)) | "
                + "\(format(row.singleRowCommitsPerSecond)) | \(format(row.ratioToSingleRow, 2)) | "
                + "\(format(row.transactionsPerSaga, 3)) | \(format(row.engineCPUMicrosPerSaga)) | "
                + "\(row.postgresCPUMicrosPerSaga.map { format($0) } ?? "-") | \(format(row.machineBusyCores, 2)) | "
                + "\(row.otherBusyCores.map { format($0, 2) } ?? "-") | "
                + "\(row.repeatsSagasPerSecond.map { format($0) }.joined(separator: ", ")) |"
                + (row.failures > 0 ? " \(row.failures) sagas failed" : ""))
        fflush(nil)
    }

    /// One autocommit `INSERT` of one row at a time for about `duration`: PostgreSQL's durable commit rate
    /// on this connection (each commit waits for its WAL flush with `synchronous_commit = on`).
    func singleRowCommitRate(_ connection: PostgresConnection, table: String, for duration: Duration) async throws
        -> Double
    {
        let logger = silentLogger
        let clock = ContinuousClock()
        let start = clock.now
        var commits = 0
        while commits < 20 || clock.now - start < duration {
            _ = try await connection.query(
                "INSERT INTO \(unescaped: table) (value) VALUES (\(commits))", logger: logger
            ).collect()
            commits += 1
        }
        let rate = Double(commits) / (clock.now - start).seconds
        _ = try await connection.query(PostgresQuery(unsafeSQL: "TRUNCATE \(table)"), logger: logger).collect()
        return rate
    }

    /// Fails unless every saga of the load finished and every engine removed its row when its store closed.
    func checkDrained(_ schema: String, _ connection: PostgresConnection) async throws {
        let rows = try await connection.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT (SELECT count(*) FROM \(schema).sagakit_sagas WHERE status <> 'completed'),
                           (SELECT count(*) FROM \(schema).sagakit_engines)
                    """), logger: silentLogger)
        for try await (unfinished, engines) in rows.decode((Int, Int).self) where unfinished != 0 || engines != 0 {
            throw BenchError(
                "after the load on \(schema): \(unfinished) sagas not completed, \(engines) engine rows left")
        }
    }

    func dropSchemas(_ schemas: [String], _ connection: PostgresConnection) async throws {
        for schema in schemas {
            _ = try await connection.query(
                PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \(schema) CASCADE"), logger: silentLogger
            ).collect()
        }
    }

    /// What one load produced: each engine's report and the CPU sampled over the window.
    struct PostgresLoad: Sendable {
        var workers: [PostgresWorkerReport]
        var cpu: WindowCPU
    }

    /// CPU use over the timed window, sampled by the parent.
    struct WindowCPU: Sendable {
        var machineBusyCores: Double
        /// CPU seconds of the server's processes (the postmaster and its children), when readable.
        var serverSeconds: Double?
    }

    /// Starts `engines` worker processes on `schema`, waits until each has opened the log, says go to all
    /// at once, and collects their reports; samples the machine's and the server's CPU over the window.
    func runLoad(_ plan: PostgresPlan, engines: Int, schema: String, postmaster: Int?) async throws -> PostgresLoad {
        let executable = try await currentExecutable()
        let barrier = StartBarrier(parties: engines + 1)
        enum Part: Sendable {
            case worker(Int, PostgresWorkerReport)
            case cpu(WindowCPU)
        }
        return try await withThrowingTaskGroup(of: Part.self) { group in
            for worker in 0..<engines {
                group.addTask {
                    do {
                        return .worker(
                            worker,
                            try await runWorker(
                                executable, plan: plan, worker: worker, schema: schema, barrier: barrier))
                    } catch {
                        barrier.fail(error)
                        throw error
                    }
                }
            }
            group.addTask {
                try await barrier.arrive()
                let clock = ContinuousClock()
                try await clock.sleep(for: .milliseconds(Int(plan.warmup * 1000)))
                let machineBefore = MachineCPU.read()
                let serverBefore = postmaster.map(serverProcessCPU)
                try await clock.sleep(for: .milliseconds(Int(plan.duration * 1000)))
                let machineAfter = MachineCPU.read()
                let serverAfter = postmaster.map(serverProcessCPU)
                var server: Double?
                if let serverBefore, let serverAfter {
                    server = serverAfter.reduce(0.0) { sum, entry in
                        sum + (entry.value - (serverBefore[entry.key] ?? 0))
                    }
                }
                return .cpu(
                    WindowCPU(machineBusyCores: machineAfter.busyCores(since: machineBefore), serverSeconds: server))
            }
            var reports: [Int: PostgresWorkerReport] = [:]
            var cpu = WindowCPU(machineBusyCores: 0, serverSeconds: nil)
            for try await part in group {
                switch part {
                case .worker(let index, let report): reports[index] = report
                case .cpu(let window): cpu = window
                }
            }
            return PostgresLoad(workers: reports.keys.sorted().compactMap { reports[$0] }, cpu: cpu)
        }
    }

    /// Runs one `saga-bench postgres-worker` process to its end and returns its report.
    func runWorker(
        _ executable: Executable, plan: PostgresPlan, worker: Int, schema: String, barrier: StartBarrier
    ) async throws -> PostgresWorkerReport {
        let arguments =
            [
                "postgres-worker", "--url", plan.url, "--schema", schema, "--worker", "\(worker)",
                "--concurrency", "\(plan.concurrency)", "--warmup", "\(plan.warmup)", "--duration", "\(plan.duration)",
            ] + (plan.commitsInFlight.map { ["--commits-in-flight", "\($0)"] } ?? [])
        let result = try await Subprocess.run(
            executable, arguments: Arguments(arguments), input: .inputWriter, output: .sequence,
            error: .string(limit: 1 << 20)
        ) { execution -> PostgresWorkerReport? in
            var lines = execution.standardOutput.strings(bufferingPolicy: .unbounded).makeAsyncIterator()
            guard let ready = try await lines.next(), ready == "ready" else { return nil }
            try await barrier.arrive()
            _ = try await execution.standardInputWriter.write("go\n")
            try await execution.standardInputWriter.finish()
            var report: PostgresWorkerReport?
            while let line = try await lines.next() {
                if let decoded = try? JSONDecoder().decode(PostgresWorkerReport.self, from: Data(line.utf8)) {
                    report = decoded
                }
            }
            return report
        }
        guard result.terminationStatus.isSuccess, let report = result.closureResult else {
            throw BenchError(
                "engine process \(worker) ended with \(result.terminationStatus) and no report: "
                    + result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return report
    }

    /// This executable, as Subprocess names it: the workers are the same binary in another mode.
    func currentExecutable() async throws -> Executable {
        let path =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let url = URL(fileURLWithPath: path)
        // `Executable.path` takes a swift-system `FilePath`; looking the name up in its own directory
        // yields the same path without importing that module.
        return .path(
            try await Executable.name(url.lastPathComponent)
                .resolveExecutablePath(in: .custom(["PATH": url.deletingLastPathComponent().path])))
    }

    /// Releases its parties together once all have arrived; a failure releases them all with that error.
    final class StartBarrier: Sendable {
        private struct State {
            var waiting: [CheckedContinuation<Void, any Error>] = []
            var arrived = 0
            var failure: (any Error)?
            var open = false
        }
        private let parties: Int
        private let state = Mutex(State())

        init(parties: Int) { self.parties = parties }

        /// Waits until every party has arrived; throws the failure that broke the barrier.
        func arrive() async throws {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (release, failure) = state.withLock {
                    state -> ([CheckedContinuation<Void, any Error>], (any Error)?) in
                    if let failure = state.failure { return ([continuation], failure) }
                    state.arrived += 1
                    state.waiting.append(continuation)
                    guard state.arrived >= parties else { return ([], nil) }
                    state.open = true
                    defer { state.waiting = [] }
                    return (state.waiting, nil)
                }
                for waiter in release {
                    if let failure { waiter.resume(throwing: failure) } else { waiter.resume() }
                }
            }
        }

        /// Breaks the barrier: every waiting and later party throws `error`, unless it already opened.
        func fail(_ error: any Error) {
            let waiting = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
                guard !state.open, state.failure == nil else { return [] }
                state.failure = error
                defer { state.waiting = [] }
                return state.waiting
            }
            for waiter in waiting { waiter.resume(throwing: error) }
        }
    }

    /// The fields of `/proc/PID/stat` the section needs.
    struct ProcessStat {
        /// The executable's name (`comm`), e.g. `postgres`.
        var command: String
        var parent: Int
        /// User + system CPU time, in seconds.
        var cpuSeconds: Double

        init?(pid: Int) {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let beforeName = stat.firstIndex(of: "("), let afterName = stat.range(of: ")", options: .backwards)
            else { return nil }
            // After the command name: state is field 3, the parent 4, utime 14 and stime 15 (clock ticks).
            let fields = stat[afterName.upperBound...].split(separator: " ")
            guard fields.count > 12, let parent = Int(fields[1]), let user = Double(fields[11]),
                let system = Double(fields[12])
            else { return nil }
            self.command = String(stat[stat.index(after: beforeName)..<afterName.lowerBound])
            self.parent = parent
            self.cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
        }
    }

    /// CPU seconds of the postmaster and each of its children (backends, WAL writer, checkpointer, …), by pid.
    func serverProcessCPU(_ postmaster: Int) -> [Int: Double] {
        var result: [Int: Double] = [:]
        if let stat = ProcessStat(pid: postmaster) { result[postmaster] = stat.cpuSeconds }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int(name), let stat = ProcessStat(pid: pid), stat.parent == postmaster else { continue }
            result[pid] = stat.cpuSeconds
        }
        return result
    }

    /// The machine's CPU time counters from the first line of `/proc/stat`, in clock ticks.
    struct MachineCPU {
        var total = 0.0
        var idle = 0.0

        static func read() -> MachineCPU {
            guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
                let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
            else { return MachineCPU() }
            // user nice system idle iowait irq softirq steal (guest time is already counted in user).
            let values = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
            guard values.count == 8 else { return MachineCPU() }
            return MachineCPU(total: values.reduce(0, +), idle: values[3] + values[4])
        }

        /// Cores busy on average since `earlier`.
        func busyCores(since earlier: MachineCPU) -> Double {
            let total = self.total - earlier.total
            guard total > 0 else { return 0 }
            return (total - (idle - earlier.idle)) / total * Double(ProcessInfo.processInfo.activeProcessorCount)
        }
    }
#endif
