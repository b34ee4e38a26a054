//! `migrate` and `check` against a real server: idempotence and drift.

mod common;

use std::process::Command;

use warehouse_schema::{Drift, MIGRATIONS, MigrationState};

#[test]
fn migrate_twice_applies_nothing_the_second_time() {
    let rt = common::runtime();
    let db = hourglass_testkit::fresh_database();
    let wh = common::warehouse(&db);

    let before = rt.block_on(warehouse_schema::status(&wh)).unwrap();
    assert_eq!(before.pending(), MIGRATIONS.len());

    let first = rt.block_on(warehouse_schema::migrate(&wh)).unwrap();
    let labels: Vec<String> = MIGRATIONS.iter().map(|m| m.label()).collect();
    assert_eq!(first.applied, labels);
    assert_eq!(first.already_applied, 0);
    let schema_after_first = rt.block_on(warehouse_schema::snapshot(&wh)).unwrap();
    let recorded_after_first = rt.block_on(wh.applied_migrations()).unwrap();

    let second = rt.block_on(warehouse_schema::migrate(&wh)).unwrap();
    assert!(
        second.applied.is_empty(),
        "second run applied {:?}",
        second.applied
    );
    assert_eq!(second.already_applied, MIGRATIONS.len());
    assert_eq!(
        rt.block_on(warehouse_schema::snapshot(&wh)).unwrap(),
        schema_after_first
    );
    assert_eq!(
        rt.block_on(wh.applied_migrations()).unwrap(),
        recorded_after_first
    );

    // The schema has what the design asks for.
    let tables: Vec<&str> = schema_after_first
        .tables
        .keys()
        .map(String::as_str)
        .collect();
    for t in [
        "events",
        "site_hourly",
        "site_hourly_mv",
        "pages_hourly",
        "pages_hourly_mv",
        "sources_hourly",
        "sources_hourly_mv",
        "sessions",
        "sessions_mv",
        "merchants",
        "sites",
        "api_keys",
        "goals",
        "funnels",
        "plugins",
        "edges",
        "loads",
        "reprocess_runs",
        "schema_migrations",
    ] {
        assert!(tables.contains(&t), "missing {t} in {tables:?}");
    }
    let column = |t: &str, c: &str| {
        schema_after_first
            .columns
            .get(&(t.to_owned(), c.to_owned()))
            .cloned()
    };
    assert_eq!(
        column("events", "props.key").as_deref(),
        Some("Array(String)")
    );
    assert_eq!(column("events", "ts").as_deref(), Some("DateTime"));
    assert_eq!(column("events", "batch_id").as_deref(), Some("String"));
    assert_eq!(
        column("sites", "allowed_hostnames").as_deref(),
        Some("Array(String)")
    );
    assert_eq!(column("api_keys", "key_hash").as_deref(), Some("String"));
    assert!(column("api_keys", "key").is_none());

    let after = rt.block_on(warehouse_schema::status(&wh)).unwrap();
    assert_eq!(after.pending(), 0);
    assert!(
        after
            .migrations
            .iter()
            .all(|(_, s)| matches!(s, MigrationState::Applied { .. }))
    );
}

#[test]
fn check_is_clean_after_migrate_and_reports_drift() {
    let rt = common::runtime();
    let (db, wh) = common::migrated(&rt);

    let clean = rt.block_on(warehouse_schema::check(&wh)).unwrap();
    assert_eq!(clean.drift, []);
    assert!(
        clean
            .scratch_database
            .starts_with(&format!("{}__check_", db.name))
    );
    assert!(
        !rt.block_on(
            wh.for_database(&clean.scratch_database)
                .unwrap()
                .database_exists()
        )
        .unwrap(),
        "the scratch database is dropped"
    );

    db.query("ALTER TABLE events DROP COLUMN city").unwrap();
    let report = rt.block_on(warehouse_schema::check(&wh)).unwrap();
    assert_eq!(
        report.drift,
        [Drift::MissingColumn {
            table: "events".into(),
            column: "city".into(),
            column_type: "String".into()
        }]
    );

    db.query("DROP TABLE pages_hourly_mv").unwrap();
    let report = rt.block_on(warehouse_schema::check(&wh)).unwrap();
    let shown: Vec<String> = report.drift.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "missing view pages_hourly_mv (MaterializedView)",
            "missing column events.city (String)",
        ]
    );

    db.query("CREATE TABLE stray (x UInt8) ENGINE = Log")
        .unwrap();
    db.query("ALTER TABLE sites ADD COLUMN owner String")
        .unwrap();
    let report = rt.block_on(warehouse_schema::check(&wh)).unwrap();
    let shown: Vec<String> = report.drift.iter().map(ToString::to_string).collect();
    assert!(
        shown.contains(&"extra table stray (Log)".to_owned()),
        "{shown:?}"
    );
    assert!(
        shown.contains(&"extra column sites.owner (String)".to_owned()),
        "{shown:?}"
    );
}

/// The binary as an operator runs it: env config, messages, exit codes.
#[test]
fn binary_migrate_status_check() {
    let db = hourglass_testkit::fresh_database();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_warehouse-schema"))
            .args(args)
            .env("CLICKHOUSE_URL", &db.url)
            .env("CLICKHOUSE_DATABASE", &db.name)
            .env_remove("CLICKHOUSE_USER")
            .env_remove("CLICKHOUSE_PASSWORD")
            .output()
            .expect("run warehouse-schema");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };

    let (code, out) = run(&["migrate"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("applied {} migration(s)", MIGRATIONS.len())),
        "{out}"
    );

    let (code, out) = run(&["migrate"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("is up to date: nothing to apply"), "{out}");

    let (code, out) = run(&["status"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("{} applied, 0 pending", MIGRATIONS.len())),
        "{out}"
    );

    let (code, out) = run(&["check"]);
    assert_eq!((code, out.contains("no drift")), (Some(0), true), "{out}");

    db.query("ALTER TABLE events DROP COLUMN city").unwrap();
    let (code, out) = run(&["check"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("drift: missing column events.city (String)"),
        "{out}"
    );

    let (code, out) = run(&["--database", "no-such name", "status"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("invalid database name"), "{out}");
}

/// An applied migration whose file changed is refused, and versions a newer
/// build recorded are reported, not touched.
#[test]
fn edited_and_unknown_migrations_are_reported() {
    let rt = common::runtime();
    let (db, wh) = common::migrated(&rt);

    db.query(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
         VALUES (99, 'from_the_future', 'crc32c:00000000', now())",
    )
    .unwrap();
    let report = rt.block_on(warehouse_schema::migrate(&wh)).unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.unknown.len(), 1);
    assert_eq!(
        (report.unknown[0].version, report.unknown[0].name.as_str()),
        (99, "from_the_future")
    );

    // An earlier record of version 2 with another checksum wins (argMin by
    // applied_at), as if 0002 had been applied from a different file.
    db.query(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
         VALUES (2, 'rollups', 'crc32c:deadbeef', toDateTime(1))",
    )
    .unwrap();
    let status = rt.block_on(warehouse_schema::status(&wh)).unwrap();
    assert_eq!(
        status.migrations[1].1,
        MigrationState::Edited {
            at: 1,
            recorded: "crc32c:deadbeef".into()
        }
    );
    let err = rt.block_on(warehouse_schema::migrate(&wh)).unwrap_err();
    assert!(
        matches!(&err, warehouse_schema::SchemaError::ChecksumMismatch { label, .. } if label == "0002_rollups"),
        "{err}"
    );
    assert!(
        err.to_string().contains("add a new migration instead"),
        "{err}"
    );
}

/// An operator can point the tool at a service's config file; the
/// environment overrides the file.
#[test]
fn binary_reads_the_warehouse_section_of_a_config_file() {
    let db = hourglass_testkit::fresh_database();
    let dir = std::env::temp_dir().join(format!("hg-schema-cfg-{}", db.name));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("central.toml");
    std::fs::write(
        &file,
        format!(
            "ops_listen = \"127.0.0.1:9464\"\n[warehouse]\nurl = \"{}\"\ndatabase = \"{}\"\n",
            db.url, db.name
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warehouse-schema"))
        .arg("migrate")
        .arg("--config")
        .arg(&file)
        .env_remove("CLICKHOUSE_URL")
        .env_remove("CLICKHOUSE_DATABASE")
        .output()
        .expect("run warehouse-schema");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("database {}", db.name)), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_warehouse-schema"))
        .arg("status")
        .arg("--config")
        .arg(&file)
        .env("CLICKHOUSE_DATABASE", "hg_no_such_database")
        .env_remove("CLICKHOUSE_URL")
        .output()
        .expect("run warehouse-schema");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("hg_no_such_database"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
