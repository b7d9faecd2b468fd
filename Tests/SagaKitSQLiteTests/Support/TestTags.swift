import Testing

extension Tag {
    /// The SQLite saga log's own behaviour: opening, appending, reading, bad files.
    @Tag static var sqliteStore: Self
    /// Who may own a log file, and how a second owner is refused.
    @Tag static var ownership: Self
    /// A log that lost commits, backups, and logs written by earlier versions.
    @Tag static var logIntegrity: Self
    /// Retention: pruning finished sagas.
    @Tag static var retention: Self
    /// Group commit for the services' own databases.
    @Tag static var groupCommit: Self
}
