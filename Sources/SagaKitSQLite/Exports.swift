// `SQLiteGroupCommitWriter` lives in the SQLiteGroupCommit library, which a participant imports for
// its own database without the saga log. SagaKitSQLite re-exports it, so that code importing
// SagaKitSQLite (the store's users, its tests) keeps seeing the writer without a second import.
@_exported public import SQLiteGroupCommit
