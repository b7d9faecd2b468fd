// swift-tools-version:6.2
import PackageDescription

/// The networked shop: product-service (gRPC), user-service and order-service (HTTP), each over its
/// own database, with the place-order saga in order-service. Its own package, so that gRPC and the
/// HTTP server never enter what a SagaKit user builds.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
    .treatAllWarnings(as: .error),
]

/// Generated code keeps the generators' style; only its warnings are not ours to fix.
let generatedSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Microservices",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "product-service", targets: ["product-service"]),
        .executable(name: "user-service", targets: ["user-service"]),
        .executable(name: "order-service", targets: ["order-service"]),
        .executable(name: "shop", targets: ["shop"]),
    ],
    dependencies: [
        // With the `Postgres` trait: order-service runs on a shared PostgreSQL log when given a URL.
        .package(name: "SagaKit", path: "../..", traits: ["Postgres"]),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
    ],
    targets: [
        // MARK: readiness, shared by the three executables (no dependency)
        .target(name: "SignalReadiness", swiftSettings: strictSettings),
        // MARK: the executables' entry point: Swift Concurrency on NIO's event loops
        .target(
            name: "ServiceMain",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // MARK: product-service (gRPC)
        .target(
            name: "ProductContract",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: generatedSettings
        ),
        .target(
            name: "ProductServer",
            dependencies: [
                "ProductContract",
                .product(name: "ShopServices", package: "SagaKit"),
                .product(name: "SagaKit", package: "SagaKit"),  // NonRetryableError, the services' failures
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "product-service",
            dependencies: [
                "ServiceMain",
                "ProductServer",
                "SignalReadiness",
                .product(name: "GRPCCore", package: "grpc-swift-2"),  // the test faults' interceptors
                .product(name: "ShopServices", package: "SagaKit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ProductServiceTests",
            dependencies: [
                "ProductContract",
                "ProductServer",
                .product(name: "ShopServices", package: "SagaKit"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            swiftSettings: strictSettings
        ),
        // MARK: HTTP services
        .target(
            name: "HTTPSupport",
            dependencies: [
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "UserServer",
            dependencies: [
                "HTTPSupport",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "SagaKit", package: "SagaKit"),
                .product(name: "ShopServices", package: "SagaKit"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "user-service",
            dependencies: [
                "ServiceMain",
                "SignalReadiness",
                "UserServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ShopServices", package: "SagaKit"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "UserServiceTests",
            dependencies: [
                "UserServer",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "ShopServices", package: "SagaKit"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "OrderServer",
            dependencies: [
                "HTTPSupport",
                "ProductContract",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "SagaKit", package: "SagaKit"),
                .product(name: "SagaKitPostgres", package: "SagaKit"),
                .product(name: "SagaKitSQLite", package: "SagaKit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "order-service",
            dependencies: [
                "ServiceMain",
                "OrderServer",
                "SignalReadiness",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "OrderServiceTests",
            dependencies: [
                "OrderServer",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "SagaKit", package: "SagaKit"),
                .product(name: "SagaKitSQLite", package: "SagaKit"),
                .product(name: "SagaKitTesting", package: "SagaKit"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "NetworkedShopTests",
            dependencies: [
                "ShopHarness",
                .product(name: "GRDB", package: "GRDB.swift"),
                // The replica tests read the shared PostgreSQL saga log.
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            swiftSettings: strictSettings
        ),
        // MARK: contracts (OpenAPI)
        .testTarget(
            name: "ContractTests",
            dependencies: [
                "HTTPSupport",
                "OrderServer",
                "UserServer",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "SagaKit", package: "SagaKit"),
                .product(name: "SagaKitSQLite", package: "SagaKit"),
                .product(name: "SagaKitTesting", package: "SagaKit"),
                .product(name: "ShopServices", package: "SagaKit"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSettings
        ),
        // MARK: the services as child processes and HTTP calls to them, for `shop` and NetworkedShopTests
        .target(
            name: "ShopHarness",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            swiftSettings: strictSettings
        ),
        // MARK: the shop command (up, demo, load)
        .executableTarget(
            name: "shop",
            dependencies: [
                "ServiceMain",
                "ShopHarness",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
