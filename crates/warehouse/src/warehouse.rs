//! [`Warehouse`]: a configured client, database housekeeping, raw DDL and
//! the bulk insert of events.

use clickhouse::{Client, Compression};
use hourglass_model::{BatchId, Event};

use crate::event_native::NativeBlock;
use crate::{WarehouseConfig, WarehouseError, event_row::EventRow};

/// A handle on one database of one ClickHouse server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Warehouse {
    /// Queries run in `database`.
    pub(crate) db: Client,
    /// No default database: for `CREATE/DROP DATABASE`, which must work
    /// when the database does not exist.
    pub(crate) server: Client,
    database: String,
    config: WarehouseConfig,
}

impl Warehouse {
    /// A client for `config` (validated here; nothing is sent to the server).
    pub fn new(config: &WarehouseConfig) -> Result<Self, WarehouseError> {
        config.validate()?;
        let mut server = Client::default()
            .with_url(&config.url)
            // 18.16: validation makes the client send settings it rejects.
            .with_validation(false)
            .with_compression(Compression::Lz4);
        if let Some(user) = &config.user {
            server = server.with_user(user);
        }
        if let Some(password) = &config.password {
            server = server.with_password(password);
        }
        Ok(Warehouse {
            db: server.clone().with_database(&config.database),
            server,
            database: config.database.clone(),
            config: config.clone(),
        })
    }

    /// The same server and credentials, another database (e.g. a scratch
    /// database for a schema check).
    pub fn for_database(&self, database: &str) -> Result<Self, WarehouseError> {
        Warehouse::new(&WarehouseConfig {
            database: database.to_owned(),
            ..self.config.clone()
        })
    }

    /// The database this handle works in.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The server's URL as configured.
    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// The server's version string, e.g. `18.16.1`; also a connectivity check.
    pub async fn server_version(&self) -> Result<String, WarehouseError> {
        self.server
            .query("SELECT version()")
            .fetch_one::<String>()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "asking {} for its version",
                self.config.url
            )))
    }

    /// `CREATE DATABASE IF NOT EXISTS` for this handle's database.
    pub async fn create_database(&self) -> Result<(), WarehouseError> {
        // The name was validated as a plain identifier in `new`.
        let sql = format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database);
        self.server
            .query_raw(&sql)
            .execute()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "creating database {}",
                self.database
            )))
    }

    /// `DROP DATABASE IF EXISTS` for this handle's database, with every
    /// table in it.
    pub async fn drop_database(&self) -> Result<(), WarehouseError> {
        // The name was validated as a plain identifier in `new`.
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.database);
        self.server
            .query_raw(&sql)
            .execute()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "dropping database {}",
                self.database
            )))
    }

    /// Whether this handle's database exists on the server.
    pub async fn database_exists(&self) -> Result<bool, WarehouseError> {
        let n = self
            .server
            .query("SELECT count() FROM system.databases WHERE name = ?")
            .bind(&self.database)
            .fetch_one::<u64>()
            .await
            .map_err(WarehouseError::clickhouse("listing databases"))?;
        Ok(n > 0)
    }

    /// Runs one statement in this database, verbatim (no `?` binding), for
    /// DDL written by `warehouse-schema`. Never pass user input here.
    pub async fn execute(&self, sql: &str) -> Result<(), WarehouseError> {
        self.db
            .query_raw(sql)
            .execute()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "executing in database {}: {}",
                self.database,
                first_line(sql)
            )))
    }

    /// Inserts `events` into `events`, stamped with `batch_id` and
    /// `plugin_set`, as one `Native` insert. Returns the number of rows
    /// sent.
    ///
    /// Every event is checked first: if one has a time `DateTime` cannot
    /// hold, nothing is sent. The insert is atomic only per block and per
    /// day partition (ClickHouse), so a failure can leave part of the batch
    /// loaded; the loads ledger decides what to do about that.
    pub async fn insert_events(
        &self,
        batch_id: &BatchId,
        plugin_set: &str,
        events: &[Event],
    ) -> Result<u64, WarehouseError> {
        let batch = batch_id.to_string();
        let out_of_range =
            |index, e: crate::event_row::OutOfRange| WarehouseError::TimestampOutOfRange {
                batch_id: batch.clone(),
                index,
                field: e.field,
                value_ms: e.value_ms,
            };
        if events.is_empty() {
            return Ok(0);
        }
        let rows = events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                EventRow::new(event, &batch, plugin_set).map_err(|e| out_of_range(index, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let context = |what: &str| {
            format!(
                "inserting batch {batch} into {}.events: {what}",
                self.database
            )
        };
        self.send_native_events(&[&NativeBlock::encode(&rows)], context)
            .await
    }
}

/// The first line of a statement that is not a comment, for error messages.
fn first_line(sql: &str) -> &str {
    sql.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--"))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_validates_without_a_server() {
        let bad = WarehouseConfig {
            database: "a.b".into(),
            ..Default::default()
        };
        assert!(matches!(
            Warehouse::new(&bad),
            Err(WarehouseError::InvalidIdentifier { .. })
        ));
        let wh = Warehouse::new(&WarehouseConfig::default()).unwrap();
        assert_eq!(wh.database(), "hourglass");
        assert!(wh.for_database("x y").is_err());
        assert_eq!(
            wh.for_database("scratch_1").unwrap().database(),
            "scratch_1"
        );
    }

    #[test]
    fn first_line_skips_comments() {
        assert_eq!(
            first_line("-- c\n\n  CREATE TABLE x\n(a UInt8)"),
            "CREATE TABLE x"
        );
        assert_eq!(first_line(""), "");
    }
}
