import SagaKit
