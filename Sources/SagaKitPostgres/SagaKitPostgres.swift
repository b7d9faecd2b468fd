// SagaKitPostgres: a saga store on PostgreSQL (`PostgresSagaStore`). Its code compiles only with the
// package trait `Postgres`, which also brings in postgres-nio; without the trait this module is empty
// and postgres-nio is neither fetched nor built. See Docs/POSTGRES.md.
