import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The engine as a swift-service-lifecycle `Service`: recovery, the job loop, graceful shutdown, and
/// the sleeps that shutdown cuts short.
extension SagaEngine {
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
            shutdown.succeed()
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
                if let shared = self.sharedStore {
                    group.addTask { await self.sweepOrphanedSagas(shared) }
                }
                for await job in stream {
                    guard await self.limiter.acquire() else { break }
                    group.addTask {
                        defer { self.limiter.release() }
                        switch job {
                        case .execute(let execution):
                            await execution.drive()
                            self.holdForSweepIfLogWritesFailed(execution)
                        case .load(let id): await self.load(id)
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
    }

    /// Every ``SharedSagaStore/sweepInterval`` until shutdown: claims the sagas of engines whose lease
    /// ran out and resumes them, as recovery does at start; and resumes this engine's own sagas whose
    /// runs stopped because the log could not be written (see ``resumeSagasWhoseLogWritesFailed()``).
    func sweepOrphanedSagas(_ shared: any SharedSagaStore) async {
        while await sleep(for: shared.sweepInterval) {
            await sweepOnce(shared)
        }
    }

    /// Resumes this engine's sagas whose log writes failed, claims orphaned sagas once and queues
    /// their runs; logs (and retries on the next sweep) a store that cannot be read.
    func sweepOnce(_ shared: any SharedSagaStore) async {
        guard shared.leaseIsCurrent else { return }
        await resumeSagasWhoseLogWritesFailed()
        do {
            let claimed = try await shared.claimOrphanedSagas(limit: 1_000)
            var resumed = 0
            for saga in claimed where try prepareResumption(saga) { resumed += 1 }
            if !claimed.isEmpty {
                logger.info(
                    "took over sagas whose engine's lease ran out",
                    metadata: ["claimed": "\(claimed.count)", "resumed": "\(resumed)"])
            }
        } catch {
            logger.warning(
                "could not claim orphaned sagas; trying again at the next sweep", metadata: ["error": "\(error)"])
        }
        await answerOperatorRequests(shared)  // cancellations made through other engines (SagaEngine+Requests)
    }

    func finishRecovery() {
        recovered.succeed()
    }

    /// Suspends until the engine has loaded the log (``run()`` has recovered, or has ended), so a
    /// saga about to be resumed is found in the registry.
    func waitForRecovery() async {
        try? await recovered.value()
    }

    func beginShutdown() {
        let jobs = runtime.withLock { runtime in
            runtime.isShuttingDown = true
            return runtime.jobs
        }
        logger.info("saga engine shutting down gracefully")
        jobs?.finish()
        shutdown.succeed()
    }

    /// Suspends until graceful shutdown begins (returns at once if it has, or on cancellation).
    func waitForShutdown() async {
        try? await shutdown.value()
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
}
