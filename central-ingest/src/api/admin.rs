//! Merchants, sites, API keys and edges, written straight to the warehouse.
//!
//! Two front ends run the very same [`execute`] on an [`Op`], so they
//! cannot diverge: `central-ingest admin …` (this module's CLI, with
//! `[warehouse]` of the config, or `CLICKHOUSE_URL` and
//! `CLICKHOUSE_DATABASE`), which prints `name: value` lines, and the admin
//! HTTP API (`/api/v1/admin/…`, see `admin_http`), which answers the same
//! values as JSON. An API key is shown once, when made, and never stored
//! (only its SHA-256).

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hourglass_pki::CertDir;
use hourglass_svc::config::load_valid;
use hourglass_warehouse::Warehouse;
use hourglass_warehouse::control::{STREAM_GA4, STREAM_SEGMENT};
use hourglass_warehouse::metadata::MetadataError;
use serde_json::{Value, json};

use crate::config::RawConfig;

#[derive(Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    cmd: Admin,
}

#[derive(Subcommand)]
enum Admin {
    /// Merchants (the accounts that own sites and keys).
    #[command(subcommand)]
    Merchant(MerchantCmd),
    /// Sites (a domain whose events a merchant reads).
    #[command(subcommand)]
    Site(SiteCmd),
    /// API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Edges (their certificates and what the loads ledger says of them).
    #[command(subcommand)]
    Edge(EdgeCmd),
}

#[derive(Subcommand)]
enum MerchantCmd {
    /// Add a merchant; prints its id.
    Add { name: String },
}

#[derive(Subcommand)]
enum SiteCmd {
    /// Add a site; prints its id (the `site_id` its events carry).
    Add {
        #[arg(long)]
        merchant: String,
        /// The domain merchants name the site by in queries.
        #[arg(long)]
        domain: String,
        /// IANA time zone, the default zone of the site's queries.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// The site id events carry (default: a new random one).
        #[arg(long)]
        id: Option<String>,
        /// A GA4 data stream admitting Measurement Protocol hits to the
        /// site: `MEASUREMENT_ID:API_SECRET` (repeatable).
        #[arg(long = "ga4", value_name = "G-XXXX:SECRET")]
        ga4: Vec<String>,
        /// A Segment / RudderStack write key admitting hits to the site
        /// (repeatable).
        #[arg(long = "segment-write-key", value_name = "KEY")]
        segment_write_keys: Vec<String>,
        /// A hostname pages of the site may have (repeatable): exact,
        /// `*.example.com`, or `*` for any. Default: the domain and its
        /// subdomains.
        #[arg(long = "allowed-hostname", value_name = "HOST")]
        allowed_hostnames: Vec<String>,
    },
    /// Delete a site: edges stop admitting its hits (its events stay).
    Delete { site_id: String },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Make an API key; prints it once.
    Create {
        #[arg(long)]
        merchant: String,
        /// Limit the key to this site id (repeatable; default: every site
        /// of the merchant, including later ones).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// A label for listings.
        #[arg(long, default_value = "")]
        name: String,
        /// Requests per minute (0: the service's default).
        #[arg(long, default_value_t = 0)]
        rate_limit: u32,
    },
    /// Revoke a key by its public prefix (`hgk_` + 8) or its SHA-256.
    Revoke { prefix_or_hash: String },
}

#[derive(Subcommand)]
enum EdgeCmd {
    /// Every edge with a certificate in `certs_dir` or batches in the
    /// loads ledger.
    List,
}

/// One admin operation, whichever front end asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    MerchantAdd {
        name: String,
    },
    SiteAdd {
        merchant_id: String,
        domain: String,
        timezone: String,
        site_id: Option<String>,
        /// GA4 streams as `MEASUREMENT_ID:API_SECRET`.
        ga4: Vec<String>,
        segment_write_keys: Vec<String>,
        allowed_hostnames: Vec<String>,
    },
    SiteDelete {
        site_id: String,
    },
    KeyCreate {
        merchant_id: String,
        site_ids: Vec<String>,
        name: String,
        rate_limit_per_minute: u32,
    },
    KeyRevoke {
        prefix_or_hash: String,
    },
    EdgeList,
}

impl From<Admin> for Op {
    fn from(cmd: Admin) -> Op {
        match cmd {
            Admin::Merchant(MerchantCmd::Add { name }) => Op::MerchantAdd { name },
            Admin::Site(SiteCmd::Add {
                merchant,
                domain,
                timezone,
                id,
                ga4,
                segment_write_keys,
                allowed_hostnames,
            }) => Op::SiteAdd {
                merchant_id: merchant,
                domain,
                timezone,
                site_id: id,
                ga4,
                segment_write_keys,
                allowed_hostnames,
            },
            Admin::Site(SiteCmd::Delete { site_id }) => Op::SiteDelete { site_id },
            Admin::Key(KeyCmd::Create {
                merchant,
                sites,
                name,
                rate_limit,
            }) => Op::KeyCreate {
                merchant_id: merchant,
                site_ids: sites,
                name,
                rate_limit_per_minute: rate_limit,
            },
            Admin::Key(KeyCmd::Revoke { prefix_or_hash }) => Op::KeyRevoke { prefix_or_hash },
            Admin::Edge(EdgeCmd::List) => Op::EdgeList,
        }
    }
}

/// Runs `op` against `warehouse` (and, for edges, the CA directory).
/// Returns the answer as a JSON object: what the HTTP API sends and the
/// CLI prints.
pub async fn execute(
    warehouse: &Warehouse,
    certs: &CertDir,
    op: Op,
) -> Result<Value, MetadataError> {
    Ok(match op {
        Op::MerchantAdd { name } => {
            let m = warehouse.add_merchant(&name).await?;
            json!({"merchant_id": m.merchant_id, "name": m.name})
        }
        Op::SiteAdd {
            merchant_id,
            domain,
            timezone,
            site_id,
            ga4,
            segment_write_keys,
            allowed_hostnames,
        } => {
            // Check every stream before writing anything.
            let ga4 = ga4
                .iter()
                .map(|arg| match arg.split_once(':') {
                    Some((id, secret)) if !id.trim().is_empty() && !secret.is_empty() => {
                        Ok((id.trim(), secret))
                    }
                    _ => Err(MetadataError::Invalid(format!(
                        "ga4 {arg:?}: give MEASUREMENT_ID:API_SECRET, e.g. G-ABC123:s3cret"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if segment_write_keys.iter().any(|k| k.trim().is_empty()) {
                return Err(MetadataError::Invalid(
                    "a Segment write key must not be empty".into(),
                ));
            }
            let mut s = warehouse
                .add_site(&merchant_id, &domain, &timezone, site_id.as_deref())
                .await?;
            if !allowed_hostnames.is_empty() {
                s = warehouse
                    .set_allowed_hostnames(&s.site_id, &allowed_hostnames)
                    .await?;
            }
            let mut measurement_ids = Vec::new();
            for (measurement_id, secret) in ga4 {
                let stream = warehouse
                    .add_site_stream(&s.site_id, STREAM_GA4, measurement_id, secret)
                    .await?;
                measurement_ids.push(stream.stream_id);
            }
            for key in &segment_write_keys {
                warehouse
                    .add_site_stream(&s.site_id, STREAM_SEGMENT, key, "")
                    .await?;
            }
            json!({
                "site_id": s.site_id, "merchant_id": s.merchant_id,
                "domain": s.domain, "timezone": s.timezone,
                "allowed_hostnames": s.allowed_hostnames,
                "ga4_measurement_ids": measurement_ids,
                "segment_write_keys_added": segment_write_keys.len(),
            })
        }
        Op::SiteDelete { site_id } => {
            let s = warehouse.delete_site(&site_id).await?;
            json!({"deleted": s.site_id, "domain": s.domain})
        }
        Op::KeyCreate {
            merchant_id,
            site_ids,
            name,
            rate_limit_per_minute,
        } => {
            let k = warehouse
                .create_api_key(&merchant_id, &site_ids, &name, rate_limit_per_minute)
                .await?;
            json!({
                "key": k.key, "key_prefix": k.row.key_prefix, "key_hash": k.row.key_hash,
                "merchant_id": k.row.merchant_id, "site_ids": k.row.site_ids,
                "name": k.row.name, "rate_limit_per_minute": k.row.rate_limit_per_minute,
            })
        }
        Op::KeyRevoke { prefix_or_hash } => {
            let k = warehouse.revoke_api_key(&prefix_or_hash).await?;
            json!({
                "revoked": true, "key_prefix": k.key_prefix, "key_hash": k.key_hash,
                "merchant_id": k.merchant_id,
            })
        }
        Op::EdgeList => edge_list(warehouse, certs).await?,
    })
}

/// Edges known by a certificate in `certs` or by batches in the loads
/// ledger, by name. A node without the CA directory (an API-only node)
/// lists the ledger's edges and says why certificates are missing.
async fn edge_list(warehouse: &Warehouse, certs: &CertDir) -> Result<Value, MetadataError> {
    use std::collections::BTreeMap;
    let loads = warehouse.loads_by_edge().await?;
    let (certificates, certificates_error) = match crate::certs::edge_certificates(certs) {
        Ok(c) => (c, None),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    let mut edges: BTreeMap<String, Value> = BTreeMap::new();
    let blank = || {
        json!({"certificate": Value::Null, "serial": Value::Null, "batches_loaded": 0,
               "rows_loaded": 0, "last_loaded_at": Value::Null})
    };
    for c in certificates {
        let e = edges.entry(c.name.clone()).or_insert_with(blank);
        // A name re-issued after a revocation has both; the active one wins.
        if e["certificate"] != "active" {
            e["certificate"] = json!(c.status);
            e["serial"] = json!(c.serial);
        }
    }
    for l in loads {
        let e = edges.entry(l.edge_id.clone()).or_insert_with(blank);
        e["batches_loaded"] = json!(l.batches);
        e["rows_loaded"] = json!(l.rows);
        e["last_loaded_at"] = json!(rfc3339(l.last_loaded_at));
    }
    let edges: Vec<Value> = edges
        .into_iter()
        .map(|(name, mut e)| {
            e["edge_id"] = json!(name);
            e
        })
        .collect();
    let mut out = json!({ "edges": edges });
    if let Some(e) = certificates_error {
        out["certificates_error"] = json!(e);
    }
    Ok(out)
}

fn rfc3339(unix_s: u32) -> String {
    jiff::Timestamp::from_second(i64::from(unix_s))
        .map_or_else(|_| unix_s.to_string(), |t| t.to_string())
}

pub fn run(config_file: Option<&Path>, args: AdminArgs) -> ExitCode {
    let config = match load_valid::<RawConfig>(config_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("central-ingest: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("central-ingest admin: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let op = Op::from(args.cmd);
    let result = runtime.block_on(async {
        let warehouse = Warehouse::new(&config.warehouse)?;
        let certs = CertDir::new(&config.certs_dir);
        anyhow::Ok(execute(&warehouse, &certs, op.clone()).await?)
    });
    match result {
        Ok(out) => {
            print!("{}", lines(&op, &out));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("central-ingest admin: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The CLI's rendering of an answer: `name: value` lines (lists joined by
/// commas), or a table for edges.
fn lines(op: &Op, out: &Value) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if let Some(edges) = out["edges"].as_array() {
        let cell = |v: &Value| match v {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let _ = writeln!(
            s,
            "{:24}  {:11}  {:>10}  {:>12}  LAST LOADED",
            "EDGE", "CERTIFICATE", "BATCHES", "ROWS"
        );
        for e in edges {
            let _ = writeln!(
                s,
                "{:24}  {:11}  {:>10}  {:>12}  {}",
                cell(&e["edge_id"]),
                cell(&e["certificate"]),
                cell(&e["batches_loaded"]),
                cell(&e["rows_loaded"]),
                cell(&e["last_loaded_at"]),
            );
        }
        if let Some(e) = out["certificates_error"].as_str() {
            let _ = writeln!(s, "# certificates not listed: {e}");
        }
        return s;
    }
    for (name, value) in out.as_object().into_iter().flatten() {
        let value = match value {
            Value::String(v) => v.clone(),
            Value::Array(items) if items.is_empty() && name == "site_ids" => {
                "(every site of the merchant)".to_owned()
            }
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            v => v.to_string(),
        };
        let _ = writeln!(s, "{name}: {value}");
    }
    if matches!(op, Op::KeyCreate { .. }) {
        s.push_str("# The key is shown only now; only its SHA-256 is stored.\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_prints_name_value_lines_and_an_edge_table() {
        let key = json!({"key": "hgk_x", "site_ids": [], "rate_limit_per_minute": 0});
        let op = Op::KeyCreate {
            merchant_id: "m".into(),
            site_ids: Vec::new(),
            name: String::new(),
            rate_limit_per_minute: 0,
        };
        let out = lines(&op, &key);
        assert!(out.contains("key: hgk_x\n"), "{out}");
        assert!(out.contains("site_ids: (every site of the merchant)\n"));
        assert!(out.contains("rate_limit_per_minute: 0\n"));
        assert!(out.ends_with("only its SHA-256 is stored.\n"));

        let edges = json!({"edges": [{"edge_id": "edge-1", "certificate": "active",
            "batches_loaded": 3, "rows_loaded": 12, "last_loaded_at": Value::Null}]});
        let out = lines(&Op::EdgeList, &edges);
        assert!(out.starts_with("EDGE"), "{out}");
        assert!(out.lines().nth(1).unwrap().starts_with("edge-1"), "{out}");
        assert!(out.contains("  -\n"), "{out}");
    }
}
