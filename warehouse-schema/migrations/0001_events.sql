-- 0001 events: one row per processed event, as loaded from a batch.
--
-- Partitioned by UTC day so a day can be rebuilt and swapped with
-- `REPLACE PARTITION` (reprocess); ordered for per-site time scans.
-- `batch_id` and `plugin_set` make every row traceable to the load that
-- wrote it. There is deliberately no IP column: client IPs live only in
-- archived raw hits.
-- `props` is Nested: the server stores it as the two parallel columns
-- `props.key` and `props.value` (Array(String) each, same length per row).
CREATE TABLE IF NOT EXISTS events
(
    ts DateTime,
    received_at DateTime,
    site_id String,
    name String,
    visitor_id UInt64,
    session_id UInt64,
    hostname String,
    pathname String,
    referrer String,
    referrer_source String,
    channel String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_content String,
    utm_term String,
    country String,
    region String,
    city String,
    device String,
    browser String,
    browser_version String,
    os String,
    os_version String,
    props Nested(key String, value String),
    revenue_micros Int64,
    revenue_currency String,
    interactive UInt8,
    hit_index UInt32,
    batch_id String,
    plugin_set String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (site_id, toStartOfHour(ts), name, visitor_id)
;
