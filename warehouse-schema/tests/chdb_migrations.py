"""Runs every warehouse-schema statement, in order, on current ClickHouse.

Owns: proving the migrations also work on the ClickHouse operators run
(chdb embeds a current ClickHouse in-process), where the other tests use
the 18.16 server. Driven by `tests/chdb.rs`, which pipes the statements in.

stdin: the JSON of `warehouse-schema print-sql`:
  {"ledger": "<sql>", "migrations": [{"version", "name", "statements": [...]}]}
Runs the ledger and every statement twice (the second pass proves they are
idempotent), inserts a few events, and checks the rollups and the sessions
table return the right rows.

Exit codes: 0 ok; 1 a statement or check failed (the statement is printed);
3 chdb cannot be imported (run `cargo xtask test`, which installs it).
"""

import json
import shutil
import sys
import tempfile

try:
    from chdb import session as chdb_session
    import chdb
except ImportError as e:
    print(
        f"chdb cannot be imported by {sys.executable}: {e}\n"
        "run `cargo xtask test` (it installs the Python venv with chdb)",
        file=sys.stderr,
    )
    sys.exit(3)

DATABASE = "hourglass_chdb"


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def main():
    doc = json.load(sys.stdin)
    statements = [("ledger", doc["ledger"])]
    for m in doc["migrations"]:
        for i, sql in enumerate(m["statements"], 1):
            statements.append((f"{m['version']:04}_{m['name']} statement {i}", sql))

    tmp = tempfile.mkdtemp(prefix="hourglass-chdb-")
    sess = chdb_session.Session(tmp)
    try:
        def run(label, sql, fmt="TSV"):
            try:
                return str(sess.query(sql, fmt))
            except Exception as e:  # chdb raises its own error types
                fail(f"FAILED on ClickHouse {version}: {label}\n{sql}\n--> {e}")

        version = str(sess.query("SELECT version()", "TSV")).strip()
        run("create database", f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        run("use database", f"USE {DATABASE}")
        for attempt in ("first run", "second run"):
            for label, sql in statements:
                run(f"{label} ({attempt})", sql)

        # Two visitors, three sessions, one crossing midnight UTC.
        run(
            "insert events",
            "INSERT INTO events (ts, received_at, site_id, name, visitor_id, session_id, "
            "hostname, pathname, referrer_source, channel, country, `props.key`, `props.value`, "
            "interactive, hit_index, batch_id, plugin_set) VALUES "
            "('2026-03-01 23:50:00', '2026-03-01 23:50:01', 's1', 'pageview', 1, 10, 'h', '/a', 'Google', 'Organic Search', 'FR', [], [], 1, 0, 'b1', 'p'),"
            "('2026-03-01 23:55:00', '2026-03-01 23:55:01', 's1', 'click', 1, 10, 'h', '/a', 'Google', 'Organic Search', 'FR', ['k'], ['v'], 1, 1, 'b1', 'p'),"
            "('2026-03-02 00:05:00', '2026-03-02 00:05:01', 's1', 'pageview', 1, 10, 'h', '/b', '', 'Direct', 'FR', [], [], 1, 2, 'b1', 'p'),"
            "('2026-03-02 00:10:00', '2026-03-02 00:10:01', 's1', 'pageview', 2, 20, 'h', '/a', '', 'Direct', 'DE', [], [], 1, 3, 'b1', 'p'),"
            "('2026-03-02 00:20:00', '2026-03-02 00:20:01', 's2', 'pageview', 3, 30, 'h', '/c', '', 'Direct', 'US', [], [], 1, 4, 'b1', 'p')",
        )

        def check(label, sql, expected):
            got = run(label, sql).strip()
            if got != expected:
                fail(f"WRONG on ClickHouse {version}: {label}\n{sql}\n--> got:\n{got}\n--> expected:\n{expected}")

        check(
            "site_hourly",
            "SELECT site_id, hour, countIfMerge(pageviews), countMerge(events), uniqMerge(visitors), "
            "uniqMerge(visits) FROM site_hourly GROUP BY site_id, hour ORDER BY site_id, hour",
            "s1\t2026-03-01 23:00:00\t1\t2\t1\t1\n"
            "s1\t2026-03-02 00:00:00\t2\t2\t2\t2\n"
            "s2\t2026-03-02 00:00:00\t1\t1\t1\t1",
        )
        check(
            "pages_hourly",
            "SELECT pathname, countIfMerge(pageviews), uniqMerge(visitors) FROM pages_hourly "
            "WHERE site_id = 's1' GROUP BY pathname ORDER BY pathname",
            "/a\t2\t2\n/b\t1\t1",
        )
        check(
            "sources_hourly",
            "SELECT channel, countIfMerge(pageviews), countMerge(events) FROM sources_hourly "
            "GROUP BY channel ORDER BY channel",
            "Direct\t3\t3\nOrganic Search\t1\t2",
        )
        check(
            "sessions",
            "SELECT site_id, session_id, argMinMerge(entry_page), argMaxMerge(exit_page), "
            "countIfMerge(pageviews), maxMerge(ended_at) - minMerge(started_at), "
            "countIfMerge(interactive_events) <= 1 AS bounce, argMinMerge(entry_channel), anyMerge(visitor) "
            "FROM sessions GROUP BY site_id, session_id ORDER BY site_id, session_id",
            "s1\t10\t/a\t/b\t2\t900\t0\tOrganic Search\t1\n"
            "s1\t20\t/a\t/a\t1\t0\t1\tDirect\t2\n"
            "s2\t30\t/c\t/c\t1\t0\t1\tDirect\t3",
        )
        check(
            "session 10 spans two day partitions",
            "SELECT count() FROM sessions WHERE session_id = 10",
            "2",
        )
        check(
            "metadata",
            "SELECT count() FROM system.tables WHERE database = currentDatabase() "
            "AND name IN ('merchants', 'sites', 'api_keys', 'goals', 'funnels', 'plugins', "
            "'site_streams', 'plugin_bindings', 'plugin_binding_log', 'edges', 'loads', "
            "'schema_migrations')",
            "12",
        )
        check(
            "0006 dropped plugin_activations",
            "SELECT count() FROM system.tables WHERE database = currentDatabase() "
            "AND name = 'plugin_activations'",
            "0",
        )
        print(f"ok: {len(statements)} statements ran twice on ClickHouse {version} (chdb {chdb.__version__})")
    finally:
        try:
            sess.close()
        except Exception:
            pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
