//! `migrate`, `status` and `check` against a server, through
//! [`Warehouse`].

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};

use hourglass_warehouse::{AppliedMigration, Warehouse, WarehouseError};

use crate::{Drift, LEDGER_SQL, MIGRATIONS, Migration, SchemaSnapshot, diff};

/// Why a schema operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),

    /// An applied migration's file was edited afterwards.
    #[error(
        "migration {label} was applied with checksum {recorded} but this build has {expected}: \
         applied migrations must not be edited; add a new migration instead"
    )]
    ChecksumMismatch {
        label: String,
        recorded: String,
        expected: String,
    },

    /// A statement of a migration failed; the migration is not recorded and
    /// can be run again once the cause is fixed.
    #[error("migration {label}, statement {number} of {total}, failed")]
    Statement {
        label: String,
        number: usize,
        total: usize,
        #[source]
        source: WarehouseError,
    },
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Labels (`0002_rollups`) of the migrations applied by this run, in order.
    pub applied: Vec<String>,
    /// How many were already applied before this run.
    pub already_applied: usize,
    /// Recorded versions this build does not know (a newer build applied them).
    pub unknown: Vec<AppliedMigration>,
}

/// Where one migration of this build stands on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    /// Applied at this Unix time, unchanged since.
    Applied {
        at: u32,
    },
    /// Applied, but the file has changed since (checksum differs).
    Edited {
        at: u32,
        recorded: String,
    },
    Pending,
}

/// What `status` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub database_exists: bool,
    /// Every migration of this build, in order.
    pub migrations: Vec<(&'static Migration, MigrationState)>,
    /// Recorded versions this build does not know.
    pub unknown: Vec<AppliedMigration>,
}

impl StatusReport {
    pub fn pending(&self) -> usize {
        self.migrations
            .iter()
            .filter(|(_, s)| *s == MigrationState::Pending)
            .count()
    }
}

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The scratch database the expected schema was built in (dropped).
    pub scratch_database: String,
    pub drift: Vec<Drift>,
}

/// Creates the database if missing and applies, in order, every migration
/// not yet recorded. Running it again applies nothing.
pub async fn migrate(warehouse: &Warehouse) -> Result<MigrateReport, SchemaError> {
    warehouse.create_database().await?;
    warehouse.execute(LEDGER_SQL).await?;
    let recorded = recorded_by_version(warehouse).await?;
    for m in MIGRATIONS {
        if let Some(r) = recorded.get(&m.version) {
            check_checksum(m, r)?;
        }
    }

    let mut applied = Vec::new();
    for m in MIGRATIONS
        .iter()
        .filter(|m| !recorded.contains_key(&m.version))
    {
        let statements = m.statements();
        let total = statements.len();
        for (i, statement) in statements.iter().enumerate() {
            warehouse
                .execute(statement)
                .await
                .map_err(|source| SchemaError::Statement {
                    label: m.label(),
                    number: i + 1,
                    total,
                    source,
                })?;
        }
        warehouse
            .record_migration(m.version, m.name, &m.checksum())
            .await?;
        applied.push(m.label());
    }
    Ok(MigrateReport {
        already_applied: MIGRATIONS.len() - applied.len(),
        applied,
        unknown: unknown(recorded),
    })
}

/// Which migrations are applied and which are pending. Changes nothing.
pub async fn status(warehouse: &Warehouse) -> Result<StatusReport, SchemaError> {
    let database_exists = warehouse.database_exists().await?;
    let recorded = if database_exists {
        recorded_by_version(warehouse).await?
    } else {
        BTreeMap::new()
    };
    let migrations = MIGRATIONS
        .iter()
        .map(|m| {
            let state = match recorded.get(&m.version) {
                None => MigrationState::Pending,
                Some(r) if r.checksum == m.checksum() => {
                    MigrationState::Applied { at: r.applied_at }
                }
                Some(r) => MigrationState::Edited {
                    at: r.applied_at,
                    recorded: r.checksum.clone(),
                },
            };
            (m, state)
        })
        .collect();
    Ok(StatusReport {
        database_exists,
        migrations,
        unknown: unknown(recorded),
    })
}

/// The tables and columns of the warehouse's database (empty when it does
/// not exist).
pub async fn snapshot(warehouse: &Warehouse) -> Result<SchemaSnapshot, SchemaError> {
    if !warehouse.database_exists().await? {
        return Ok(SchemaSnapshot::default());
    }
    Ok(SchemaSnapshot::new(
        warehouse.tables().await?,
        warehouse.columns().await?,
    ))
}

/// Compares the server's database with what this build's migrations make:
/// migrates a scratch database `<db>__check_<random>` on the same server
/// (so types are spelled by the same server version), compares tables
/// (name, engine with keys and settings) and columns (name, type), and drops
/// the scratch database again, also when something failed.
pub async fn check(warehouse: &Warehouse) -> Result<CheckReport, SchemaError> {
    let scratch_name = format!(
        "{}__check_{:016x}",
        warehouse.database(),
        RandomState::new().hash_one(std::process::id())
    );
    let scratch = warehouse.for_database(&scratch_name)?;
    let expected = async {
        migrate(&scratch).await?;
        snapshot(&scratch).await
    }
    .await;
    let dropped = scratch.drop_database().await;
    let expected = expected?;
    dropped?;

    let actual = snapshot(warehouse).await?;
    Ok(CheckReport {
        scratch_database: scratch_name,
        drift: diff(&expected, &actual),
    })
}

async fn recorded_by_version(
    warehouse: &Warehouse,
) -> Result<BTreeMap<u32, AppliedMigration>, SchemaError> {
    Ok(warehouse
        .applied_migrations()
        .await?
        .into_iter()
        .map(|m| (m.version, m))
        .collect())
}

fn check_checksum(m: &Migration, recorded: &AppliedMigration) -> Result<(), SchemaError> {
    let expected = m.checksum();
    if recorded.checksum == expected {
        Ok(())
    } else {
        Err(SchemaError::ChecksumMismatch {
            label: m.label(),
            recorded: recorded.checksum.clone(),
            expected,
        })
    }
}

fn unknown(recorded: BTreeMap<u32, AppliedMigration>) -> Vec<AppliedMigration> {
    recorded
        .into_values()
        .filter(|r| MIGRATIONS.iter().all(|m| m.version != r.version))
        .collect()
}
