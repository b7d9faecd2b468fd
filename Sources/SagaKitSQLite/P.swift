import SagaKit
import GRDB
