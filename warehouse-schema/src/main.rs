//! `warehouse-schema migrate|status|check`: the command-line face of this
//! crate. Parses flags, runs one operation, prints what it did; exit code 0
//! when all is well, 1 when `check` finds drift, 2 on any error.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hourglass_warehouse::{Warehouse, WarehouseConfig};
use warehouse_schema::{MIGRATIONS, MigrationState};

/// Versioned ClickHouse migrations of Hourglass.
#[derive(Debug, Parser)]
#[command(name = "warehouse-schema", version, about)]
struct Cli {
    /// A service's TOML config whose `[warehouse]` section to use (other
    /// sections are ignored). `CLICKHOUSE_URL` / `CLICKHOUSE_DATABASE` and
    /// the flags below override it.
    #[arg(long, short, env = "HOURGLASS_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,
    /// ClickHouse HTTP URL [default: $CLICKHOUSE_URL, the config, or http://127.0.0.1:8123].
    #[arg(long, global = true)]
    url: Option<String>,
    /// Database holding the Hourglass tables [default: $CLICKHOUSE_DATABASE, the config, or hourglass].
    #[arg(long, global = true)]
    database: Option<String>,
    /// ClickHouse user (server default when absent).
    #[arg(long, env = "CLICKHOUSE_USER", global = true)]
    user: Option<String>,
    /// ClickHouse password.
    #[arg(
        long,
        env = "CLICKHOUSE_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    password: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database if missing and apply every pending migration.
    Migrate,
    /// List applied and pending migrations.
    Status,
    /// Compare the server's schema with this build's; exit 1 on drift.
    Check,
    /// Print every migration's statements as JSON (for tests and tooling).
    #[command(hide = true)]
    PrintSql,
}

/// The part of a service config this tool reads.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct FileConfig {
    warehouse: WarehouseConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file: FileConfig = hourglass_svc::config::load(cli.config.as_deref())?;
    let mut config = file.warehouse;
    config.url = cli.url.unwrap_or(config.url);
    config.database = cli.database.unwrap_or(config.database);
    config.user = cli.user.or(config.user);
    config.password = cli.password.or(config.password);
    let warehouse = Warehouse::new(&config).context("invalid warehouse settings")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Migrate => migrate(&warehouse).await,
            Command::Status => status(&warehouse).await,
            Command::Check => check(&warehouse).await,
            Command::PrintSql => print_sql().map(|()| ExitCode::SUCCESS),
        }
    })
}

fn target(warehouse: &Warehouse) -> String {
    format!("database {} on {}", warehouse.database(), warehouse.url())
}

async fn migrate(warehouse: &Warehouse) -> anyhow::Result<ExitCode> {
    let report = warehouse_schema::migrate(warehouse)
        .await
        .with_context(|| format!("migrating {}", target(warehouse)))?;
    for label in &report.applied {
        println!("applied {label}");
    }
    for u in &report.unknown {
        println!(
            "warning: version {:04}_{} is recorded but unknown to this build (a newer build applied it?)",
            u.version, u.name
        );
    }
    if report.applied.is_empty() {
        println!(
            "{} is up to date: nothing to apply ({} migrations already applied)",
            target(warehouse),
            report.already_applied
        );
    } else {
        println!(
            "{}: applied {} migration(s), {} were already applied",
            target(warehouse),
            report.applied.len(),
            report.already_applied
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(warehouse: &Warehouse) -> anyhow::Result<ExitCode> {
    let report = warehouse_schema::status(warehouse)
        .await
        .with_context(|| format!("reading the migration status of {}", target(warehouse)))?;
    if !report.database_exists {
        println!("{} does not exist yet", target(warehouse));
    }
    for (m, state) in &report.migrations {
        match state {
            MigrationState::Applied { at } => println!("applied  {}  (at {})", m.label(), utc(*at)),
            MigrationState::Edited { at, recorded } => println!(
                "EDITED   {}  (applied at {} with {recorded}, file now {})",
                m.label(),
                utc(*at),
                m.checksum()
            ),
            MigrationState::Pending => println!("pending  {}", m.label()),
        }
    }
    for u in &report.unknown {
        println!(
            "unknown  {:04}_{}  (recorded, not in this build)",
            u.version, u.name
        );
    }
    println!(
        "{}: {} applied, {} pending",
        target(warehouse),
        report.migrations.len() - report.pending(),
        report.pending()
    );
    Ok(ExitCode::SUCCESS)
}

async fn check(warehouse: &Warehouse) -> anyhow::Result<ExitCode> {
    let report = warehouse_schema::check(warehouse)
        .await
        .with_context(|| format!("checking {} for drift", target(warehouse)))?;
    let last = MIGRATIONS.last().map(|m| m.label()).unwrap_or_default();
    if report.drift.is_empty() {
        println!(
            "no drift: {} matches the schema of migrations up to {last}",
            target(warehouse)
        );
        return Ok(ExitCode::SUCCESS);
    }
    for d in &report.drift {
        println!("drift: {d}");
    }
    println!(
        "{} differs from the schema of migrations up to {last} in {} place(s) \
         (compared with scratch database {}, now dropped)",
        target(warehouse),
        report.drift.len(),
        report.scratch_database
    );
    Ok(ExitCode::from(1))
}

fn print_sql() -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&warehouse_schema::statements_json())
        .context("encoding the migrations as JSON")?;
    println!("{text}");
    Ok(())
}

/// `2026-03-01T12:00:00Z` for Unix seconds (proleptic Gregorian, UTC).
fn utc(unix: u32) -> String {
    let days = i64::from(unix / 86_400);
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_unix_seconds() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_772_323_200 + 3_723), "2026-03-01T01:02:03Z");
        assert_eq!(utc(u32::MAX), "2106-02-07T06:28:15Z");
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
