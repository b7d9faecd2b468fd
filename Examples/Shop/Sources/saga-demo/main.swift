// saga-demo: the SagaKit shop in one process. `swift run saga-demo --help` lists what it does.
import Foundation

exit(await SagaDemo.main(Array(CommandLine.arguments.dropFirst())))
