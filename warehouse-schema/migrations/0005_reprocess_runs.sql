-- 0005 reprocess runs: one row per `reprocess` run and state (running,
-- done, failed, dry-run), so an operator can see who reprocessed which
-- range with which plugin set, and what it changed. A run's later state is
-- a higher `version` of the same `run_id`.

CREATE TABLE IF NOT EXISTS reprocess_runs
(
    run_id String,
    started_at DateTime,
    finished_at DateTime,
    operator String,
    host String,
    range_from DateTime,
    range_to DateTime,
    sites Array(String),
    plugin_set String,
    dry_run UInt8,
    status String,
    days UInt32,
    batches UInt64,
    rows_before UInt64,
    rows_after UInt64,
    error String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY run_id
;
