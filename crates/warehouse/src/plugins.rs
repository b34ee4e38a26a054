//! The plugin registry's rows: uploaded plugins (`plugins`, 0004), the
//! active chains (`plugin_bindings`, 0006) and every change to them
//! (`plugin_binding_log`, 0006), which rollback reads.
//!
//! Deciding what may be uploaded or bound (validation, ownership) is the
//! registry's job in `central-ingest`; this module writes and reads rows,
//! every value bound. A binding's `scope` is [`PLATFORM_SCOPE`] (empty:
//! the platform chain, every site) or a `site_id`.
//!
//! Each binding change is written to `plugin_bindings` (latest version per
//! `(scope, name)` wins) and appended to `plugin_binding_log` with the same
//! row, so the log holds the whole history and the table the current
//! state. Versions are milliseconds, at least one more than the binding's
//! last version, so a change made within the same millisecond still wins.

use serde::{Deserialize, Serialize};

use crate::metadata::{MetadataError, now_ms, now_s};
use crate::{Warehouse, WarehouseError};

/// The scope of the platform chain (every site, before the site's own).
pub const PLATFORM_SCOPE: &str = "";

/// `plugins.status` of a plugin that passed validation and is stored.
pub const STATUS_READY: &str = "ready";
/// `plugins.status` of an upload that failed validation (nothing stored).
pub const STATUS_REJECTED: &str = "rejected";

/// A row of `plugins`: one uploaded `name@plugin_version`. `merchant_id`
/// is empty for platform plugins; `archive_key` is empty when nothing was
/// stored (a rejected upload); `status_detail` says what validation found
/// (the failing step and why, or the fields a ready plugin declared).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct PluginRow {
    pub name: String,
    pub plugin_version: String,
    pub sha256: String,
    pub archive_key: String,
    pub size_bytes: u64,
    pub merchant_id: String,
    pub status: String,
    pub status_detail: String,
    pub uploaded_at: u32,
    pub version: u64,
    pub deleted: u8,
}

/// A row of `plugin_bindings` (and of `plugin_binding_log`): plugin
/// `name` at `plugin_version` (component `sha256`) runs in the chain of
/// `scope` at `position`, `init` with `config` and the data blob
/// `data_sha256` (empty: none); `on_failure` is `skip-plugin` or
/// `reject-batch`. `deleted` = 1: the name is no longer bound there.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct PluginBinding {
    pub scope: String,
    pub name: String,
    pub plugin_version: String,
    pub sha256: String,
    pub config: String,
    pub data_sha256: String,
    pub on_failure: String,
    pub position: u16,
    pub activated_at: u32,
    pub activated_by: String,
    pub version: u64,
    pub deleted: u8,
}

impl PluginBinding {
    /// Whether two bindings bind the same thing the same way (times,
    /// authors and versions aside).
    pub fn same_as(&self, other: &PluginBinding) -> bool {
        (
            &self.plugin_version,
            &self.sha256,
            &self.config,
            &self.data_sha256,
            &self.on_failure,
            self.position,
            self.deleted,
        ) == (
            &other.plugin_version,
            &other.sha256,
            &other.config,
            &other.data_sha256,
            &other.on_failure,
            other.position,
            other.deleted,
        )
    }
}

/// Latest version of each plugin (aliases differ from column names: on
/// 18.16 an alias equal to a column inside an aggregate is ambiguous).
const PLUGINS: &str = "SELECT name, plugin_version, argMax(sha256, version) AS h, \
     argMax(archive_key, version) AS k, argMax(size_bytes, version) AS sz, \
     argMax(merchant_id, version) AS m, argMax(status, version) AS st, \
     argMax(status_detail, version) AS sd, argMax(uploaded_at, version) AS u, \
     max(version) AS v, argMax(deleted, version) AS d FROM plugins";

const BINDINGS: &str = "SELECT scope, name, argMax(plugin_version, version) AS pv, \
     argMax(sha256, version) AS h, argMax(config, version) AS c, \
     argMax(data_sha256, version) AS ds, argMax(on_failure, version) AS f, \
     argMax(position, version) AS p, argMax(activated_at, version) AS aa, \
     argMax(activated_by, version) AS ab, max(version) AS v, \
     argMax(deleted, version) AS d FROM plugin_bindings";

const LOG: &str = "SELECT scope, name, plugin_version, sha256, config, data_sha256, \
     on_failure, position, activated_at, activated_by, version, deleted \
     FROM plugin_binding_log WHERE scope = ? AND name = ? ORDER BY version";

impl Warehouse {
    /// The latest row of `name@plugin_version` (ready or rejected), unless
    /// there is none or it is deleted.
    pub async fn plugin(
        &self,
        name: &str,
        plugin_version: &str,
    ) -> Result<Option<PluginRow>, WarehouseError> {
        let sql = format!(
            "{PLUGINS} WHERE name = ? AND plugin_version = ? GROUP BY name, plugin_version"
        );
        let rows = self
            .db
            .query(&sql)
            .bind(name)
            .bind(plugin_version)
            .fetch_all::<PluginRow>()
            .await
            .map_err(WarehouseError::clickhouse("reading plugins"))?;
        Ok(rows.into_iter().find(|p| p.deleted == 0))
    }

    /// Every plugin that is not deleted, by name and version; with
    /// `merchant_id`, only that merchant's and the platform's.
    pub async fn plugins(
        &self,
        merchant_id: Option<&str>,
    ) -> Result<Vec<PluginRow>, WarehouseError> {
        let query = match merchant_id {
            Some(m) => self
                .db
                .query(&format!(
                    "SELECT * FROM ({PLUGINS} GROUP BY name, plugin_version) \
                     WHERE m IN (?, '') ORDER BY name, plugin_version"
                ))
                .bind(m),
            None => self.db.query(&format!(
                "{PLUGINS} GROUP BY name, plugin_version ORDER BY name, plugin_version"
            )),
        };
        let rows = query
            .fetch_all::<PluginRow>()
            .await
            .map_err(WarehouseError::clickhouse("reading plugins"))?;
        Ok(rows.into_iter().filter(|p| p.deleted == 0).collect())
    }

    /// Records an upload's outcome (`row.version` is set here: newer than
    /// any earlier row of the same `name@plugin_version`).
    pub async fn record_plugin(&self, mut row: PluginRow) -> Result<PluginRow, MetadataError> {
        if row.name.is_empty() || row.plugin_version.is_empty() {
            return Err(MetadataError::Invalid(
                "a plugin needs a name and a version".into(),
            ));
        }
        let sql = "SELECT max(version) FROM plugins WHERE name = ? AND plugin_version = ?";
        let last = self
            .db
            .query(sql)
            .bind(&row.name)
            .bind(&row.plugin_version)
            .fetch_one::<u64>()
            .await
            .map_err(WarehouseError::clickhouse("reading plugins"))?;
        row.version = now_ms().max(last + 1);
        if row.uploaded_at == 0 {
            row.uploaded_at = now_s();
        }
        self.insert_rows("plugins", std::slice::from_ref(&row))
            .await?;
        Ok(row)
    }

    /// The live bindings, ordered by scope, position and name; with
    /// `scopes`, only those scopes' (e.g. [`PLATFORM_SCOPE`] and a
    /// merchant's sites).
    pub async fn plugin_bindings(
        &self,
        scopes: Option<&[String]>,
    ) -> Result<Vec<PluginBinding>, WarehouseError> {
        let query = match scopes {
            Some([]) => return Ok(Vec::new()),
            Some(scopes) => self
                .db
                .query(&format!(
                    "SELECT * FROM ({BINDINGS} WHERE has(?, scope) GROUP BY scope, name) \
                     ORDER BY scope, p, name"
                ))
                .bind(scopes),
            None => self.db.query(&format!(
                "SELECT * FROM ({BINDINGS} GROUP BY scope, name) ORDER BY scope, p, name"
            )),
        };
        let rows = query
            .fetch_all::<PluginBinding>()
            .await
            .map_err(WarehouseError::clickhouse("reading plugin_bindings"))?;
        Ok(rows.into_iter().filter(|b| b.deleted == 0).collect())
    }

    /// Every change to the binding of `name` in `scope`, oldest first.
    pub async fn plugin_binding_log(
        &self,
        scope: &str,
        name: &str,
    ) -> Result<Vec<PluginBinding>, WarehouseError> {
        self.db
            .query(LOG)
            .bind(scope)
            .bind(name)
            .fetch_all::<PluginBinding>()
            .await
            .map_err(WarehouseError::clickhouse("reading plugin_binding_log"))
    }

    /// Binds (or, with `deleted` = 1, unbinds) `binding.name` in
    /// `binding.scope`: the row goes to `plugin_bindings` and to the log,
    /// with a version newer than the log's last for that scope and name.
    /// Returns the row written.
    pub async fn bind_plugin(
        &self,
        mut binding: PluginBinding,
    ) -> Result<PluginBinding, MetadataError> {
        if binding.name.is_empty() {
            return Err(MetadataError::Invalid(
                "a binding needs a plugin name".into(),
            ));
        }
        let last = self
            .plugin_binding_log(&binding.scope, &binding.name)
            .await?
            .last()
            .map_or(0, |b| b.version);
        binding.version = now_ms().max(last + 1);
        binding.activated_at = now_s();
        // The log first: a binding visible in `plugin_bindings` is always
        // in the log, so a rollback can find what it replaced.
        self.insert_rows("plugin_binding_log", std::slice::from_ref(&binding))
            .await?;
        self.insert_rows("plugin_bindings", std::slice::from_ref(&binding))
            .await?;
        Ok(binding)
    }

    /// Removes `name` from the chain of `scope`; the removal is logged,
    /// so a rollback brings the binding back.
    pub async fn unbind_plugin(
        &self,
        scope: &str,
        name: &str,
        by: &str,
    ) -> Result<PluginBinding, MetadataError> {
        let log = self.plugin_binding_log(scope, name).await?;
        let current = match log.last() {
            Some(b) if b.deleted == 0 => b.clone(),
            _ => {
                return Err(MetadataError::NotFound {
                    what: "active binding",
                    value: describe(scope, name),
                });
            }
        };
        self.bind_plugin(PluginBinding {
            activated_by: by.to_owned(),
            deleted: 1,
            ..current
        })
        .await
    }

    /// Rolls the binding of `name` in `scope` back to the one before it:
    /// the latest logged state that differs from the current one (a
    /// deletion, too: rolling back a first activation after a
    /// deactivation unbinds). Rolling back twice returns to where it
    /// started, like undo-redo. Returns the row written.
    pub async fn rollback_plugin(
        &self,
        scope: &str,
        name: &str,
        by: &str,
    ) -> Result<PluginBinding, MetadataError> {
        let log = self.plugin_binding_log(scope, name).await?;
        let Some(current) = log.last() else {
            return Err(MetadataError::NotFound {
                what: "binding",
                value: describe(scope, name),
            });
        };
        let Some(previous) = log.iter().rev().find(|b| !b.same_as(current)) else {
            return Err(MetadataError::Invalid(format!(
                "{} has no earlier binding to roll back to",
                describe(scope, name)
            )));
        };
        self.bind_plugin(PluginBinding {
            activated_by: by.to_owned(),
            ..previous.clone()
        })
        .await
    }
}

fn describe(scope: &str, name: &str) -> String {
    if scope == PLATFORM_SCOPE {
        format!("plugin {name} on the platform chain")
    } else {
        format!("plugin {name} on site {scope}")
    }
}
