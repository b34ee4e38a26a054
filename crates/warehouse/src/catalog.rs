//! Typed reads of what exists on the server (`system.tables`,
//! `system.columns`) and of the migrations ledger (`schema_migrations`,
//! whose DDL is in `warehouse-schema`).

use serde::{Deserialize, Serialize};

use crate::{Warehouse, WarehouseError};

/// A table or view of the database, as `system.tables` describes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, Deserialize)]
pub struct TableInfo {
    pub name: String,
    /// e.g. `MergeTree`, `AggregatingMergeTree`, `MaterializedView`.
    pub engine: String,
    /// Engine with its partition key, sorting key and settings; empty for
    /// views.
    pub engine_full: String,
}

/// A column of a table or view, as `system.columns` describes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, Deserialize)]
pub struct ColumnInfo {
    pub table: String,
    pub name: String,
    /// The server's spelling of the type, e.g. `AggregateFunction(uniq, UInt64)`.
    pub column_type: String,
}

/// One entry of `schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct AppliedMigration {
    pub version: u32,
    pub name: String,
    pub checksum: String,
    /// Unix seconds, UTC.
    pub applied_at: u32,
}

/// The row written to `schema_migrations`.
#[derive(clickhouse::Row, Serialize)]
struct MigrationRecord<'a> {
    version: u32,
    name: &'a str,
    checksum: &'a str,
    applied_at: u32,
}

const MIGRATIONS_TABLE: &str = "schema_migrations";

impl Warehouse {
    /// Every table and view of this database, by name.
    pub async fn tables(&self) -> Result<Vec<TableInfo>, WarehouseError> {
        self.server
            .query(
                "SELECT name, engine, engine_full FROM system.tables \
                 WHERE database = ? ORDER BY name",
            )
            .bind(self.database())
            .fetch_all()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "listing the tables of {}",
                self.database()
            )))
    }

    /// Every column of every table and view of this database, by table and
    /// name.
    pub async fn columns(&self) -> Result<Vec<ColumnInfo>, WarehouseError> {
        self.server
            .query(
                "SELECT table, name, type FROM system.columns \
                 WHERE database = ? ORDER BY table, name",
            )
            .bind(self.database())
            .fetch_all()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "listing the columns of {}",
                self.database()
            )))
    }

    /// Whether a table or view called `name` exists in this database.
    pub async fn table_exists(&self, name: &str) -> Result<bool, WarehouseError> {
        let n = self
            .server
            .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
            .bind(self.database())
            .bind(name)
            .fetch_one::<u64>()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "looking for table {name} in {}",
                self.database()
            )))?;
        Ok(n > 0)
    }

    /// The migrations recorded in `schema_migrations`, one per version, by
    /// version; empty when the table does not exist yet. (Two migrators
    /// racing can record a version twice; the earliest record wins.)
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, WarehouseError> {
        if !self.table_exists(MIGRATIONS_TABLE).await? {
            return Ok(Vec::new());
        }
        self.db
            .query(
                "SELECT version, argMin(name, applied_at), argMin(checksum, applied_at), \
                 toUInt32(min(applied_at)) \
                 FROM schema_migrations GROUP BY version ORDER BY version",
            )
            .fetch_all()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "reading {}.schema_migrations",
                self.database()
            )))
    }

    /// Records that migration `version` has been applied, now.
    pub async fn record_migration(
        &self,
        version: u32,
        name: &str,
        checksum: &str,
    ) -> Result<(), WarehouseError> {
        let applied_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let context = format!(
            "recording migration {version} in {}.schema_migrations",
            self.database()
        );
        let mut insert = self
            .db
            .insert::<MigrationRecord<'_>>(MIGRATIONS_TABLE)
            .await
            .map_err(WarehouseError::clickhouse(context.clone()))?;
        insert
            .write(&MigrationRecord {
                version,
                name,
                checksum,
                applied_at,
            })
            .await
            .map_err(WarehouseError::clickhouse(context.clone()))?;
        insert
            .end()
            .await
            .map_err(WarehouseError::clickhouse(context))
    }
}
