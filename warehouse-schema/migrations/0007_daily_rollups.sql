-- 0007 daily rollups for the dashboard's queries, measured on 10 M events
-- (bench/results/query.md): the hourly rollups of 0002 were slower than
-- `events` because (1) their rows barely shrink for long-tail sites,
-- (2) merging `uniq` states costs as much as counting the raw rows, and
-- (3) a 30-day query reads at least one 8192-row granule per day
-- partition, deserializing every state in it.
--
-- So:
-- - grain: one row per site and UTC day (`day` is the UTC midnight, a
--   DateTime, so ranges and time buckets are written as on `hour`);
-- - distinct counts: `uniqHLL12` (a fixed 2.5 KB state past 16 values;
--   merging 30 of them is ~100x cheaper than merging `uniq` states). The
--   planner counts with `uniqHLL12` on every source, `events` included,
--   so every source gives the same answer; it is exact up to 16 distinct
--   values and within a few percent above (measured against uniqExact
--   per site and day: median 0.7 %, p99 3.5 %);
-- - `index_granularity` 16/32 so a small site reads a few rows per day
--   partition, not 8192;
-- - per-dimension rows in ONE narrow table (`dimension`, `value`) fed by
--   one view with ARRAY JOIN, ordered by (site_id, dimension, value), so
--   "top sources" reads only that site's source rows.
--
-- Same partitions as `events` (`toYYYYMMDD`), so reprocess and the
-- loader's rollup rebuild swap a day of them like the others (their
-- SELECTs are in the warehouse crate's `loads.rs` and must match).
--
-- Each table is filled from the `events` already there before its view
-- is created, once (the INSERT does nothing when the table has rows).
-- Apply with the loader stopped: a load landing between a backfill and
-- its view is missing from that table until its day is reprocessed.

CREATE TABLE IF NOT EXISTS site_daily
(
    site_id String,
    day DateTime,
    pageviews AggregateFunction(countIf, UInt8),
    events AggregateFunction(count),
    visitors AggregateFunction(uniqHLL12, UInt64),
    visits AggregateFunction(uniqHLL12, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (site_id, day)
SETTINGS index_granularity = 16
;

INSERT INTO site_daily
SELECT
    site_id,
    toStartOfDay(ts) AS day,
    countIfState(name = 'pageview') AS pageviews,
    countState() AS events,
    uniqHLL12State(visitor_id) AS visitors,
    uniqHLL12State(session_id) AS visits
FROM events
WHERE (SELECT count() FROM site_daily) = 0
GROUP BY site_id, day
SETTINGS max_bytes_before_external_group_by = 1000000000
;

CREATE MATERIALIZED VIEW IF NOT EXISTS site_daily_mv TO site_daily
AS SELECT
    site_id,
    toStartOfDay(ts) AS day,
    countIfState(name = 'pageview') AS pageviews,
    countState() AS events,
    uniqHLL12State(visitor_id) AS visitors,
    uniqHLL12State(session_id) AS visits
FROM events
GROUP BY site_id, day
;

-- One row per site, UTC day, dimension and value: `page` (pathname),
-- `source`, `channel`, `utm_source`, `utm_medium`, `utm_campaign`,
-- `country`, `device`, `browser`, `os`. Answers a query that uses one of
-- these (as breakdown and/or filters) and nothing else but time.
CREATE TABLE IF NOT EXISTS dimensions_daily
(
    site_id String,
    day DateTime,
    dimension String,
    value String,
    pageviews AggregateFunction(countIf, UInt8),
    events AggregateFunction(count),
    visitors AggregateFunction(uniqHLL12, UInt64),
    visits AggregateFunction(uniqHLL12, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (site_id, dimension, value, day)
SETTINGS index_granularity = 32
;

INSERT INTO dimensions_daily
SELECT
    site_id,
    toStartOfDay(ts) AS day,
    dimension,
    value,
    countIfState(name = 'pageview') AS pageviews,
    countState() AS events,
    uniqHLL12State(visitor_id) AS visitors,
    uniqHLL12State(session_id) AS visits
FROM events
ARRAY JOIN
    ['page', 'source', 'channel', 'utm_source', 'utm_medium', 'utm_campaign', 'country', 'device', 'browser', 'os'] AS dimension,
    [pathname, referrer_source, channel, utm_source, utm_medium, utm_campaign, country, device, browser, os] AS value
WHERE (SELECT count() FROM dimensions_daily) = 0
GROUP BY site_id, day, dimension, value
SETTINGS max_bytes_before_external_group_by = 1000000000
;

CREATE MATERIALIZED VIEW IF NOT EXISTS dimensions_daily_mv TO dimensions_daily
AS SELECT
    site_id,
    toStartOfDay(ts) AS day,
    dimension,
    value,
    countIfState(name = 'pageview') AS pageviews,
    countState() AS events,
    uniqHLL12State(visitor_id) AS visitors,
    uniqHLL12State(session_id) AS visits
FROM events
ARRAY JOIN
    ['page', 'source', 'channel', 'utm_source', 'utm_medium', 'utm_campaign', 'country', 'device', 'browser', 'os'] AS dimension,
    [pathname, referrer_source, channel, utm_source, utm_medium, utm_campaign, country, device, browser, os] AS value
GROUP BY site_id, day, dimension, value
;
