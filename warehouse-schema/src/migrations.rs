//! The migrations, embedded from `migrations/NNNN_name.sql`, and how a
//! file is cut into statements.

/// The ledger of applied migrations. Created before any migration runs, so
/// it is not a migration itself.
pub const LEDGER_SQL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime
)
ENGINE = MergeTree()
ORDER BY version";

/// One numbered migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    /// The file it was embedded from, relative to `migrations/`.
    pub file: &'static str,
    /// The file's text.
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            file: $file,
            sql: include_str!(concat!("../migrations/", $file)),
        }
    };
}

/// Every migration, in the order they are applied (ascending version).
pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "events", "0001_events.sql"),
    migration!(2, "rollups", "0002_rollups.sql"),
    migration!(3, "sessions", "0003_sessions.sql"),
    migration!(4, "metadata", "0004_metadata.sql"),
    migration!(5, "reprocess_runs", "0005_reprocess_runs.sql"),
    migration!(6, "control", "0006_control.sql"),
    migration!(7, "daily_rollups", "0007_daily_rollups.sql"),
];

impl Migration {
    /// The statements to send, in order.
    pub fn statements(&self) -> Vec<String> {
        split_statements(self.sql)
    }

    /// Checksum of the file's text, recorded when the migration is applied.
    pub fn checksum(&self) -> String {
        format!("crc32c:{:08x}", crc32c::crc32c(self.sql.as_bytes()))
    }

    /// `0002_rollups`.
    pub fn label(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

/// Every statement this crate sends, as JSON:
/// `{"ledger": "<sql>", "migrations": [{"version", "name", "statements": [...]}]}`
/// (what `warehouse-schema print-sql` prints and the chdb test runs).
pub fn statements_json() -> serde_json::Value {
    let migrations: Vec<serde_json::Value> = MIGRATIONS
        .iter()
        .map(|m| {
            serde_json::json!({
                "version": m.version,
                "name": m.name,
                "statements": m.statements(),
            })
        })
        .collect();
    serde_json::json!({ "ledger": LEDGER_SQL, "migrations": migrations })
}

/// Cuts a migration file into statements: a statement ends with a line that
/// ends with `;`; whole-line `--` comments and blank statements are dropped;
/// the `;` is not part of the statement.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut flush = |current: &mut Vec<&str>| {
        let text = current.join("\n");
        let text = text.trim().trim_end_matches(';').trim_end();
        if !text.is_empty() {
            statements.push(text.to_owned());
        }
        current.clear();
    };
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") {
            continue;
        }
        current.push(line.trim_end());
        if trimmed.ends_with(';') {
            flush(&mut current);
        }
    }
    flush(&mut current);
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolon_lines_and_drops_comments() {
        let sql = "-- header; with a semicolon\nCREATE TABLE IF NOT EXISTS a\n(\n    x UInt8\n)\nENGINE = Log\n;\n\n-- next\nCREATE TABLE IF NOT EXISTS b (y UInt8) ENGINE = Log;\n\n-- trailing comment\n";
        assert_eq!(
            split_statements(sql),
            [
                "CREATE TABLE IF NOT EXISTS a\n(\n    x UInt8\n)\nENGINE = Log",
                "CREATE TABLE IF NOT EXISTS b (y UInt8) ENGINE = Log",
            ]
        );
        assert_eq!(split_statements("SELECT 1"), ["SELECT 1"]);
        assert!(split_statements("-- only\n\n;\n").is_empty());
    }

    #[test]
    fn versions_ascend_and_files_match() {
        let mut previous = 0;
        for m in MIGRATIONS {
            assert!(m.version > previous, "{} out of order", m.file);
            previous = m.version;
            assert_eq!(m.file, format!("{}.sql", m.label()));
        }
    }

    #[test]
    fn every_file_is_registered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("the migrations directory is part of the crate")
            .map(|e| {
                e.expect("readable directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let registered: Vec<&str> = MIGRATIONS.iter().map(|m| m.file).collect();
        assert_eq!(on_disk, registered);
    }

    /// The idempotency rule: every statement can run again (18.16 has no
    /// `ADD COLUMN IF NOT EXISTS`, so a schema grows by new tables). A
    /// backfill (`INSERT INTO t SELECT …`) runs only while `t` is empty.
    #[test]
    fn every_statement_is_create_if_not_exists() {
        for m in MIGRATIONS {
            for s in m.statements() {
                let head: String = s.split_whitespace().take(7).collect::<Vec<_>>().join(" ");
                let backfill_once = s.split_whitespace().nth(2).is_some_and(|t| {
                    head.starts_with("INSERT INTO ")
                        && s.contains(&format!("WHERE (SELECT count() FROM {t}) = 0"))
                });
                assert!(
                    head.starts_with("CREATE TABLE IF NOT EXISTS ")
                        || head.starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS ")
                        || head.starts_with("CREATE VIEW IF NOT EXISTS ")
                        || head.starts_with("DROP TABLE IF EXISTS ")
                        || backfill_once,
                    "{}: not idempotent: {head}",
                    m.label()
                );
            }
        }
    }

    /// The classic engine syntax only: `ENGINE = XMergeTree(...)` followed
    /// by `ORDER BY`, never the old positional `MergeTree(date, key, 8192)`.
    #[test]
    fn merge_trees_use_order_by() {
        for m in MIGRATIONS {
            for s in m.statements().iter().filter(|s| s.contains("MergeTree")) {
                assert!(
                    s.contains("ORDER BY"),
                    "{}: positional engine syntax?\n{s}",
                    m.label()
                );
                assert!(
                    !s.contains("MergeTree(date"),
                    "{}: positional engine syntax",
                    m.label()
                );
            }
        }
    }

    /// What ClickHouse 18.16 does not have (notes/clickhouse-18.md).
    #[test]
    fn no_sql_missing_on_clickhouse_18() {
        const MISSING: &[&str] = &[
            "TTL ",
            "LowCardinality",
            "SimpleAggregateFunction",
            "JSONExtract",
            "DateTime64",
            "IPv4",
            "IPv6",
            "EXCHANGE",
            "toStartOfWeek",
            "toStartOfInterval",
            "multiSearchAny",
            "{",
        ];
        for m in MIGRATIONS {
            for s in m.statements() {
                for bad in MISSING {
                    assert!(
                        !s.contains(bad),
                        "{}: uses {bad:?}, missing on 18.16",
                        m.label()
                    );
                }
            }
        }
    }

    #[test]
    fn no_ip_column_in_events() {
        let events = MIGRATIONS[0].sql.to_ascii_lowercase();
        for line in events.lines().filter(|l| !l.trim_start().starts_with("--")) {
            let column = line.split_whitespace().next().unwrap_or("");
            let is_ip = column == "ip" || column.starts_with("ip_") || column.ends_with("_ip");
            assert!(!is_ip, "events must not store IPs: {line}");
        }
    }

    #[test]
    fn checksum_is_stable() {
        let m = Migration {
            version: 9,
            name: "x",
            file: "0009_x.sql",
            sql: "CREATE TABLE IF NOT EXISTS x (a UInt8) ENGINE = Log;\n",
        };
        assert_eq!(m.checksum(), m.checksum());
        assert!(m.checksum().starts_with("crc32c:"));
        assert_eq!(m.checksum().len(), "crc32c:".len() + 8);
    }
}
