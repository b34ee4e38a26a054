//! The planner's SQL on *current* ClickHouse (chdb, embedded in Python),
//! where the other planner tests use the 18.16 server: the same generated
//! events are loaded into both, random queries are planned once, and every
//! plan must give the same answer on both servers — and, on current
//! ClickHouse too, a rollup's answer must equal the `events` answer. The
//! work on the chdb side is done by `query_planner_chdb.py`; this test
//! fails, never skips, when Python or chdb is missing.

mod common;
mod query_data;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use hourglass_warehouse::{Source, plan, plan_from};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use query_data::{NOW_S, batch, choices, generated_events, to_query};
use serde_json::{Value, json};

const INSTALL_HINT: &str = "run `cargo xtask test`, which installs the Python venv with chdb \
                            (or point HOURGLASS_PYTHON at a Python that has chdb)";
const EVENTS: usize = 5_000;
const QUERIES: usize = 60;

#[test]
fn planned_sql_gives_the_same_answers_on_current_clickhouse() {
    let rt = common::runtime();
    let (db, wh) = common::migrated(&rt);
    let events = generated_events(EVENTS);
    for (n, chunk) in events.chunks(EVENTS / 2).enumerate() {
        rt.block_on(wh.insert_events(&batch(n as u64 + 1), "ps", chunk))
            .unwrap();
    }
    // The very rows 18.16 holds, as an INSERT for the other server.
    let values = db.query("SELECT * FROM events FORMAT Values").unwrap();
    let insert = format!("INSERT INTO events VALUES {values}");

    let now = UNIX_EPOCH + Duration::from_secs(NOW_S as u64);
    // Deterministic, so a failure here reproduces.
    let mut runner = TestRunner::deterministic();
    let mut plans = Vec::new();
    for _ in 0..QUERIES {
        let q = to_query(&choices().new_tree(&mut runner).unwrap().current());
        let chosen = plan(&q, now).unwrap();
        let reference = plan_from(&q, Source::Events, now).unwrap();
        plans.push((q, chosen, reference));
    }
    let sqls: Vec<String> = plans
        .iter()
        .flat_map(|(_, a, b)| [a.rendered_sql(), b.rendered_sql()])
        .collect();

    let setup: Vec<Value> = warehouse_schema::statements_json()["migrations"]
        .as_array()
        .expect("migrations are a list")
        .iter()
        .flat_map(|m| {
            m["statements"]
                .as_array()
                .expect("statements are a list")
                .clone()
        })
        .collect();
    let input = json!({"setup": setup, "insert": insert, "queries": sqls});
    let (version, answers) = run_chdb(&input);
    assert_eq!(answers.len(), sqls.len());

    let mut rollup_rows = 0;
    let mut used = std::collections::BTreeMap::new();
    for (i, (q, chosen, reference)) in plans.iter().enumerate() {
        *used.entry(chosen.source).or_insert(0) += 1;
        let current = chosen
            .decode_json_compact(answers[2 * i].as_bytes())
            .unwrap_or_else(|e| panic!("{e}: {}", answers[2 * i]));
        let current_events = reference
            .decode_json_compact(answers[2 * i + 1].as_bytes())
            .unwrap_or_else(|e| panic!("{e}: {}", answers[2 * i + 1]));
        let old = rt.block_on(wh.run_plan(chosen)).unwrap();
        assert_eq!(
            current.results, old.results,
            "ClickHouse {version} and 18.16 differ on {}\nfor {q:?}",
            chosen.sql
        );
        assert_eq!(
            current.results, current_events.results,
            "on ClickHouse {version}, {} differs from events for {q:?}",
            chosen.source
        );
        if chosen.source != Source::Events {
            rollup_rows += current.results.len();
        }
    }
    println!(
        "{QUERIES} queries agree on ClickHouse {version} and 18.16 ({used:?}); \
         {rollup_rows} rows from rollups or sessions equal their events answers"
    );
    assert!(
        rollup_rows > 0,
        "no rollup plan among the queries: {used:?}"
    );
}

/// Runs the script; returns the server version and one answer per query.
fn run_chdb(input: &Value) -> (String, Vec<String>) {
    let python = hourglass_testkit::python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/query_planner_chdb.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}\n{INSTALL_HINT}", python.display()));
    // The script reads all of stdin before it writes anything.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&serde_json::to_vec(input).expect("the input encodes as JSON"))
        .expect("write the input to the script");
    let out = child.wait_with_output().expect("wait for the chdb script");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(3) => panic!(
            "chdb is not available to {}:\n{stderr}\n{INSTALL_HINT}",
            python.display()
        ),
        code => panic!(
            "the planner's SQL failed on current ClickHouse (chdb), exit {code:?}:\n{stderr}"
        ),
    }
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the script's output is not JSON: {e}\n{stderr}"));
    let version = doc["version"].as_str().unwrap_or("?").to_owned();
    let answers = doc["answers"]
        .as_array()
        .expect("answers are a list")
        .iter()
        .map(|a| a.as_str().expect("each answer is text").to_owned())
        .collect();
    (version, answers)
}
