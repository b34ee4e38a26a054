//! `warehouse-schema`: the ClickHouse schema of Hourglass as numbered,
//! idempotent migrations, and the operations on it (`migrate`, `status`,
//! `check`).
//!
//! Owns the DDL (the `.sql` files under `migrations/`, embedded in the
//! binary) and the `schema_migrations` ledger table. Every other query goes
//! through `hourglass-warehouse`, which this crate uses to talk to the
//! server; nothing here formats a value into SQL.
//!
//! Invariants:
//! - A migration file is a list of statements, each ending with `;` at the
//!   end of a line; whole-line `--` comments are dropped before sending.
//! - Every statement is `CREATE … IF NOT EXISTS`, so a migration that
//!   failed halfway can simply be run again.
//! - A migration is recorded (version, name, checksum) only after all its
//!   statements succeeded; an applied migration is never edited (its
//!   checksum would no longer match and `migrate` refuses to go on).
//! - All SQL runs on ClickHouse 18.16 and on current ClickHouse (the tests
//!   run it on both).

mod drift;
mod migrations;
mod ops;

pub use drift::{Drift, SchemaSnapshot, diff};
pub use migrations::{LEDGER_SQL, MIGRATIONS, Migration, split_statements, statements_json};
pub use ops::{
    CheckReport, MigrateReport, MigrationState, SchemaError, StatusReport, check, migrate,
    snapshot, status,
};
