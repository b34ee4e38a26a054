//! `central-ingest admin`: merchants, sites and API keys, written straight
//! to the warehouse (`[warehouse]` of the config, or `CLICKHOUSE_URL` and
//! `CLICKHOUSE_DATABASE`). Prints `name: value` lines; an API key is
//! printed once, when made, and never stored.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hourglass_svc::config::load_valid;
use hourglass_warehouse::Warehouse;
use hourglass_warehouse::control::{STREAM_GA4, STREAM_SEGMENT};

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
    let result = runtime.block_on(async {
        let warehouse = Warehouse::new(&config.warehouse)?;
        admin(&warehouse, args.cmd).await
    });
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("central-ingest admin: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn admin(warehouse: &Warehouse, cmd: Admin) -> anyhow::Result<String> {
    Ok(match cmd {
        Admin::Merchant(MerchantCmd::Add { name }) => {
            let m = warehouse.add_merchant(&name).await?;
            format!("merchant_id: {}\nname: {}\n", m.merchant_id, m.name)
        }
        Admin::Site(SiteCmd::Add {
            merchant,
            domain,
            timezone,
            id,
            ga4,
            segment_write_keys,
            allowed_hostnames,
        }) => {
            // Check every stream before writing anything.
            let ga4 = ga4
                .iter()
                .map(|arg| match arg.split_once(':') {
                    Some((id, secret)) if !id.trim().is_empty() && !secret.is_empty() => {
                        Ok((id.trim(), secret))
                    }
                    _ => Err(anyhow::anyhow!(
                        "--ga4 {arg:?}: give MEASUREMENT_ID:API_SECRET, e.g. G-ABC123:s3cret"
                    )),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if segment_write_keys.iter().any(|k| k.trim().is_empty()) {
                anyhow::bail!("--segment-write-key must not be empty");
            }
            let s = warehouse
                .add_site(&merchant, &domain, &timezone, id.as_deref())
                .await?;
            let s = if allowed_hostnames.is_empty() {
                s
            } else {
                warehouse
                    .set_allowed_hostnames(&s.site_id, &allowed_hostnames)
                    .await?
            };
            let mut out = format!(
                "site_id: {}\nmerchant_id: {}\ndomain: {}\ntimezone: {}\n",
                s.site_id, s.merchant_id, s.domain, s.timezone
            );
            for (measurement_id, secret) in ga4 {
                let stream = warehouse
                    .add_site_stream(&s.site_id, STREAM_GA4, measurement_id, secret)
                    .await?;
                out.push_str(&format!("ga4: {}\n", stream.stream_id));
            }
            for key in &segment_write_keys {
                warehouse
                    .add_site_stream(&s.site_id, STREAM_SEGMENT, key, "")
                    .await?;
                out.push_str("segment_write_key: added\n");
            }
            out
        }
        Admin::Site(SiteCmd::Delete { site_id }) => {
            let s = warehouse.delete_site(&site_id).await?;
            format!("deleted: {}\ndomain: {}\n", s.site_id, s.domain)
        }
        Admin::Key(KeyCmd::Create {
            merchant,
            sites,
            name,
            rate_limit,
        }) => {
            let k = warehouse
                .create_api_key(&merchant, &sites, &name, rate_limit)
                .await?;
            let scope = if k.row.site_ids.is_empty() {
                "all sites of the merchant".to_owned()
            } else {
                k.row.site_ids.join(",")
            };
            format!(
                "key: {}\nkey_prefix: {}\nkey_hash: {}\nmerchant_id: {}\nsites: {scope}\n\
                 # The key is shown only now; only its SHA-256 is stored.\n",
                k.key, k.row.key_prefix, k.row.key_hash, k.row.merchant_id
            )
        }
        Admin::Key(KeyCmd::Revoke { prefix_or_hash }) => {
            let k = warehouse.revoke_api_key(&prefix_or_hash).await?;
            format!(
                "revoked: {}\nkey_hash: {}\nmerchant_id: {}\n",
                k.key_prefix, k.key_hash, k.merchant_id
            )
        }
    })
}
