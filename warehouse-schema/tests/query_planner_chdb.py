"""Runs the planner's statements on current ClickHouse (chdb, embedded).

Owns: proving the SQL the query planner writes also runs on the ClickHouse
operators run, where the other planner tests use the 18.16 server. Driven
by `tests/query_planner_chdb.rs`, which pipes in:
  {"setup": [sql, ...], "insert": sql, "queries": [sql, ...]}
and reads back {"version": str, "answers": [JSONCompact text, ...]}.

Exit codes: 0 ok; 1 a statement failed (it is printed); 3 chdb cannot be
imported (run `cargo xtask test`, which installs it).
"""

import json
import shutil
import sys
import tempfile

try:
    from chdb import session as chdb_session
except ImportError as e:
    print(
        f"chdb cannot be imported by {sys.executable}: {e}\n"
        "run `cargo xtask test` (it installs the Python venv with chdb)",
        file=sys.stderr,
    )
    sys.exit(3)


def main():
    doc = json.load(sys.stdin)
    tmp = tempfile.mkdtemp(prefix="hourglass-chdb-query-")
    sess = chdb_session.Session(tmp)
    try:
        version = str(sess.query("SELECT version()", "TSV")).strip()

        def run(sql, fmt="TSV"):
            try:
                return str(sess.query(sql, fmt))
            except Exception as e:  # chdb raises its own error types
                print(f"FAILED on ClickHouse {version}:\n{sql}\n--> {e}", file=sys.stderr)
                sys.exit(1)

        run("CREATE DATABASE IF NOT EXISTS hourglass_query")
        run("USE hourglass_query")
        for sql in doc["setup"]:
            run(sql)
        run(doc["insert"])
        answers = [run(sql, "JSONCompact") for sql in doc["queries"]]
        json.dump({"version": version, "answers": answers}, sys.stdout)
    finally:
        sess.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
