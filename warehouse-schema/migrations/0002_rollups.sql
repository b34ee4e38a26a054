-- 0002 hourly rollups, each fed from `events` by a materialized view.
--
-- All are AggregatingMergeTree partitioned by `toYYYYMMDD(hour)`, so their
-- partition ids are the same as those of `events` and a day can be rebuilt
-- and swapped in every table with the same `REPLACE PARTITION` id.
-- Read them with the -Merge combinators and a GROUP BY: rows of one key are
-- only combined by background merges, never guaranteed at read time.
--
-- Materialized views fire per inserted block and do NOT fire on
-- `ATTACH/REPLACE PARTITION`: whoever swaps a day of `events` rebuilds the
-- same day of every rollup from `events` (INSERT … SELECT of the view's
-- SELECT) into a staging table and swaps that too.
--
-- Pageviews are `countIfState(name = 'pageview')` and events
-- `countState()`: both exist on 18.16 and current ClickHouse
-- (`SimpleAggregateFunction` does not exist on 18.16).

-- Tiny per-site totals: what the overview chart and the top-line numbers
-- read. Kept apart from the per-dimension rollups, which are much larger
-- for long-tail sites.
CREATE TABLE IF NOT EXISTS site_hourly
(
    site_id String,
    hour DateTime,
    pageviews AggregateFunction(countIf, UInt8),
    events AggregateFunction(count),
    visitors AggregateFunction(uniq, UInt64),
    visits AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(hour)
ORDER BY (site_id, hour)
;

CREATE MATERIALIZED VIEW IF NOT EXISTS site_hourly_mv TO site_hourly
AS SELECT
    site_id,
    toStartOfHour(ts) AS hour,
    countIfState(name = 'pageview') AS pageviews,
    countState() AS events,
    uniqState(visitor_id) AS visitors,
    uniqState(session_id) AS visits
FROM events
GROUP BY site_id, hour
;

-- Per page (hostname + pathname). `events` counts every event that
-- happened on the page, pageviews included.
CREATE TABLE IF NOT EXISTS pages_hourly
(
    site_id String,
    hour DateTime,
    hostname String,
    pathname String,
    pageviews AggregateFunction(countIf, UInt8),
    events AggregateFunction(count),
    visitors AggregateFunction(uniq, UInt64),
    visits AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(hour)
ORDER BY (site_id, hour, hostname, pathname)
;

CREATE MATERIALIZED VIEW IF NOT EXISTS pages_hourly_mv TO pages_hourly
AS SELECT
    site_id,
    toStartOfHour(ts) AS hour,
    hostname,
    pathname,
    countIfState(name = 'pageview') AS pageviews,
    countState() AS events,
    uniqState(visitor_id) AS visitors,
    uniqState(session_id) AS visits
FROM events
GROUP BY site_id, hour, hostname, pathname
;

-- Per traffic source and audience dimension: source/channel, UTM, country,
-- device, browser, OS. Filters and breakdowns on any of these (alone or
-- together) are answered here; region/city, referrer URLs and props are
-- answered from `events`.
CREATE TABLE IF NOT EXISTS sources_hourly
(
    site_id String,
    hour DateTime,
    referrer_source String,
    channel String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    country String,
    device String,
    browser String,
    os String,
    pageviews AggregateFunction(countIf, UInt8),
    events AggregateFunction(count),
    visitors AggregateFunction(uniq, UInt64),
    visits AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(hour)
ORDER BY (site_id, hour, referrer_source, channel, utm_source, utm_medium, utm_campaign, country, device, browser, os)
;

CREATE MATERIALIZED VIEW IF NOT EXISTS sources_hourly_mv TO sources_hourly
AS SELECT
    site_id,
    toStartOfHour(ts) AS hour,
    referrer_source,
    channel,
    utm_source,
    utm_medium,
    utm_campaign,
    country,
    device,
    browser,
    os,
    countIfState(name = 'pageview') AS pageviews,
    countState() AS events,
    uniqState(visitor_id) AS visitors,
    uniqState(session_id) AS visits
FROM events
GROUP BY site_id, hour, referrer_source, channel, utm_source, utm_medium, utm_campaign, country, device, browser, os
;
