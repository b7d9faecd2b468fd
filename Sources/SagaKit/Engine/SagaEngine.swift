import Foundation
import Instrumentation
public import Logging
public import ServiceLifecycle
import Synchronization
import Tracing

/// Runs sagas, writes every transition to the saga log, and resumes unfinished sagas after a crash.
///
/// The engine is a swift-service-lifecycle `Service`. Its ``run()`` first recovers every saga the log
/// shows as running or compensating, then executes sagas until graceful shutdown (no new sagas;
/// running ones stop at their next durable boundary) or cancellation (stop at once; recovery resumes
/// them later).
///
/// ```swift
/// import SagaKitSQLite  // SQLiteSagaStore, the embedded saga log
///
/// let engine = SagaEngine(store: try SQLiteSagaStore(path: "sagas.sqlite"), logger: logger)
/// try engine.register(placeOrder)
/// let group = ServiceGroup(services: [engine], logger: logger)
/// // elsewhere, e.g. in an HTTP handler:
/// let outcome = try await engine.execute(placeOrder, id: "order-\(requestID)", input: order)
/// ```
///
/// - Important: Steps run *at least once*: after a crash, a step whose outcome was not logged runs
///   again with the same idempotency key. Participants must apply each key at most once.
public final class SagaEngine: Service, Sendable {
    let store: any SagaStore
    /// The store, when several engines share it: the engine then sweeps for orphaned sagas and
    /// starts no step while its lease is not current.
    let sharedStore: (any SharedSagaStore)?
    let configuration: Configuration
    let logger: Logger
    let metrics: SagaMetrics

    struct Registry {
        /// By saga name, then fingerprint.
        var definitions: [String: [String: ErasedDefinition]] = [:]
    }

    struct Runtime {
        var active: [String: SagaExecution] = [:]
        var stranded: [String: StrandedSaga] = [:]
        var isRunning = false
        var hasRun = false
        var isShuttingDown = false
        var queued: [Job] = []
        var jobs: AsyncStream<Job>.Continuation?
    }

    enum Admission { case attach(SagaExecution), created(SagaExecution), shuttingDown }

    enum Job: Sendable {
        case execute(SagaExecution)
        case load(String)
    }

    let registry = Mutex(Registry())
    let runtime = Mutex(Runtime())
    /// Set once ``run()`` has loaded the log (or has ended).
    let recovered = OneShot<Void>()
    /// Set once graceful shutdown has begun (or ``run()`` has ended).
    let shutdown = OneShot<Void>()
    let jitter: Mutex<any RandomNumberGenerator & Sendable>
    let limiter: AsyncLimiter

    /// Creates an engine over a saga store.
    ///
    /// - Parameters:
    ///   - store: Where the saga log lives.
    ///   - configuration: Concurrency, clock and retry settings.
    ///   - logger: The logger the engine and every saga log through; SagaKit never creates one.
    public init(store: any SagaStore, configuration: Configuration = Configuration(), logger: Logger) {
        self.store = store
        self.sharedStore = store as? any SharedSagaStore
        self.configuration = configuration
        self.logger = logger
        self.metrics = SagaMetrics(factory: configuration.metricsFactory)
        self.limiter = AsyncLimiter(limit: configuration.maxConcurrentSagas)
        if let seed = configuration.jitterSeed {
            self.jitter = Mutex(SplitMix64(seed: seed))
        } else {
            self.jitter = Mutex(SystemRandomNumberGenerator())
        }
    }

    // MARK: Definitions

    /// Validates a definition and makes it available to new and recovered sagas.
    ///
    /// Register every definition before ``run()`` so recovery can resume its sagas. Several versions
    /// of one saga (same name, different ``SagaDefinition/fingerprint``) may be registered side by
    /// side: each recovered saga resumes with the version it started with, and new sagas use the one
    /// passed to ``start(_:id:input:options:)``. Registering after ``run()`` started resumes sagas
    /// recovery had to leave for want of this definition.
    ///
    /// - Throws: ``SagaDefinitionError`` naming the first structural problem.
    public func register<Input, Output>(_ definition: SagaDefinition<Input, Output>) throws(SagaDefinitionError) {
        let erased = try ErasedDefinition(definition)
        registry.withLock { $0.definitions[erased.plan.name, default: [:]][erased.plan.fingerprint] = erased }
        resumeStranded(matching: erased)
    }

    func registeredDefinition(name: String, fingerprint: String) -> ErasedDefinition? {
        registry.withLock { $0.definitions[name]?[fingerprint] }
    }

    func definitionMismatchReason(name: String, fingerprint: String) -> (SagaError.Code, String) {
        let known = registry.withLock { $0.definitions[name].map { Array($0.keys).sorted() } }
        guard let known else {
            return (.definitionNotRegistered, "saga definition '\(name)' is not registered with this engine")
        }
        return (
            .definitionMismatch,
            "saga '\(name)' was started with definition fingerprint \(fingerprint), but only \(known.joined(separator: ", ")) is registered; register the old definition beside the new one so its sagas can finish"
        )
    }

    // MARK: Starting sagas

    /// Starts a saga, or attaches to the saga that already has this id.
    ///
    /// Returns once the saga's start is durable in the log (or, for an existing id, at once). The same
    /// id always names the same saga: starting it again returns a handle to the existing saga and its
    /// eventual result, whatever input is passed the second time.
    ///
    /// - Parameters:
    ///   - definition: The saga to run; registered (and validated) on first use.
    ///   - id: A caller-chosen id, for example the order's request id. 1 to 200 characters.
    ///   - input: The saga's input, logged before any step runs.
    ///   - options: Per-saga settings such as the deadline.
    /// - Throws: ``SagaDefinitionError``; ``SagaError`` with ``SagaError/Code/sagaIDConflict`` when the
    ///   id belongs to another saga, ``SagaError/Code/shuttingDown``, ``SagaError/Code/invalidSagaID``
    ///   or ``SagaError/Code/logWriteFailed``.
    public func start<Input, Output>(
        _ definition: SagaDefinition<Input, Output>,
        id: String,
        input: Input,
        options: SagaOptions = SagaOptions()
    ) async throws -> SagaHandle<Output> {
        guard !id.isEmpty, id.count <= 200,
            !id.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else {
            throw SagaError(
                .invalidSagaID, sagaID: id, message: "saga id must be 1 to 200 characters without control characters")
        }
        let erased: ErasedDefinition
        if let registered = registeredDefinition(name: definition.name, fingerprint: definition.fingerprint) {
            erased = registered
        } else {
            try register(definition)
            erased = try ErasedDefinition(definition)
        }
        let handle = SagaHandle<Output>(sagaID: id, engine: self)
        let inputData = try PayloadCodec.encode(input)
        let now = configuration.clock.now()
        var metadata = TraceCarrier.inject(ServiceContext.current ?? .topLevel, using: tracer)
        if let deadline = options.deadline {
            metadata[SagaExecution.deadlineKey] = String(now.addingTimeInterval(deadline.seconds).timeIntervalSince1970)
        }

        let admission: Admission = runtime.withLock { runtime in
            if let existing = runtime.active[id] { return .attach(existing) }
            if runtime.isShuttingDown { return .shuttingDown }
            let run = SagaExecution(
                engine: self, definition: erased, newSagaID: id, input: input, inputData: inputData, metadata: metadata,
                at: now)
            runtime.active[id] = run
            return .created(run)
        }
        switch admission {
        case .shuttingDown:
            throw SagaError(
                .shuttingDown, sagaID: id, message: "the saga engine is shutting down and accepts no new sagas")
        case .attach(let run):
            guard run.definition.plan.name == definition.name else {
                throw SagaError(
                    .sagaIDConflict, sagaID: id,
                    message: "saga id '\(id)' belongs to a '\(run.definition.plan.name)' saga, not '\(definition.name)'"
                )
            }
            // A run still writing its creation record may fail to: answer only once the saga is
            // durable, or with what the first caller gets.
            try await waitUntilDurable(run, id: id, name: definition.name)
            return handle
        case .created(let run):
            enqueue(.execute(run))
            try await waitUntilDurable(run, id: id, name: definition.name)
            return handle
        }
    }

    /// Waits until a run's saga is in the log; when the run turned out to duplicate a saga already
    /// logged, makes sure that saga runs.
    private func waitUntilDurable(_ run: SagaExecution, id: String, name: String) async throws {
        do {
            try await run.waitUntilAccepted()
        } catch let error as SagaStoreError where error.code == .sagaAlreadyExists {
            guard let summary = try await store.summary(of: id) else { throw error }
            guard summary.name == name else {
                throw SagaError(
                    .sagaIDConflict, sagaID: id,
                    message: "saga id '\(id)' belongs to a '\(summary.name)' saga, not '\(name)'")
            }
            // The saga exists and may be waiting for recovery: make sure it runs. On a shared log it
            // may be another engine's: its owner runs it, or the sweep claims it once that engine's
            // lease has run out; resuming it here would only be fenced out.
            if summary.status.isActive, !isAnotherEnginesSaga(id) {
                await waitForRecovery()
                if activeRun(id) == nil { try? await resume(sagaID: id) }
            }
        }
    }

    /// Whether the saga belongs to another engine sharing the log, as far as this engine's store knows.
    func isAnotherEnginesSaga(_ sagaID: String) -> Bool {
        sharedStore.map { !$0.holdsOwnership(of: sagaID) } ?? false
    }

    /// Starts a saga (or attaches to the one with this id) and waits for its outcome.
    ///
    /// Equivalent to ``start(_:id:input:options:)`` followed by ``SagaHandle/outcome()``. Not to be
    /// confused with ``run()``, the engine's own service loop, which must be running (in a
    /// `ServiceGroup`) for sagas to execute.
    ///
    /// ```swift
    /// switch try await engine.execute(placeOrder, id: "order-\(requestID)", input: order) {
    /// case .completed(let receipt): respond(.created, receipt)
    /// case .compensated(let failure): respond(.conflict, failure.cause.message)
    /// case .needsAttention, .resolved: respond(.accepted, "an operator is looking at it")
    /// }
    /// ```
    public func execute<Input, Output>(
        _ definition: SagaDefinition<Input, Output>,
        id: String,
        input: Input,
        options: SagaOptions = SagaOptions()
    ) async throws -> SagaOutcome<Output> {
        try await start(definition, id: id, input: input, options: options).outcome()
    }

    /// A handle to an existing saga, to await its outcome.
    public func handle<Output>(for sagaID: String, output: Output.Type = Output.self) -> SagaHandle<Output> {
        SagaHandle(sagaID: sagaID, engine: self)
    }

    func enqueue(_ job: Job) {
        let dropped = runtime.withLock { runtime -> Bool in
            if let jobs = runtime.jobs, !runtime.isShuttingDown {
                jobs.yield(job)
            } else if runtime.hasRun || runtime.isShuttingDown {
                return true  // the engine has stopped: nothing would run the job
            } else {
                runtime.queued.append(job)
            }
            return false
        }
        if dropped, case .execute(let run) = job {
            runEnded(run)
            run.interrupt(
                SagaError(
                    .interrupted, sagaID: run.id,
                    message: "the saga engine has stopped; saga '\(run.id)' resumes on the next start"))
        }
    }

    func activeRun(_ id: String) -> SagaExecution? {
        runtime.withLock { $0.active[id] }
    }

    func runEnded(_ run: SagaExecution) {
        runtime.withLock { runtime in
            if runtime.active[run.id] === run { runtime.active[run.id] = nil }
        }
    }

    var isShuttingDown: Bool { runtime.withLock { $0.isShuttingDown } }

    var tracer: any Tracer { configuration.tracer ?? InstrumentationSystem.tracer }

    func backoff(_ policy: RetryPolicy, after attempt: Int) -> Duration {
        jitter.withLock { generator in policy.backoff(after: attempt, using: &generator) }
    }
}
