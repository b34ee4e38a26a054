//! The plugin registry: uploads, validation, content-addressed storage and
//! the bindings that say which plugin runs where. The merchant API
//! (`api/plugins.rs`) and the `plugin` command ([`cli`]) both call it.
//!
//! - **Upload** = size cap → SHA-256 → validation → store → record.
//!   Validation is [`Host::load`] (decode, compile, imports, world, init,
//!   dry run, each within the limits edges run plugins with) with the
//!   config and data blob given for the check, then a second dry run of a
//!   batch of varied sample events through a [`Chain`] (within the call
//!   limits; every event kept or dropped, none lost). Nothing is stored
//!   before it passes; a refused upload is recorded in `plugins` as
//!   `rejected` with the step that failed, and counted by step.
//! - **Storage**: components and data files are blobs in the archive
//!   store under `plugins/blobs/<sha256>` ([`plugin_blob_key`]), written
//!   once. `name@version` is immutable: the same bytes again are a no-op,
//!   other bytes under a taken `name@version` are refused.
//! - **Owners**: a plugin belongs to a merchant or to the platform
//!   (`merchant_id` empty). A merchant's site may run the merchant's own
//!   plugins and platform plugins; the platform chain only platform ones.
//! - **Bindings** (`plugin_bindings`, every change also appended to
//!   `plugin_binding_log`): activating validates again with the binding's
//!   own config and data (so a config that makes `init` fail is refused
//!   before any edge sees it); rollback restores the binding before the
//!   current one; deactivate removes the name from the chain.
//!
//! Must not: ship chains to edges or run plugins on traffic (the control
//! channel and the edges do), or speak SQL (`hourglass_warehouse` does).

pub mod cli;

use std::sync::Arc;

use bytes::Bytes;
use hourglass_archive::{Archive, is_sha256_hex, plugin_blob_key};
use hourglass_model::Event;
use hourglass_plugin_host::{Chain, FailurePolicy, Host, Limits, LoadError, PluginSource};
use hourglass_processing::{HitContext, PluginChain};
use hourglass_warehouse::Warehouse;
use hourglass_warehouse::metadata::MetadataError;
use hourglass_warehouse::plugins::{
    PLATFORM_SCOPE, PluginBinding, PluginRow, STATUS_READY, STATUS_REJECTED,
};
use prometheus::{IntCounterVec, Registry};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Largest `config` string a binding may carry.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Validations running at once (each compiles and runs wasm on a core).
const VALIDATIONS_AT_ONCE: usize = 2;

/// The registry's size caps, from `[registry]` in central's config.
#[derive(Debug, Clone, Copy)]
pub struct RegistryLimits {
    pub max_component_bytes: usize,
    pub max_data_bytes: usize,
}

/// Who owns a plugin, or whose chain a binding changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Platform,
    Merchant(String),
}

impl Owner {
    fn merchant_id(&self) -> &str {
        match self {
            Owner::Platform => "",
            Owner::Merchant(m) => m,
        }
    }

    /// Whether this owner's chains may run `plugin`.
    fn may_run(&self, plugin: &PluginRow) -> bool {
        plugin.merchant_id.is_empty() || plugin.merchant_id == self.merchant_id()
    }
}

/// Where a binding applies: the platform chain, or one site (of `owner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Platform,
    Site {
        site_id: String,
        merchant_id: String,
    },
}

impl Scope {
    /// The `scope` column's value.
    pub fn key(&self) -> &str {
        match self {
            Scope::Platform => PLATFORM_SCOPE,
            Scope::Site { site_id, .. } => site_id,
        }
    }

    fn owner(&self) -> Owner {
        match self {
            Scope::Platform => Owner::Platform,
            Scope::Site { merchant_id, .. } => Owner::Merchant(merchant_id.clone()),
        }
    }
}

/// Why the registry refused or could not do something; each maps to one
/// HTTP status in the API and to a message for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Bad input (a name, a version, a failure policy…): 400.
    #[error("{0}")]
    Invalid(String),
    /// Over a size cap: 413.
    #[error("the {what} is {size} bytes; at most {max} bytes are accepted")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    /// No such plugin, blob, binding or site for this caller: 404.
    #[error("{0}")]
    NotFound(String),
    /// `name@version` is taken by other bytes or another owner: 409.
    #[error("{0}")]
    Conflict(String),
    /// Validation failed at `step`: 422.
    #[error("refused at step `{step}`: {message}")]
    Refused { step: String, message: String },
    /// The warehouse or the archive failed: 503.
    #[error("{0:#}")]
    Unavailable(anyhow::Error),
}

impl From<MetadataError> for RegistryError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Invalid(m) => RegistryError::Invalid(m),
            e @ (MetadataError::NotFound { .. } | MetadataError::Ambiguous { .. }) => {
                RegistryError::NotFound(e.to_string())
            }
            e => RegistryError::Unavailable(e.into()),
        }
    }
}

fn unavailable(e: impl Into<anyhow::Error>) -> RegistryError {
    RegistryError::Unavailable(e.into())
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub plugin: PluginRow,
    /// False when the same bytes were already stored as this `name@version`.
    pub new: bool,
}

/// A binding to make.
#[derive(Debug, Clone)]
pub struct Activation {
    pub name: String,
    pub version: String,
    pub config: String,
    /// A data blob's SHA-256 (uploaded before), passed to `init`.
    pub data_sha256: Option<String>,
    /// `skip-plugin` (default) or `reject-batch`.
    pub on_failure: Option<String>,
    /// Place in the chain; default: where the name already is, else last.
    pub position: Option<u16>,
    /// Who asked (an API key's prefix, `cli`).
    pub by: String,
}

/// The registry: warehouse rows, archive blobs and a plugin host to
/// validate with. Cheap to share (`Arc`).
pub struct PluginRegistry {
    warehouse: Warehouse,
    archive: Archive,
    host: Arc<Host>,
    limits: RegistryLimits,
    validations: Semaphore,
    /// Held from "is this name@version free?" to its row being written,
    /// so two uploads of one name@version in this process cannot both
    /// take it. (Two API processes still can; the later row wins.)
    upload_lock: tokio::sync::Mutex<()>,
    uploads: IntCounterVec,
    refusals: IntCounterVec,
    binding_changes: IntCounterVec,
}

impl PluginRegistry {
    /// A registry validating with `plugin_limits` (the limits edges run
    /// plugins with); its counters go to `metrics`.
    pub fn new(
        warehouse: Warehouse,
        archive: Archive,
        plugin_limits: Limits,
        limits: RegistryLimits,
        metrics: &Registry,
    ) -> anyhow::Result<PluginRegistry> {
        let host = Host::new(plugin_limits)?;
        Ok(PluginRegistry {
            warehouse,
            archive,
            host: Arc::new(host),
            limits,
            validations: Semaphore::new(VALIDATIONS_AT_ONCE),
            upload_lock: tokio::sync::Mutex::new(()),
            uploads: hourglass_svc::metrics::counter_vec(
                metrics,
                "hourglass_central_plugin_uploads_total",
                "Plugin uploads, by outcome: stored, unchanged (same bytes again), refused \
                 (validation failed), conflict (name@version taken).",
                "outcome",
            ),
            refusals: hourglass_svc::metrics::counter_vec(
                metrics,
                "hourglass_central_plugin_refusals_total",
                "Plugin uploads and activations refused by validation, by the step that failed.",
                "step",
            ),
            binding_changes: hourglass_svc::metrics::counter_vec(
                metrics,
                "hourglass_central_plugin_binding_changes_total",
                "Plugin binding changes, by action: activate, deactivate, rollback.",
                "action",
            ),
        })
    }

    pub fn limits(&self) -> RegistryLimits {
        self.limits
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// Uploads a component: checks, validates with `config` and the data
    /// blob `data_sha256` (for plugins whose `init` needs them), stores,
    /// records.
    pub async fn upload(
        &self,
        owner: &Owner,
        name: &str,
        version: &str,
        wasm: Bytes,
        config: &str,
        data_sha256: Option<&str>,
    ) -> Result<Uploaded, RegistryError> {
        check_name(name)?;
        check_version(version)?;
        check_config(config)?;
        if wasm.len() > self.limits.max_component_bytes {
            return Err(RegistryError::TooLarge {
                what: "component",
                size: wasm.len(),
                max: self.limits.max_component_bytes,
            });
        }
        let sha256 = sha256_hex(&wasm);
        let _taking = self.upload_lock.lock().await;
        // Only a stored plugin takes its name@version; a rejected upload
        // leaves it free.
        if let Some(existing) = self
            .warehouse
            .plugin(name, version)
            .await
            .map_err(unavailable)?
            .filter(|p| p.status == STATUS_READY)
        {
            if existing.merchant_id != owner.merchant_id() || existing.sha256 != sha256 {
                self.uploads.with_label_values(&["conflict"]).inc();
                return Err(RegistryError::Conflict(format!(
                    "{name}@{version} is taken; versions never change: upload under a new version"
                )));
            }
            self.uploads.with_label_values(&["unchanged"]).inc();
            return Ok(Uploaded {
                plugin: existing,
                new: false,
            });
        }
        let data = self.data(data_sha256).await?;
        let size_bytes = wasm.len() as u64;
        let row = |status: &str, detail: String, archive_key: String| PluginRow {
            name: name.to_owned(),
            plugin_version: version.to_owned(),
            sha256: sha256.clone(),
            archive_key,
            size_bytes,
            merchant_id: owner.merchant_id().to_owned(),
            status: status.to_owned(),
            status_detail: detail,
            uploaded_at: 0,
            version: 0,
            deleted: 0,
        };
        let declared = match self.validate(name, wasm.to_vec(), config, data).await {
            Ok(declared) => declared,
            Err(RegistryError::Refused { step, message }) => {
                self.uploads.with_label_values(&["refused"]).inc();
                let detail = truncate(&format!("{step}: {message}"), 4096);
                self.warehouse
                    .record_plugin(row(STATUS_REJECTED, detail, String::new()))
                    .await?;
                return Err(RegistryError::Refused { step, message });
            }
            Err(e) => return Err(e),
        };
        let stored = self
            .archive
            .put_plugin_blob(wasm)
            .await
            .map_err(unavailable)?;
        debug_assert_eq!(
            stored, sha256,
            "the archive names blobs by the same SHA-256"
        );
        let plugin = self
            .warehouse
            .record_plugin(row(STATUS_READY, declared, plugin_blob_key(&sha256)))
            .await?;
        self.uploads.with_label_values(&["stored"]).inc();
        Ok(Uploaded { plugin, new: true })
    }

    /// Stores a data file (patterns, a database…) for bindings to name by
    /// its SHA-256, which it returns. Storing the same bytes again is a
    /// no-op.
    pub async fn upload_data(&self, bytes: Bytes) -> Result<String, RegistryError> {
        if bytes.len() > self.limits.max_data_bytes {
            return Err(RegistryError::TooLarge {
                what: "data file",
                size: bytes.len(),
                max: self.limits.max_data_bytes,
            });
        }
        self.archive
            .put_plugin_blob(bytes)
            .await
            .map_err(unavailable)
    }

    /// The plugins `owner` may see: a merchant's own and the platform's;
    /// the platform (operators) sees all.
    pub async fn plugins(&self, owner: &Owner) -> Result<Vec<PluginRow>, RegistryError> {
        match owner {
            Owner::Platform => self.warehouse.plugins(None).await.map_err(unavailable),
            Owner::Merchant(m) => {
                let mut rows = self.warehouse.plugins(Some(m)).await.map_err(unavailable)?;
                // The platform's refused uploads are the operators' business.
                rows.retain(|p| !p.merchant_id.is_empty() || p.status == STATUS_READY);
                Ok(rows)
            }
        }
    }

    /// Live bindings of `scopes` (all with `None`).
    pub async fn bindings(
        &self,
        scopes: Option<&[String]>,
    ) -> Result<Vec<PluginBinding>, RegistryError> {
        self.warehouse
            .plugin_bindings(scopes)
            .await
            .map_err(unavailable)
    }

    /// Binds `name@version` in `scope`, after validating it with the
    /// binding's config and data.
    pub async fn activate(
        &self,
        scope: &Scope,
        a: Activation,
    ) -> Result<PluginBinding, RegistryError> {
        check_config(&a.config)?;
        let on_failure = a.on_failure.as_deref().unwrap_or("skip-plugin");
        on_failure
            .parse::<FailurePolicy>()
            .map_err(RegistryError::Invalid)?;
        let plugin = self
            .warehouse
            .plugin(&a.name, &a.version)
            .await
            .map_err(unavailable)?
            .filter(|p| p.status == STATUS_READY && scope.owner().may_run(p))
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "no plugin {}@{} that this chain may run (upload it first; see GET /api/v1/plugins)",
                    a.name, a.version
                ))
            })?;
        let wasm = self
            .archive
            .get_plugin_blob(&plugin.sha256)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                unavailable(anyhow::anyhow!(
                    "the component of {}@{} ({}) is missing from the archive",
                    a.name,
                    a.version,
                    plugin_blob_key(&plugin.sha256)
                ))
            })?;
        let data = self.data(a.data_sha256.as_deref()).await?;
        self.validate(&a.name, wasm.to_vec(), &a.config, data)
            .await?;
        let current = self
            .warehouse
            .plugin_bindings(Some(&[scope.key().to_owned()]))
            .await
            .map_err(unavailable)?;
        let position = a.position.unwrap_or_else(|| {
            current
                .iter()
                .find(|b| b.name == a.name)
                .map(|b| b.position)
                .or_else(|| current.iter().map(|b| b.position.saturating_add(1)).max())
                .unwrap_or(0)
        });
        let binding = self
            .warehouse
            .bind_plugin(PluginBinding {
                scope: scope.key().to_owned(),
                name: a.name,
                plugin_version: a.version,
                sha256: plugin.sha256,
                config: a.config,
                data_sha256: a.data_sha256.unwrap_or_default(),
                on_failure: on_failure.to_owned(),
                position,
                activated_at: 0,
                activated_by: a.by,
                version: 0,
                deleted: 0,
            })
            .await?;
        self.binding_changes.with_label_values(&["activate"]).inc();
        Ok(binding)
    }

    /// Rolls the binding of `name` in `scope` back to the one before it.
    pub async fn rollback(
        &self,
        scope: &Scope,
        name: &str,
        by: &str,
    ) -> Result<PluginBinding, RegistryError> {
        let binding = self
            .warehouse
            .rollback_plugin(scope.key(), name, by)
            .await?;
        self.binding_changes.with_label_values(&["rollback"]).inc();
        Ok(binding)
    }

    /// Removes `name` from the chain of `scope`.
    pub async fn deactivate(
        &self,
        scope: &Scope,
        name: &str,
        by: &str,
    ) -> Result<PluginBinding, RegistryError> {
        let binding = self.warehouse.unbind_plugin(scope.key(), name, by).await?;
        self.binding_changes
            .with_label_values(&["deactivate"])
            .inc();
        Ok(binding)
    }

    /// The data blob `sha256`, or no data.
    async fn data(&self, sha256: Option<&str>) -> Result<Vec<u8>, RegistryError> {
        let Some(sha256) = sha256.filter(|s| !s.is_empty()) else {
            return Ok(Vec::new());
        };
        if !is_sha256_hex(sha256) {
            return Err(RegistryError::Invalid(format!(
                "data_sha256 {sha256:?} is not a SHA-256 (64 lower-case hex digits)"
            )));
        }
        match self
            .archive
            .get_plugin_blob(sha256)
            .await
            .map_err(unavailable)?
        {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Err(RegistryError::NotFound(format!(
                "no data file {sha256}: upload it first (POST /api/v1/plugins/data)"
            ))),
        }
    }

    /// [`Host::load`] then the sample batch, on a blocking thread; the
    /// fields the plugin declared, or the refusal with its step (counted).
    async fn validate(
        &self,
        name: &str,
        wasm: Vec<u8>,
        config: &str,
        data: Vec<u8>,
    ) -> Result<String, RegistryError> {
        let _permit = self
            .validations
            .acquire()
            .await
            .map_err(|e| unavailable(anyhow::anyhow!("validation closed: {e}")))?;
        let host = self.host.clone();
        let source = PluginSource {
            name: name.to_owned(),
            wasm,
            config: config.to_owned(),
            data,
            on_failure: FailurePolicy::SkipPlugin,
        };
        let outcome = tokio::task::spawn_blocking(move || validate(&host, source))
            .await
            .map_err(|e| unavailable(anyhow::anyhow!("validation thread failed: {e}")))?;
        outcome.map_err(|(step, message)| {
            self.refusals.with_label_values(&[step.as_str()]).inc();
            RegistryError::Refused { step, message }
        })
    }
}

/// The checks, without IO: `Ok` is the declared fields, as
/// `reads: …; writes: …`.
fn validate(host: &Host, source: PluginSource) -> Result<String, (String, String)> {
    let loaded = host
        .load(source)
        .map_err(|LoadError { step, message, .. }| (step.to_string(), message))?;
    let declared = format!(
        "reads: {}; writes: {}",
        loaded.reads().join(", "),
        loaded.writes().join(", ")
    );
    let mut chain = Chain::new("registry-dry-run", vec![loaded]);
    let (events, contexts) = sample_batch();
    let count = events.len();
    let (kept, rejects) = chain.process_in_context(events, &contexts);
    let dry_run = |message: String| ("dry-run".to_owned(), message);
    let stats = chain.stats();
    if stats.iter().any(|s| s.failed_calls() > 0) {
        let why = chain
            .last_failures()
            .into_iter()
            .find_map(|(_, m)| m.map(str::to_owned))
            .unwrap_or_else(|| "the plugin failed".to_owned());
        return Err(dry_run(format!(
            "on a batch of {count} sample events: {why}"
        )));
    }
    if kept.len() + rejects.len() != count {
        return Err(dry_run(format!(
            "{count} sample events in, {} kept and {} dropped",
            kept.len(),
            rejects.len()
        )));
    }
    Ok(declared)
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// A small batch like real traffic: pageviews and custom events, organic,
/// campaign and direct visits, props, a crawler, a mobile browser, a long
/// path with a query string, an empty referrer.
fn sample_batch() -> (Vec<Event>, Vec<HitContext<'static>>) {
    let event = |i: u32, name: &str, path: &str, referrer: &str| Event {
        name: name.to_owned(),
        hostname: "shop.example.com".to_owned(),
        pathname: path.to_owned(),
        referrer: referrer.to_owned(),
        interactive: true,
        hit_index: i,
        ..Event::default()
    };
    let mut events = vec![
        event(0, "pageview", "/", "https://www.google.com/"),
        event(1, "pageview", "/products/shoes", ""),
        event(
            2,
            "signup",
            "/account/new",
            "https://news.example.org/story?id=7",
        ),
        event(
            3,
            "pageview",
            "/search?q=red+shoes&page=2",
            "https://shop.example.com/",
        ),
        event(4, "pageview", "/", ""),
        event(5, "purchase", "/checkout/done", "https://www.bing.com/"),
    ];
    (events[2].utm_source, events[2].utm_medium) = ("newsletter".into(), "email".into());
    events[5].props = vec![hourglass_model::Prop {
        key: "plan".into(),
        value: "pro".into(),
    }];
    let context = |user_agent| HitContext {
        user_agent,
        client_ip: "192.0.2.1",
        accept_language: "en-US,en;q=0.9",
    };
    let contexts = vec![
        context(CHROME),
        context(IPHONE),
        context(CHROME),
        context(IPHONE),
        context(GOOGLEBOT),
        context(CHROME),
    ];
    (events, contexts)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A plugin name: lower-case letters, digits and `-`, starting with a
/// letter, at most 64 characters (it becomes a metric label value at the
/// edges).
fn check_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "plugin name {name:?}: use lower-case letters, digits and `-`, starting with a letter, at most 64 characters"
        )))
    }
}

/// A version: letters, digits, `.`, `-`, `+`, `_`, at most 64 characters.
fn check_version(version: &str) -> Result<(), RegistryError> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "plugin version {version:?}: use letters, digits, `.`, `-`, `+` and `_`, at most 64 characters (e.g. 1.2.0)"
        )))
    }
}

fn check_config(config: &str) -> Result<(), RegistryError> {
    if config.len() > MAX_CONFIG_BYTES {
        return Err(RegistryError::TooLarge {
            what: "config",
            size: config.len(),
            max: MAX_CONFIG_BYTES,
        });
    }
    Ok(())
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_are_checked() {
        assert!(check_name("bot-filter").is_ok());
        assert!(check_name("geo2").is_ok());
        for bad in ["", "Bot", "-x", "a b", "a_b", "a/../b", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_version("1.2.0").is_ok());
        assert!(check_version("2026.11.25+build_7").is_ok());
        for bad in ["", "1 2", "1/2", "'; DROP", &"1".repeat(65)] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashes_are_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&sha256_hex(b"")));
    }

    #[test]
    fn details_are_cut_at_a_character() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a…");
    }

    #[test]
    fn a_merchant_runs_its_own_and_platform_plugins() {
        let row = |merchant: &str| PluginRow {
            name: "p".into(),
            plugin_version: "1".into(),
            sha256: String::new(),
            archive_key: String::new(),
            size_bytes: 0,
            merchant_id: merchant.into(),
            status: STATUS_READY.into(),
            status_detail: String::new(),
            uploaded_at: 0,
            version: 0,
            deleted: 0,
        };
        let m = Owner::Merchant("m_1".into());
        assert!(m.may_run(&row("")));
        assert!(m.may_run(&row("m_1")));
        assert!(!m.may_run(&row("m_2")));
        assert!(Owner::Platform.may_run(&row("")));
        assert!(!Owner::Platform.may_run(&row("m_1")));
    }
}
