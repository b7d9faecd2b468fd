import Testing

extension Tag {
    @Tag static var stateMachine: Self
    @Tag static var engine: Self
    @Tag static var recovery: Self
    @Tag static var observability: Self
    @Tag static var testingKit: Self
}
