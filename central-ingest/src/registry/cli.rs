//! `central-ingest plugin`: the registry from the command line, for
//! operators (platform plugins and any merchant's). It talks to the
//! warehouse and the archive of central's config (`[warehouse]` or
//! `CLICKHOUSE_URL`/`CLICKHOUSE_DATABASE`, `archive_dir`), as `admin`
//! does, and validates exactly as the API does. Prints `name: value`
//! lines; `list` prints tables.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand};
use hourglass_archive::Archive;
use hourglass_plugin_host::Limits;
use hourglass_svc::config::load_valid;
use hourglass_warehouse::Warehouse;
use hourglass_warehouse::plugins::{PluginBinding, PluginRow};

use super::{Activation, Owner, PluginRegistry, RegistryError, Scope};
use crate::config::RawConfig;

#[derive(Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    cmd: PluginCmd,
}

/// A merchant's plugin, or a platform one.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct OwnerArgs {
    /// The merchant who owns the plugin (it may run on that merchant's sites).
    #[arg(long)]
    merchant: Option<String>,
    /// A platform plugin (it may run on every site and in the platform chain).
    #[arg(long)]
    platform: bool,
}

/// A site's chain, or the platform chain.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct ScopeArgs {
    /// The site id whose chain to change.
    #[arg(long)]
    site: Option<String>,
    /// The platform chain (runs for every site, before the site's own).
    #[arg(long)]
    platform: bool,
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Validate a component and store it as NAME@VERSION.
    Upload {
        /// The component (`.wasm`, as `cargo xtask plugins` builds them).
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long = "version")]
        plugin_version: String,
        #[command(flatten)]
        owner: OwnerArgs,
        /// Config passed to `init` for the validation (`--config` is
        /// central's own config file).
        #[arg(long = "plugin-config", id = "plugin_config", default_value = "")]
        config: String,
        /// A data file: stored, and passed to `init` for the validation.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Store a data file (patterns, a database) for bindings; prints its SHA-256.
    Data { file: PathBuf },
    /// List plugins and the active bindings.
    List {
        /// Only this merchant's plugins (and the platform's) and its sites' bindings.
        #[arg(long)]
        merchant: Option<String>,
    },
    /// Bind NAME@VERSION in a chain (validated with this config and data).
    Activate {
        name: String,
        plugin_version: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Passed to the plugin's `init` (`--config` is central's own
        /// config file).
        #[arg(long = "plugin-config", id = "plugin_config", default_value = "")]
        config: String,
        /// A data file stored before (`plugin data`), passed to `init`.
        #[arg(long)]
        data_sha256: Option<String>,
        /// `skip-plugin` or `reject-batch`.
        #[arg(long, default_value = "skip-plugin")]
        on_failure: String,
        /// Place in the chain (default: where NAME is already, else last).
        #[arg(long)]
        position: Option<u16>,
    },
    /// Remove NAME from a chain.
    Deactivate {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Restore the binding of NAME before the current one.
    Rollback {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

const BY: &str = "cli";

pub fn run(config_file: Option<&Path>, args: PluginArgs) -> ExitCode {
    let config = match load_valid::<RawConfig>(config_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("central-ingest: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("central-ingest plugin: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let registry = PluginRegistry::new(
            Warehouse::new(&config.warehouse)?,
            Archive::local(&config.archive_dir)?,
            Limits::default(),
            config.registry,
            &prometheus::Registry::new(),
        )?;
        plugin(&registry, args.cmd).await
    });
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("central-ingest plugin: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn read(path: &Path, what: &str) -> anyhow::Result<Bytes> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    Ok(Bytes::from(bytes))
}

async fn scope(registry: &PluginRegistry, args: ScopeArgs) -> Result<Scope, RegistryError> {
    let Some(site_id) = args.site else {
        return Ok(Scope::Platform);
    };
    let sites = registry
        .warehouse()
        .sites()
        .await
        .map_err(|e| RegistryError::Unavailable(e.into()))?;
    let site = sites
        .into_iter()
        .find(|s| s.site_id == site_id)
        .ok_or_else(|| RegistryError::NotFound(format!("no site {site_id}")))?;
    Ok(Scope::Site {
        site_id: site.site_id,
        merchant_id: site.merchant_id,
    })
}

async fn plugin(registry: &PluginRegistry, cmd: PluginCmd) -> anyhow::Result<String> {
    Ok(match cmd {
        PluginCmd::Upload {
            file,
            name,
            plugin_version,
            owner,
            config,
            data,
        } => {
            let owner = match owner.merchant {
                Some(m) => {
                    if registry.warehouse().merchant(&m).await?.is_none() {
                        anyhow::bail!("no merchant {m}");
                    }
                    Owner::Merchant(m)
                }
                None => Owner::Platform,
            };
            let wasm = read(&file, "component").await?;
            let mut out = String::new();
            let data_sha256 = match data {
                Some(path) => {
                    let sha256 = registry
                        .upload_data(read(&path, "data file").await?)
                        .await?;
                    let _ = writeln!(out, "data_sha256: {sha256}");
                    Some(sha256)
                }
                None => None,
            };
            let up = registry
                .upload(
                    &owner,
                    &name,
                    &plugin_version,
                    wasm,
                    &config,
                    data_sha256.as_deref(),
                )
                .await?;
            out.push_str(&plugin_lines(&up.plugin));
            let _ = writeln!(out, "stored: {}", if up.new { "new" } else { "unchanged" });
            out
        }
        PluginCmd::Data { file } => {
            let sha256 = registry
                .upload_data(read(&file, "data file").await?)
                .await?;
            format!("data_sha256: {sha256}\n")
        }
        PluginCmd::List { merchant } => {
            let (owner, scopes) = match merchant {
                Some(m) => {
                    let mut scopes: Vec<String> = registry
                        .warehouse()
                        .sites()
                        .await?
                        .into_iter()
                        .filter(|s| s.merchant_id == m)
                        .map(|s| s.site_id)
                        .collect();
                    scopes.push(String::new());
                    (Owner::Merchant(m), Some(scopes))
                }
                None => (Owner::Platform, None),
            };
            let plugins = registry.plugins(&owner).await?;
            let bindings = registry.bindings(scopes.as_deref()).await?;
            list(&plugins, &bindings)
        }
        PluginCmd::Activate {
            name,
            plugin_version,
            scope: scope_args,
            config,
            data_sha256,
            on_failure,
            position,
        } => {
            let scope = scope(registry, scope_args).await?;
            let b = registry
                .activate(
                    &scope,
                    Activation {
                        name,
                        version: plugin_version,
                        config,
                        data_sha256,
                        on_failure: Some(on_failure),
                        position,
                        by: BY.to_owned(),
                    },
                )
                .await?;
            binding_lines(&b)
        }
        PluginCmd::Deactivate {
            name,
            scope: scope_args,
        } => {
            let scope = scope(registry, scope_args).await?;
            binding_lines(&registry.deactivate(&scope, &name, BY).await?)
        }
        PluginCmd::Rollback {
            name,
            scope: scope_args,
        } => {
            let scope = scope(registry, scope_args).await?;
            binding_lines(&registry.rollback(&scope, &name, BY).await?)
        }
    })
}

fn owner_label(merchant_id: &str) -> &str {
    if merchant_id.is_empty() {
        "platform"
    } else {
        merchant_id
    }
}

fn scope_label(scope: &str) -> &str {
    if scope.is_empty() { "platform" } else { scope }
}

fn plugin_lines(p: &PluginRow) -> String {
    format!(
        "name: {}\nversion: {}\nsha256: {}\nsize_bytes: {}\nowner: {}\nstatus: {}\ndetail: {}\narchive_key: {}\n",
        p.name,
        p.plugin_version,
        p.sha256,
        p.size_bytes,
        owner_label(&p.merchant_id),
        p.status,
        p.status_detail,
        p.archive_key
    )
}

fn binding_lines(b: &PluginBinding) -> String {
    format!(
        "scope: {}\nname: {}\nversion: {}\nsha256: {}\nconfig: {:?}\ndata_sha256: {}\non_failure: {}\nposition: {}\nactive: {}\n",
        scope_label(&b.scope),
        b.name,
        b.plugin_version,
        b.sha256,
        b.config,
        b.data_sha256,
        b.on_failure,
        b.position,
        b.deleted == 0
    )
}

fn list(plugins: &[PluginRow], bindings: &[PluginBinding]) -> String {
    let mut out = String::from("PLUGIN\tVERSION\tOWNER\tSTATUS\tSIZE\tSHA256\tDETAIL\n");
    for p in plugins {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            p.name,
            p.plugin_version,
            owner_label(&p.merchant_id),
            p.status,
            p.size_bytes,
            p.sha256,
            p.status_detail.replace(['\n', '\t'], " ")
        );
    }
    out.push_str("\nSCOPE\tPOSITION\tPLUGIN\tVERSION\tON_FAILURE\tDATA\tCONFIG\n");
    for b in bindings {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{:?}",
            scope_label(&b.scope),
            b.position,
            b.name,
            b.plugin_version,
            b.on_failure,
            if b.data_sha256.is_empty() {
                "-"
            } else {
                &b.data_sha256
            },
            b.config
        );
    }
    out
}
