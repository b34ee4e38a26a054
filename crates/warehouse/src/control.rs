//! What the control channel sends edges, read from metadata
//! (`0004_metadata.sql`, `0006_control.sql`): live sites, their GA4
//! streams and Segment write keys (`site_streams`), and the active plugin
//! bindings (`plugin_bindings`), with one version that grows whenever any
//! of them changes. Also the writes behind `admin site add --ga4 …`,
//! `admin site delete`, and a binding write.
//!
//! Every table is `ReplacingMergeTree(version)`; reads take the latest
//! version per key with `argMax` and skip deleted rows (aliases differ from
//! column names: 18.16 rules).

use std::collections::BTreeMap;

use hourglass_processing::{
    ControlState, Ga4Stream, PluginBinding, PluginChains, SiteConfig, SiteDirectory,
};
use serde::{Deserialize, Serialize};

use crate::metadata::{MetadataError, Site, now_ms, now_s};
use crate::{Warehouse, WarehouseError};

/// `site_streams.kind` of a GA4 data stream (`stream_id` = measurement id,
/// `secret` = Measurement Protocol API secret).
pub const STREAM_GA4: &str = "ga4";
/// `site_streams.kind` of a Segment write key (`stream_id` = the key).
pub const STREAM_SEGMENT: &str = "segment";

/// A row of `site_streams` (latest version).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct SiteStream {
    pub site_id: String,
    pub kind: String,
    pub stream_id: String,
    pub secret: String,
    pub created_at: u32,
    pub version: u64,
    pub deleted: u8,
}

/// A row of `plugin_bindings` (latest version): `scope` empty is the
/// platform chain, else a site id; `position` orders a chain.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct PluginBindingRow {
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

/// The live metadata an edge needs, and its version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlRows {
    /// The highest row version of `sites`, `site_streams` and
    /// `plugin_bindings`, deleted rows included: any change makes it grow.
    pub version: u64,
    pub sites: Vec<Site>,
    pub streams: Vec<SiteStream>,
    /// Sorted by scope, then position, then name.
    pub bindings: Vec<PluginBindingRow>,
}

const STREAMS: &str = "SELECT site_id, kind, stream_id, argMax(secret, version) AS sec, \
     argMax(created_at, version) AS c, max(version) AS v, argMax(deleted, version) AS d \
     FROM site_streams GROUP BY site_id, kind, stream_id";

const BINDINGS: &str = "SELECT scope, name, argMax(plugin_version, version) AS pv, \
     argMax(sha256, version) AS sha, argMax(config, version) AS cfg, \
     argMax(data_sha256, version) AS dsha, argMax(on_failure, version) AS onf, \
     argMax(position, version) AS pos, argMax(activated_at, version) AS act_at, \
     argMax(activated_by, version) AS actor, max(version) AS v, argMax(deleted, version) AS d \
     FROM plugin_bindings GROUP BY scope, name";

const VERSION: &str = "SELECT greatest(greatest((SELECT max(version) FROM sites), \
     (SELECT max(version) FROM site_streams)), (SELECT max(version) FROM plugin_bindings))";

impl Warehouse {
    /// Live sites, streams and bindings, with their common version.
    pub async fn control_rows(&self) -> Result<ControlRows, WarehouseError> {
        // The version first: a change landing between the reads gives a
        // newer version on the next refresh, never an old version for new rows.
        let version = self
            .db
            .query(VERSION)
            .fetch_one::<u64>()
            .await
            .map_err(WarehouseError::clickhouse("reading the metadata version"))?;
        let sites = self.sites().await?;
        let streams = self
            .db
            .query(STREAMS)
            .fetch_all::<SiteStream>()
            .await
            .map_err(WarehouseError::clickhouse("reading site_streams"))?
            .into_iter()
            .filter(|s| s.deleted == 0)
            .collect();
        let mut bindings: Vec<PluginBindingRow> = self
            .db
            .query(BINDINGS)
            .fetch_all::<PluginBindingRow>()
            .await
            .map_err(WarehouseError::clickhouse("reading plugin_bindings"))?
            .into_iter()
            .filter(|b| b.deleted == 0)
            .collect();
        bindings
            .sort_by(|a, b| (&a.scope, a.position, &a.name).cmp(&(&b.scope, b.position, &b.name)));
        Ok(ControlRows {
            version,
            sites,
            streams,
            bindings,
        })
    }

    /// Adds a GA4 stream (`kind` [`STREAM_GA4`], with its API secret) or a
    /// Segment write key ([`STREAM_SEGMENT`], no secret) to a live site.
    /// A measurement id or write key may belong to one site only.
    pub async fn add_site_stream(
        &self,
        site_id: &str,
        kind: &str,
        stream_id: &str,
        secret: &str,
    ) -> Result<SiteStream, MetadataError> {
        let stream_id = stream_id.trim();
        match kind {
            STREAM_GA4 if stream_id.is_empty() || secret.is_empty() => {
                return Err(MetadataError::Invalid(
                    "a GA4 stream needs a measurement id and an API secret (G-XXXX:SECRET)".into(),
                ));
            }
            STREAM_SEGMENT if stream_id.is_empty() => {
                return Err(MetadataError::Invalid(
                    "a Segment write key must not be empty".into(),
                ));
            }
            STREAM_GA4 | STREAM_SEGMENT => {}
            other => {
                return Err(MetadataError::Invalid(format!(
                    "{other:?} is not a stream kind (ga4 or segment)"
                )));
            }
        }
        if !self.sites().await?.iter().any(|s| s.site_id == site_id) {
            return Err(MetadataError::NotFound {
                what: "live site",
                value: site_id.to_owned(),
            });
        }
        let taken = self
            .control_rows()
            .await?
            .streams
            .into_iter()
            .find(|s| s.kind == kind && s.stream_id == stream_id && s.site_id != site_id);
        if let Some(taken) = taken {
            return Err(MetadataError::Invalid(format!(
                "that {kind} id belongs to site {} already",
                taken.site_id
            )));
        }
        let row = SiteStream {
            site_id: site_id.to_owned(),
            kind: kind.to_owned(),
            stream_id: stream_id.to_owned(),
            secret: secret.to_owned(),
            created_at: now_s(),
            version: now_ms(),
            deleted: 0,
        };
        self.insert_rows("site_streams", std::slice::from_ref(&row))
            .await?;
        Ok(row)
    }

    /// Sets the hostnames pages of a live site may have (see
    /// `SiteConfig::allowed_hostnames`: exact, `*.domain`, or `*`).
    pub async fn set_allowed_hostnames(
        &self,
        site_id: &str,
        hostnames: &[String],
    ) -> Result<Site, MetadataError> {
        if hostnames
            .iter()
            .any(|h| h.trim().is_empty() || h.contains(['/', ' ']))
        {
            return Err(MetadataError::Invalid(format!(
                "{hostnames:?}: a hostname is empty or has a '/' or a space"
            )));
        }
        let mut site = self
            .sites()
            .await?
            .into_iter()
            .find(|s| s.site_id == site_id)
            .ok_or_else(|| MetadataError::NotFound {
                what: "live site",
                value: site_id.to_owned(),
            })?;
        site.allowed_hostnames = hostnames.iter().map(|h| h.trim().to_owned()).collect();
        site.version = now_ms().max(site.version + 1);
        self.insert_rows("sites", std::slice::from_ref(&site))
            .await?;
        Ok(site)
    }

    /// Deletes a live site (a higher version with `deleted` = 1): edges stop
    /// admitting its hits once the control channel brings the change.
    pub async fn delete_site(&self, site_id: &str) -> Result<Site, MetadataError> {
        let mut site = self
            .sites()
            .await?
            .into_iter()
            .find(|s| s.site_id == site_id)
            .ok_or_else(|| MetadataError::NotFound {
                what: "live site",
                value: site_id.to_owned(),
            })?;
        site.version = now_ms().max(site.version + 1);
        site.deleted = 1;
        self.insert_rows("sites", std::slice::from_ref(&site))
            .await?;
        Ok(site)
    }

    /// Writes one plugin binding (activation, or deactivation with
    /// `deleted` = 1) to `plugin_bindings` and appends it to
    /// `plugin_binding_log`. Its `version` is made to exceed the current
    /// binding's, so the write always wins.
    pub async fn write_plugin_binding(
        &self,
        mut row: PluginBindingRow,
    ) -> Result<PluginBindingRow, WarehouseError> {
        let current = self
            .db
            .query(&format!(
                "SELECT * FROM ({BINDINGS}) WHERE scope = ? AND name = ?"
            ))
            .bind(&row.scope)
            .bind(&row.name)
            .fetch_all::<PluginBindingRow>()
            .await
            .map_err(WarehouseError::clickhouse("reading plugin_bindings"))?;
        let floor = current.iter().map(|b| b.version + 1).max().unwrap_or(0);
        row.version = row.version.max(now_ms()).max(floor);
        if row.activated_at == 0 {
            row.activated_at = now_s();
        }
        self.insert_rows("plugin_bindings", std::slice::from_ref(&row))
            .await?;
        self.insert_rows("plugin_binding_log", std::slice::from_ref(&row))
            .await?;
        Ok(row)
    }
}

impl ControlRows {
    /// The state central serves edges (and `reprocess --plugins registry`
    /// runs): the site directory and the plugin chains of live sites;
    /// `Err` when the directory does not validate.
    pub fn state(&self) -> Result<ControlState, String> {
        let rows = self;
        let sites: Vec<SiteConfig> = rows
            .sites
            .iter()
            .map(|site| {
                let streams = rows.streams.iter().filter(|s| s.site_id == site.site_id);
                SiteConfig {
                    site_id: site.site_id.clone(),
                    domain: site.domain.clone(),
                    allowed_hostnames: site.allowed_hostnames.clone(),
                    timezone: site.timezone.clone(),
                    ga4: streams
                        .clone()
                        .filter(|s| s.kind == STREAM_GA4)
                        .map(|s| Ga4Stream {
                            measurement_id: s.stream_id.clone(),
                            api_secret: s.secret.clone(),
                        })
                        .collect(),
                    segment_write_keys: streams
                        .filter(|s| s.kind == STREAM_SEGMENT)
                        .map(|s| s.stream_id.clone())
                        .collect(),
                }
            })
            .collect();
        let directory = SiteDirectory::new(rows.version, sites).map_err(|e| e.to_string())?;
        let binding = |row: &PluginBindingRow| PluginBinding {
            name: row.name.clone(),
            plugin_version: row.plugin_version.clone(),
            sha256: row.sha256.clone(),
            config: row.config.clone(),
            data_sha256: row.data_sha256.clone(),
            on_failure: row.on_failure.clone(),
        };
        // Rows come sorted by scope, position, name.
        let platform = rows
            .bindings
            .iter()
            .filter(|b| b.scope.is_empty())
            .map(binding)
            .collect();
        let mut per_site: BTreeMap<String, Vec<PluginBinding>> = BTreeMap::new();
        for row in rows.bindings.iter().filter(|b| !b.scope.is_empty()) {
            // A chain of a deleted (or unknown) site has no hits to run on.
            if directory.by_site_id(&row.scope).is_some() {
                per_site
                    .entry(row.scope.clone())
                    .or_default()
                    .push(binding(row));
            }
        }
        let plugins = PluginChains::new(platform, per_site);
        plugins.validate().map_err(|e| e.to_string())?;
        Ok(ControlState {
            version: rows.version,
            sites: directory,
            plugins,
        })
    }
}

#[cfg(test)]
mod tests {
    use hourglass_processing::ControlState;

    use super::*;

    fn site(id: &str, domain: &str) -> Site {
        Site {
            site_id: id.into(),
            merchant_id: "m".into(),
            domain: domain.into(),
            allowed_hostnames: vec![],
            timezone: "UTC".into(),
            created_at: 0,
            version: 1,
            deleted: 0,
        }
    }

    fn stream(site: &str, kind: &str, id: &str, secret: &str) -> SiteStream {
        SiteStream {
            site_id: site.into(),
            kind: kind.into(),
            stream_id: id.into(),
            secret: secret.into(),
            created_at: 0,
            version: 1,
            deleted: 0,
        }
    }

    fn binding(scope: &str, name: &str, position: u16) -> PluginBindingRow {
        PluginBindingRow {
            scope: scope.into(),
            name: name.into(),
            plugin_version: "1".into(),
            sha256: "a".repeat(64),
            config: String::new(),
            data_sha256: String::new(),
            on_failure: "skip-plugin".into(),
            position,
            activated_at: 0,
            activated_by: String::new(),
            version: 1,
            deleted: 0,
        }
    }

    #[test]
    fn the_state_carries_streams_and_chains_of_live_sites() {
        let rows = ControlRows {
            version: 42,
            sites: vec![site("a", "a.example"), site("b", "b.example")],
            streams: vec![
                stream("a", STREAM_GA4, "G-A", "secret-a"),
                stream("a", STREAM_SEGMENT, "wk_a", ""),
            ],
            bindings: vec![
                binding("", "bot-filter", 0),
                binding("", "channel", 1),
                binding("a", "pii-scrub", 0),
                binding("gone", "ua-parse", 0),
            ],
        };
        let state = rows.state().unwrap();
        assert_eq!(state.version, 42);
        assert_eq!(state.sites.version(), 42);
        let (a, ga4) = state.sites.by_measurement_id("G-A").unwrap();
        assert_eq!(
            (a.site_id.as_str(), ga4.api_secret.as_str()),
            ("a", "secret-a")
        );
        assert_eq!(state.sites.by_write_key("wk_a").unwrap().site_id, "a");
        let names: Vec<&str> = state
            .plugins
            .platform
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(names, ["bot-filter", "channel"]);
        assert_eq!(
            state.plugins.sites.keys().collect::<Vec<_>>(),
            ["a"],
            "no chain for a site that is gone"
        );
        // What the edge checks on arrival holds.
        let again = ControlState::from_json(&state.to_json()).unwrap();
        assert_eq!(again.plugins, state.plugins);
    }

    #[test]
    fn a_directory_that_does_not_validate_is_refused() {
        let rows = ControlRows {
            version: 1,
            sites: vec![site("a", "a.example"), site("b", "b.example")],
            streams: vec![
                stream("a", STREAM_GA4, "G-SAME", "x"),
                stream("b", STREAM_GA4, "G-SAME", "y"),
            ],
            bindings: vec![],
        };
        let err = rows.state().unwrap_err();
        assert!(err.contains("G-SAME"), "{err}");
    }
}
