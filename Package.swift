// swift-tools-version:6.2
import PackageDescription

/// Settings shared by every SagaKit target: Swift 6 mode with the upcoming features the project adopts,
/// and warnings as errors (SwiftPM ignores warning control for packages used as dependencies, so this
/// binds SagaKit's own code only).
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "SagaKit",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SagaKit", targets: ["SagaKit"]),
        .library(name: "SagaKitSQLite", targets: ["SagaKitSQLite"]),
        .library(name: "SagaKitTesting", targets: ["SagaKitTesting"]),
        .library(name: "SQLiteGroupCommit", targets: ["SQLiteGroupCommit"]),
        // The PostgreSQL store: its code compiles only with the `Postgres` trait, and only then is
        // postgres-nio built.
        .library(name: "SagaKitPostgres", targets: ["SagaKitPostgres"]),
        // The shop example's services, for the networked shop in Examples/Microservices (its own
        // package, so gRPC and the HTTP server never enter what a library user builds).
        .library(name: "ShopServices", targets: ["ShopServices"]),
    ],
    traits: [
        .trait(
            name: "Postgres",
            description:
                "Builds SagaKitPostgres, the saga store on PostgreSQL, with its dependency postgres-nio. Off by default."
        )
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .target(
            name: "SagaKit",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "SQLiteGroupCommit",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift")
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "SagaKitSQLite",
            dependencies: [
                "SagaKit",
                "SQLiteGroupCommit",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "SagaKitPostgres",
            dependencies: [
                "SagaKit",
                .product(name: "PostgresNIO", package: "postgres-nio", condition: .when(traits: ["Postgres"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "SagaKitTesting",
            dependencies: [
                "SagaKit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "saga-quickstart",
            dependencies: [
                "SagaKit",
                "SagaKitSQLite",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/QuickStart",
            swiftSettings: strictSettings
        ),
        .target(
            name: "ShopServices",
            dependencies: [
                "SagaKit",
                "SQLiteGroupCommit",  // the services' own databases
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "Examples/Shop/Sources/ShopServices",
            swiftSettings: strictSettings
        ),
        .target(
            name: "ShopDemo",
            dependencies: [
                "ShopServices",
                "SagaKit",
                "SagaKitSQLite",
                "SagaKitTesting",  // CrashSwitch, for the demo's --crash-at points
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/Shop/Sources/ShopDemo",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "saga-demo",
            dependencies: [
                "ShopDemo",
                "ShopServices",
                "SagaKit",
                "SagaKitSQLite",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/Shop/Sources/saga-demo",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "saga-bench",
            dependencies: [
                "SagaKit",
                "SagaKitPostgres",  // empty without the Postgres trait, which the `postgres` section needs
                "SagaKitSQLite",
                "ShopDemo",
                "ShopServices",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                // The `postgres` section only: its raw commit probe, and the engine processes it starts.
                .product(name: "PostgresNIO", package: "postgres-nio", condition: .when(traits: ["Postgres"])),
                .product(name: "Subprocess", package: "swift-subprocess", condition: .when(traits: ["Postgres"])),
            ],
            path: "Benchmarks/SagaBench",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "SagaKitTests",
            dependencies: [
                "SagaKitPostgres",  // empty without the Postgres trait; with it, RecoveryTests run on PostgreSQL too
                "SagaKit",
                "SagaKitSQLite",
                "SagaKitTesting",
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "SagaKitSQLiteTests",
            dependencies: [
                "SagaKit",
                "SagaKitSQLite",
                "SagaKitTesting",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "SagaKitPostgresTests",
            dependencies: [
                "SagaKit",
                "SagaKitPostgres",
                "SagaKitTesting",
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "Logging", package: "swift-log"),
                // The local-step tests query the log's database themselves.
                .product(name: "PostgresNIO", package: "postgres-nio", condition: .when(traits: ["Postgres"])),
                // The restart test runs the command that restarts the server (SAGAKIT_POSTGRES_RESTART).
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ShopTests",
            dependencies: [
                "ShopDemo",
                "ShopServices",
                "SagaKit",
                "SagaKitSQLite",
                "SagaKitTesting",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            path: "Examples/Shop/Tests/ShopTests",
            swiftSettings: strictSettings
        ),
    ]
)
