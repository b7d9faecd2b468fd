#if Postgres
    import Foundation
    import SagaKit
    import SagaKitPostgres
    import ShopServices

    // The `postgres` section's engine process: `saga-bench postgres-worker …` runs one PostgresSagaStore
    // and one SagaEngine on the schema the parent names, prints `ready` once the log is open, waits for
    // `go` on standard input, keeps `--concurrency` sagas in flight for the warm-up and the timed window,
    // and prints what the window measured as one JSON line (`PostgresWorkerReport`).

    /// The worker's command line, parsed in the style of ``Options``.
    struct PostgresWorkerOptions {
        var url = ""
        var schema = ""
        var worker = 0
        var concurrency = 256
        var warmup = 1.0
        var duration = 5.0
        var commitsInFlight: Int?

        static let usage = """
            usage: saga-bench postgres-worker --url URL --schema NAME [options]
              (started by `saga-bench --sections postgres`; prints `ready`, waits for `go` on stdin, then prints
              one JSON line)
              --url URL               the PostgreSQL server
              --schema NAME           the schema of this load's saga log (shared by the load's engines)
              --worker N              this engine's number, for unique saga ids (default 0)
              --concurrency N         sagas in flight (default 256)
              --warmup S              seconds of load before the timed window (default 1)
              --duration S            the timed window in seconds (default 5)
              --commits-in-flight N   the store's maximumCommitsInFlight (default: the store's default)
            """

        init(_ arguments: [String]) throws {
            var iterator = arguments.makeIterator()
            func value(_ flag: String) throws -> String {
                guard let value = iterator.next() else { throw BenchError("\(flag) needs a value\n\(Self.usage)") }
                return value
            }
            func number(_ flag: String) throws -> Double {
                guard let number = Double(try value(flag)), number >= 0 else {
                    throw BenchError("\(flag) takes a number of seconds")
                }
                return number
            }
            while let argument = iterator.next() {
                switch argument {
                case "--url": url = try value(argument)
                case "--schema": schema = try value(argument)
                case "--worker": worker = Int(try value(argument)) ?? 0
                case "--concurrency": concurrency = max(1, Int(try value(argument)) ?? 256)
                case "--warmup": warmup = try number(argument)
                case "--duration": duration = try number(argument)
                case "--commits-in-flight": commitsInFlight = max(1, Int(try value(argument)) ?? 1)
                case "--help", "-h":
                    print(Self.usage)
                    exit(0)
                default: throw BenchError("unknown argument \(argument)\n\(Self.usage)")
                }
            }
            guard !url.isEmpty, !schema.isEmpty else {
                throw BenchError("--url and --schema are required\n\(Self.usage)")
            }
        }
    }

    /// A three-step saga whose participants do no I/O (reserve and charge are compensatable, ship is the
    /// pivot): four log appends per saga, and nothing else, so what is measured is the engine and its log.
    struct PostgresBenchSaga: Sendable {
        static let name = "pg-bench-order"
        let definition: SagaDefinition<PlaceOrder, OrderConfirmation>

        init() {
            let reserve = SagaStep<PlaceOrder, BenchDeduction>.compensatable("reserve") { context in
                BenchDeduction(
                    key: context.idempotencyKey, product: context.input.product, quantity: context.input.quantity)
            } compensation: { _, _ in
            }
            let charge = SagaStep<PlaceOrder, BenchDeduction>.compensatable("charge") { context in
                BenchDeduction(
                    key: context.idempotencyKey, product: context.input.product, quantity: context.input.quantity)
            } compensation: { _, _ in
            }
            let ship = SagaStep<PlaceOrder, OrderConfirmation>.pivot("ship") { context in
                let reserved = try context.output(of: reserve)
                return OrderConfirmation(
                    orderID: context.input.user, user: context.input.user, product: context.input.product,
                    quantity: context.input.quantity, deductionKey: reserved.key, orderKey: context.idempotencyKey)
            }
            definition = SagaDefinition(Self.name, returning: ship) {
                reserve
                charge
                ship
            }
        }
    }

    /// Runs the worker: open the store, run the engine, wait for `go`, load, print the report, close.
    func runPostgresWorker(_ arguments: [String]) async throws {
        let options = try PostgresWorkerOptions(arguments)
        var configuration = try PostgresSagaStore.Configuration(url: options.url)
        configuration.schema = options.schema
        if let commitsInFlight = options.commitsInFlight { configuration.maximumCommitsInFlight = commitsInFlight }
        let report = try await withRunningPostgresStore(configuration) { store in
            let engine = SagaEngine(store: store, configuration: engineConfiguration(), logger: silentLogger)
            let saga = PostgresBenchSaga()
            try engine.register(saga.definition)
            return try await withEngineRunning(engine) {
                print("ready")
                fflush(nil)
                // Blocks one thread until the parent says go; nothing else runs on this engine meanwhile.
                guard let line = readLine(), line == "go" else { throw BenchError("worker: no go signal on stdin") }
                let prefix = "w\(options.worker)-"
                return await postgresLoad(
                    concurrency: options.concurrency, warmup: .milliseconds(Int(options.warmup * 1000)),
                    duration: .milliseconds(Int(options.duration * 1000)), store: store
                ) { index in
                    await status {
                        try await engine.execute(saga.definition, id: prefix + "\(index)", input: benchOrder(index))
                    }
                }
            }
        }
        let encoder = JSONEncoder()
        print(String(decoding: try encoder.encode(report), as: UTF8.self))
        fflush(nil)
    }

    /// Runs a store's `run()` while `body` runs, then closes it (which deregisters its engine) and waits
    /// for `run()` to end, whether `body` threw or not.
    func withRunningPostgresStore<T: Sendable>(
        _ configuration: PostgresSagaStore.Configuration, _ body: @Sendable (PostgresSagaStore) async throws -> T
    ) async throws -> T {
        let store = PostgresSagaStore(configuration: configuration, logger: silentLogger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await store.run() }
            let result: Result<T, any Error>
            do {
                try await store.waitUntilReady()
                result = .success(try await body(store))
            } catch {
                result = .failure(error)
            }
            try? await store.close()
            while let finished = await group.nextResult() {
                if case .failure(let error) = finished, case .success = result { throw error }
            }
            return try result.get()
        }
    }

    /// What one engine process measured in its timed window.
    struct PostgresWorkerReport: Codable, Sendable {
        /// Sagas that finished inside the window (completed or not).
        var sagas: Int
        /// Of those, the ones that did not complete (an error, or compensated): 0 in a healthy run.
        var failures: Int
        /// The window's length, between the two marks of its timer.
        var seconds: Double
        /// Start-to-outcome latency of every saga of the window, in microseconds.
        var latenciesMicros: [Int]
        /// Group commits of the store in the window (`committedTransactionCount`).
        var transactions: Int
        /// This process's user + system CPU time in the window.
        var cpuSeconds: Double
        /// Sagas started from `go` to the end (warm-up, window and drain).
        var started: Int
    }

    /// Keeps `concurrency` sagas in flight from now until `warmup + duration` have passed, then waits for
    /// the last; measures the sagas that finish in the window after the warm-up.
    ///
    /// A timer marks the window's start and end: the store's transaction count and the process's CPU time
    /// are read at both marks, and the sagas counted are those whose outcome arrived between them, so
    /// counts, commits and CPU cover the same interval.
    func postgresLoad(
        concurrency: Int, warmup: Duration, duration: Duration, store: PostgresSagaStore,
        place: @escaping @Sendable (Int) async -> SagaStatus?
    ) async -> PostgresWorkerReport {
        struct Mark {
            var instant: ContinuousClock.Instant
            var transactions: Int
            var cpu: Double
        }
        enum Event: Sendable {
            case finished(SagaStatus?, Duration)
            case window
        }
        let clock = ContinuousClock()
        let windowStart = clock.now + warmup
        let windowEnd = windowStart + duration
        func mark() -> Mark {
            Mark(instant: clock.now, transactions: store.committedTransactionCount, cpu: processCPUSeconds())
        }
        var report = PostgresWorkerReport(
            sagas: 0, failures: 0, seconds: 0, latenciesMicros: [], transactions: 0, cpuSeconds: 0, started: 0)
        var opened: Mark?
        var closed: Mark?
        await withTaskGroup(of: Event.self) { group in
            func launch() {
                let index = report.started
                report.started += 1
                group.addTask {
                    let start = clock.now
                    let status = await place(index)
                    return .finished(status, clock.now - start)
                }
            }
            func timer(until instant: ContinuousClock.Instant) {
                group.addTask {
                    try? await clock.sleep(until: instant)
                    return .window
                }
            }
            timer(until: windowStart)
            while report.started < concurrency { launch() }
            while let event = await group.next() {
                switch event {
                case .window where opened == nil:
                    opened = mark()
                    timer(until: windowEnd)
                case .window:
                    closed = mark()
                case .finished(let status, let latency):
                    if opened != nil, closed == nil {
                        report.sagas += 1
                        report.latenciesMicros.append(Int((latency.seconds * 1e6).rounded()))
                        if status != .completed { report.failures += 1 }
                    }
                    if closed == nil { launch() }
                }
            }
        }
        let first = opened ?? mark()
        let last = closed ?? mark()
        report.seconds = (last.instant - first.instant).seconds
        report.transactions = last.transactions - first.transactions
        report.cpuSeconds = last.cpu - first.cpu
        return report
    }
#endif
