public import Logging
public import SagaKit
public import SagaKitSQLite
public import ShopServices

/// What the demo shop sells and who buys there: seeded into a new data directory.
public enum ShopCatalog {
    /// A product of the catalog.
    public struct Product: Hashable, Sendable {
        /// Its name.
        public var name: String
        /// Its stock in a new data directory.
        public var openingStock: Int
        /// Whether the order service carries it (`matcha` is in stock, but cannot be ordered).
        public var carried: Bool
    }

    /// The products: plenty of tea, coffee and cocoa, a little saffron (so a load run sees some
    /// orders refused for want of stock), and matcha, which the order database does not carry.
    public static let products: [Product] = [
        Product(name: "tea", openingStock: 1000, carried: true),
        Product(name: "coffee", openingStock: 1000, carried: true),
        Product(name: "cocoa", openingStock: 1000, carried: true),
        Product(name: "saffron", openingStock: 12, carried: true),
        Product(name: "matcha", openingStock: 20, carried: false),
    ]

    /// The customers, registered with the user service and added to the order service's own table.
    public static let customers: [(name: String, email: String)] = [
        ("Ada Lovelace", "ada@example.com"),
        ("Grace Hopper", "grace@example.com"),
        ("Alan Turing", "alan@example.com"),
        ("Katherine Johnson", "katherine@example.com"),
    ]
}

/// The whole shop in one process, on one data directory: the three services, each over its own
/// SQLite file, the saga log in another, and a saga engine running the place-order saga.
///
/// This is what `saga-demo` runs and what the tests drive. Opening it registers a run in
/// `demo.sqlite`, seeds a new directory (idempotently), and notes which sagas the log shows as
/// unfinished: the engine resumes them as soon as it runs.
///
/// ```swift
/// let directory = try DataDirectory.prepare(path)
/// let shop = try await ShopRuntime.open(directory, mode: "tour")
/// let resumed = try await shop.withEngineRunning {
///     try await shop.resumeUnfinished()
/// }
/// try await shop.close()
/// ```
public final class ShopRuntime: Sendable {
    /// How to open a shop.
    public struct Options: Sendable {
        /// Seed of the injected faults (see ``WriteFaults``) and of the engine's retry jitter. Default 42.
        public var seed: UInt64
        /// Sagas the engine runs at once. Default 1024.
        public var maxConcurrentSagas: Int
        /// A crash trigger to install in the engine. Default `nil`.
        public var crashTrigger: CrashTrigger?
        /// The logger the engine and the saga log use. Default: logs nothing.
        public var logger: Logger

        /// Creates options; every parameter defaults as its property documents.
        public init(
            seed: UInt64 = 42,
            maxConcurrentSagas: Int = 1024,
            crashTrigger: CrashTrigger? = nil,
            logger: Logger = Logger(label: "saga-demo", factory: { _ in SwiftLogNoOpLogHandler() })
        ) {
            self.seed = seed
            self.maxConcurrentSagas = maxConcurrentSagas
            self.crashTrigger = crashTrigger
            self.logger = logger
        }
    }

    /// The data directory.
    public let directory: DataDirectory
    /// This run's number in the directory, from 1; saga ids start with `r<run>-`.
    public let run: Int
    /// The product service.
    public let products: ProductService
    /// The order service.
    public let orders: OrderService
    /// The user service.
    public let users: UserService
    /// The saga log.
    public let store: SQLiteSagaStore
    /// The saga engine (not running until ``withEngineRunning(_:)``).
    public let engine: SagaEngine
    /// The place-order saga over ``products`` and ``orders``.
    public let saga: PlaceOrderSaga
    /// The seeded customers, in ``ShopCatalog/customers`` order.
    public let customers: [User]
    /// The sagas the log showed as running or compensating when the shop opened: the engine
    /// resumes them when it starts.
    public let unfinishedAtOpen: [SagaSummary]
    let state: DemoState

    private init(
        directory: DataDirectory, run: Int, state: DemoState, products: ProductService, orders: OrderService,
        users: UserService, store: SQLiteSagaStore, engine: SagaEngine, saga: PlaceOrderSaga, customers: [User],
        unfinished: [SagaSummary]
    ) {
        self.directory = directory
        self.run = run
        self.state = state
        self.products = products
        self.orders = orders
        self.users = users
        self.store = store
        self.engine = engine
        self.saga = saga
        self.customers = customers
        self.unfinishedAtOpen = unfinished
    }

    /// Opens every database of the directory, seeds a new one, and builds the engine.
    ///
    /// - Parameters:
    ///   - directory: A directory checked by ``DataDirectory/prepare(_:)``.
    ///   - mode: What this run does, recorded in `demo.sqlite` (`tour`, `load`…).
    ///   - options: Seed, concurrency, crash trigger and logger.
    ///   - run: The run number to continue (a tour reopens the shop after its crash scenario and keeps
    ///     its number); `nil` records a new run.
    /// - Throws: ``ShopStorageError``, or a `SagaStoreError` when the saga log cannot be opened (for
    ///   example `inUse`: another saga-demo runs on this directory).
    public static func open(
        _ directory: DataDirectory, mode: String, options: Options = Options(), continuing run: Int? = nil
    ) async throws -> ShopRuntime {
        let state = try DemoState(path: directory.path(of: ShopFiles.demo))
        let store: SQLiteSagaStore
        do {
            store = try SQLiteSagaStore(path: directory.path(of: ShopFiles.sagas), logger: options.logger)
        } catch {
            try? state.close()
            throw error
        }
        do {
            let products = try ProductService(path: directory.path(of: ShopFiles.products))
            let orders = try OrderService(
                path: directory.path(of: ShopFiles.orders),
                configuration: .init(faults: WriteFaults(seed: options.seed)))
            let users = try UserService(path: directory.path(of: ShopFiles.users))
            let number: Int
            if let run {
                number = run
            } else {
                number = try await state.beginRun(mode: mode)
            }
            let customers = try await seed(products: products, orders: orders, users: users)
            let unfinished = try await store.sagas(matching: SagaQuery(status: [.running, .compensating], limit: .max))

            var configuration = SagaEngine.Configuration(maxConcurrentSagas: options.maxConcurrentSagas)
            configuration.jitterSeed = options.seed
            if let trigger = options.crashTrigger { configuration = trigger.configure(configuration) }
            let engine = SagaEngine(store: store, configuration: configuration, logger: options.logger)
            let saga = PlaceOrderSaga(products: products, orders: orders)
            try engine.register(saga.definition)
            return ShopRuntime(
                directory: directory, run: number, state: state, products: products, orders: orders, users: users,
                store: store, engine: engine, saga: saga, customers: customers, unfinished: unfinished)
        } catch {
            try? await store.close()
            try? state.close()
            throw error
        }
    }

    /// Puts the catalog and the customers in place; does nothing for what is already there.
    static func seed(products: ProductService, orders: OrderService, users: UserService) async throws -> [User] {
        for product in ShopCatalog.products {
            try await products.addProduct(product.name, openingStock: product.openingStock)
            if product.carried { try await orders.carry(product.name) }
        }
        var customers: [User] = []
        for customer in ShopCatalog.customers {
            let user: User
            if let existing = try await users.user(email: customer.email) {
                user = existing
            } else {
                user = try await users.registerUser(name: customer.name, email: customer.email)
            }
            // The split: the order service keeps its own table of the customers it may serve.
            try await orders.addCustomer(user.id, name: user.name)
            customers.append(user)
        }
        return customers
    }

    /// Runs the engine (which first resumes unfinished sagas) while `body` runs, then stops it.
    ///
    /// The engine stops by cancellation, as a crash would: sagas still running stay in the log as
    /// they were and resume on the next open. If the engine stops first (it could not read its log),
    /// `body` is cancelled and the engine's error is thrown.
    public func withEngineRunning<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Self.withEngineRunning(engine, body)
    }

    /// Runs `engine` while `body` runs, then stops it by cancellation; if the engine fails first,
    /// `body` is cancelled and the engine's error is thrown.
    public static func withEngineRunning<T: Sendable>(
        _ engine: SagaEngine, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await engine.run()
                return nil
            }
            group.addTask { try await body() }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
                throw CancellationError()
            }
            throw CancellationError()
        }
    }

    /// Runs `body`, then closes the shop whether it threw or not.
    public func closing<T>(_ body: () async throws -> T) async throws -> T {
        let result: T
        do {
            result = try await body()
        } catch {
            try? await close()
            throw error
        }
        try await close()
        return result
    }

    /// Waits for the sagas that were unfinished when the shop opened; call it with the engine running.
    public func resumeUnfinished() async throws -> ResumeReport {
        var report = ResumeReport()
        for summary in unfinishedAtOpen {
            report.resumed += 1
            do {
                let outcome = try await engine.handle(for: summary.id, output: OrderConfirmation.self).outcome()
                report.count(outcome.status)
            } catch {
                report.failed += 1
            }
        }
        report.stranded = engine.strandedSagas.count
        return report
    }

    /// Places one order through the saga and waits for its outcome.
    public func placeOrder(_ order: PlaceOrder, sagaID: String) async throws -> SagaOutcome<OrderConfirmation> {
        try await engine.execute(saga.definition, id: sagaID, input: order)
    }

    /// Closes the saga log and the databases. Call it with the engine stopped.
    public func close() async throws {
        try await store.close()
        try products.close()
        try orders.close()
        try users.close()
        try state.close()
    }
}

/// What became of the sagas a new engine found unfinished in the log.
public struct ResumeReport: Codable, Hashable, Sendable {
    /// Sagas the log showed as running or compensating.
    public var resumed = 0
    /// Of those, completed.
    public var completed = 0
    /// Compensated.
    public var compensated = 0
    /// Needing attention.
    public var needsAttention = 0
    /// Whose outcome could not be awaited (the engine stopped first).
    public var failed = 0
    /// Left untouched for want of their definition.
    public var stranded = 0

    /// An empty report.
    public init() {}

    mutating func count(_ status: SagaStatus) {
        switch status {
        case .completed: completed += 1
        case .compensated: compensated += 1
        case .needsAttention: needsAttention += 1
        default: break
        }
    }
}
