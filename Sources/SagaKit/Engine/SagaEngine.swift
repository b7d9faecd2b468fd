package import Foundation
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
        var shutdownWaiters: [UUID: CheckedContinuation<Void, Never>] = [:]
        var queued: [Job] = []
        var jobs: AsyncStream<Job>.Continuation?
        var recoveryComplete = false
        var recoveryWaiters: [CheckedContinuation<Void, Never>] = []
    }

    enum Admission { case attach(SagaExecution), created(SagaExecution), shuttingDown }

    enum Job: Sendable {
        case execute(SagaExecution)
        case load(String)
    }

    let registry = Mutex(Registry())
    let runtime = Mutex(Runtime())
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
            // The saga exists and may be waiting for recovery: make sure it runs.
            if summary.status.isActive {
                await waitForRecovery()
                if activeRun(id) == nil { try? await resume(sagaID: id) }
            }
        }
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

    // MARK: Outcomes

    func settlement(of sagaID: String) async throws -> SagaSettlement {
        if let run = activeRun(sagaID) {
            do {
                return try await run.settlement()
            } catch let superseded as RunSuperseded {
                // The log has moved past the run (it duplicated a logged saga, or was loaded from
                // records another execution has written after): make sure the saga runs, then look
                // it up again, once.
                await waitForRecovery()
                if activeRun(sagaID) == nil, runtime.withLock({ $0.isRunning && !$0.isShuttingDown }) {
                    try? await resume(sagaID: sagaID)
                }
                if let run = activeRun(sagaID) {
                    do {
                        return try await run.settlement()
                    } catch let again as RunSuperseded {
                        throw again.fallback ?? superseded.fallback
                            ?? SagaError(
                                .logWriteFailed, sagaID: sagaID,
                                message: "another engine is writing saga '\(sagaID)'; this engine stops running it")
                    }
                }
                if let fallback = superseded.fallback,
                    try await store.summary(of: sagaID).map({ $0.status.isActive }) ?? false
                {
                    throw fallback
                }
            }
        }
        guard let summary = try await store.summary(of: sagaID) else {
            throw SagaError(.unknownSaga, sagaID: sagaID, message: "no saga with id '\(sagaID)' is in the log")
        }
        if summary.status.isActive {
            await waitForRecovery()
            if let run = activeRun(sagaID) { return try await run.settlement() }
            if let stranded = runtime.withLock({ $0.stranded[sagaID] }) {
                throw SagaError(stranded.code, sagaID: sagaID, message: stranded.message)
            }
            let stopped = runtime.withLock { $0.hasRun && !$0.isRunning || $0.isShuttingDown }
            let how =
                stopped
                ? "this engine has stopped; it resumes when a new engine over this log runs (its run() recovers every unfinished saga)"
                : "it resumes when an engine recovers it, or with resume(sagaID:) on this engine"
            throw SagaError(
                .interrupted, sagaID: sagaID,
                message: "saga '\(sagaID)' is \(summary.status) in the log but not running in this engine; \(how)")
        }
        return Self.settlement(summary: summary, records: try await store.records(of: sagaID))
    }

    /// A settled saga's outcome rebuilt from its log, by the rule the live run follows (``SagaCause``),
    /// so the answer is the same live, later, and in another engine.
    static func settlement(summary: SagaSummary, records: [SagaLogRecord]) -> SagaSettlement {
        let cause = SagaCause.folding(records)
        var settlement = SagaSettlement(
            status: summary.status, cause: cause.error ?? summary.lastError, causeStep: cause.step)
        for record in records.reversed() {
            switch record.kind {
            case .sagaCompleted where settlement.output == nil: settlement.output = record.payload
            case .operatorResolved where settlement.note == nil: settlement.note = record.note
            default: break
            }
        }
        return settlement
    }

    func decodeOutcome<Output: Codable & Sendable>(_ settlement: SagaSettlement, as type: Output.Type) throws
        -> SagaOutcome<Output>
    {
        let failure = SagaFailure(
            step: settlement.causeStep,
            cause: settlement.cause
                ?? RecordedError(type: "SagaKit.Unknown", message: "no cause was recorded", isRetryable: false)
        )
        switch settlement.status {
        case .completed:
            return .completed(
                try PayloadCodec.decode(Output.self, from: settlement.output ?? Data(), what: "saga output"))
        case .compensated: return .compensated(failure)
        case .needsAttention: return .needsAttention(failure)
        case .resolved: return .resolved(note: settlement.note)
        default:
            throw SagaError(.interrupted, message: "the saga is still \(settlement.status)")
        }
    }

    // MARK: Service

    /// Recovers unfinished sagas, then executes sagas until graceful shutdown or cancellation.
    ///
    /// On graceful shutdown the engine accepts no new sagas and lets running sagas reach their next
    /// durable boundary (the outcome of the step in flight is logged), then returns. On cancellation
    /// it stops at once; either way, unfinished sagas resume from the log on the next start.
    ///
    /// - Throws: A ``SagaStoreError`` if the log cannot be read for recovery, or ``SagaError`` with
    ///   ``SagaError/Code/invalidOperatorAction`` if this engine has run before (an engine runs once).
    public func run() async throws {
        let (stream, continuation) = AsyncStream<Job>.makeStream()
        let queued: [Job] = try runtime.withLock { runtime in
            guard !runtime.hasRun else {
                throw SagaError(
                    .invalidOperatorAction, message: "a SagaEngine runs once; create a new engine to run again")
            }
            runtime.hasRun = true
            runtime.isRunning = true
            runtime.jobs = continuation
            defer { runtime.queued = [] }
            return runtime.queued
        }
        defer {
            finishRecovery()
            let abandoned = runtime.withLock { runtime -> [SagaExecution] in
                runtime.isRunning = false
                runtime.isShuttingDown = true
                runtime.jobs = nil
                let left = Array(runtime.active.values)
                runtime.active = [:]
                return left
            }
            for run in abandoned {
                run.interrupt(
                    SagaError(
                        .interrupted, sagaID: run.id,
                        message:
                            "the saga engine stopped before saga '\(run.id)' finished; it resumes from the log on the next start"
                    ))
            }
        }
        for job in queued { continuation.yield(job) }

        try await withGracefulShutdownHandler {
            try await self.recover()
            self.finishRecovery()
            await withDiscardingTaskGroup { group in
                for await job in stream {
                    guard await self.limiter.acquire() else { break }
                    group.addTask {
                        defer { self.limiter.release() }
                        switch job {
                        case .execute(let execution): await execution.drive()
                        case .load(let id): await self.load(id)
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
    }

    func finishRecovery() {
        let waiters = runtime.withLock { runtime -> [CheckedContinuation<Void, Never>] in
            runtime.recoveryComplete = true
            defer { runtime.recoveryWaiters = [] }
            return runtime.recoveryWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Suspends until the engine has loaded the log (``run()`` has recovered, or has ended), so a
    /// saga about to be resumed is found in the registry.
    func waitForRecovery() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = runtime.withLock { runtime -> Bool in
                if runtime.recoveryComplete { return true }
                runtime.recoveryWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    func beginShutdown() {
        let (waiters, jobs) = runtime.withLock { runtime in
            runtime.isShuttingDown = true
            defer { runtime.shutdownWaiters = [:] }
            return (Array(runtime.shutdownWaiters.values), runtime.jobs)
        }
        logger.info("saga engine shutting down gracefully")
        jobs?.finish()
        for waiter in waiters { waiter.resume() }
    }

    /// Suspends until graceful shutdown begins (returns at once if it has).
    func waitForShutdown() async {
        let id = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = runtime.withLock { runtime -> Bool in
                    if runtime.isShuttingDown || Task.isCancelled { return true }
                    runtime.shutdownWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = runtime.withLock { $0.shutdownWaiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }

    /// Sleeps on the engine's clock; returns `false` if graceful shutdown or cancellation cut it short.
    func sleep(for duration: Duration) async -> Bool {
        if duration <= .zero { return !isShuttingDown && !Task.isCancelled }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await self.configuration.clock.sleep(for: duration)
                    return true
                } catch { return false }
            }
            group.addTask {
                await self.waitForShutdown()
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    var tracer: any Tracer { configuration.tracer ?? InstrumentationSystem.tracer }

    func backoff(_ policy: RetryPolicy, after attempt: Int) -> Duration {
        jitter.withLock { generator in policy.backoff(after: attempt, using: &generator) }
    }
}

/// A saga recovery had to leave alone, and why.
public struct StrandedSaga: Hashable, Sendable {
    /// The saga's id.
    public var id: String
    /// Its definition's name.
    public var name: String
    /// The fingerprint it was started with.
    public var fingerprint: String
    /// Why it was left (definition not registered, fingerprint mismatch, corrupt history).
    public var code: SagaError.Code
    /// A sentence saying what to do.
    public var message: String
}

/// A definition with its types erased: what the engine needs to run and recover sagas.
package struct ErasedDefinition: Sendable {
    package let plan: SagaPlan
    package let decodeInput: @Sendable (Data) throws -> any Sendable
    package let makeOutput: @Sendable (_ sagaID: String, _ input: any Sendable, StepOutputs) throws -> Data

    package init<Input, Output>(_ definition: SagaDefinition<Input, Output>) throws(SagaDefinitionError) {
        let plan = definition.plan
        try plan.validate()
        self.plan = plan
        self.decodeInput = { data in try PayloadCodec.decode(Input.self, from: data, what: "saga input") }
        let result = definition.result
        self.makeOutput = { sagaID, input, outputs in
            guard let typed = input as? Input else {
                throw SagaError(.undecodablePayload, sagaID: sagaID, message: "saga input is not a \(Input.self)")
            }
            return try PayloadCodec.encode(
                try result(SagaResultContext(sagaID: sagaID, input: typed, outputs: outputs)))
        }
    }
}

/// SplitMix64: a small seeded generator for reproducible jitter (and reproducible test data).
package struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    package init(seed: UInt64) { state = seed }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
