-- 0003 sessions: one aggregate row per (site, session) and UTC day, fed
-- from `events`.
--
-- Gives entry page (first event's pathname), exit page (last event's
-- pathname), pageviews, interactive events, start and end, the visitor and
-- the entry attribution (source, channel, UTM, country, device, browser,
-- OS taken from the session's first event). From these:
--   duration = maxMerge(ended_at) - minMerge(started_at)
--   bounce   = countIfMerge(interactive_events) <= 1
--
-- A SESSION THAT CROSSES MIDNIGHT UTC CONTRIBUTES TO TWO DAY PARTITIONS:
-- one row in each `day`, which background merges never combine (they only
-- merge within a partition). Always read with
-- `GROUP BY site_id, session_id` and the -Merge combinators so the two
-- halves are combined; a per-day count of sessions counts such a session
-- on both days (as a visit on each day, like the hourly `visits`).
--
-- State columns are not named like the `events` columns they aggregate
-- (e.g. `visitor`, `entry_channel`): an alias equal to a source column name
-- confuses alias resolution on older servers.
CREATE TABLE IF NOT EXISTS sessions
(
    site_id String,
    session_id UInt64,
    day Date,
    visitor AggregateFunction(any, UInt64),
    started_at AggregateFunction(min, DateTime),
    ended_at AggregateFunction(max, DateTime),
    entry_page AggregateFunction(argMin, String, DateTime),
    exit_page AggregateFunction(argMax, String, DateTime),
    pageviews AggregateFunction(countIf, UInt8),
    events AggregateFunction(count),
    interactive_events AggregateFunction(countIf, UInt8),
    entry_referrer_source AggregateFunction(argMin, String, DateTime),
    entry_channel AggregateFunction(argMin, String, DateTime),
    entry_utm_source AggregateFunction(argMin, String, DateTime),
    entry_utm_medium AggregateFunction(argMin, String, DateTime),
    entry_utm_campaign AggregateFunction(argMin, String, DateTime),
    entry_country AggregateFunction(argMin, String, DateTime),
    entry_device AggregateFunction(argMin, String, DateTime),
    entry_browser AggregateFunction(argMin, String, DateTime),
    entry_os AggregateFunction(argMin, String, DateTime)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (site_id, session_id)
;

CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv TO sessions
AS SELECT
    site_id,
    session_id,
    toDate(ts) AS day,
    anyState(visitor_id) AS visitor,
    minState(ts) AS started_at,
    maxState(ts) AS ended_at,
    argMinState(pathname, ts) AS entry_page,
    argMaxState(pathname, ts) AS exit_page,
    countIfState(name = 'pageview') AS pageviews,
    countState() AS events,
    countIfState(interactive = 1) AS interactive_events,
    argMinState(referrer_source, ts) AS entry_referrer_source,
    argMinState(channel, ts) AS entry_channel,
    argMinState(utm_source, ts) AS entry_utm_source,
    argMinState(utm_medium, ts) AS entry_utm_medium,
    argMinState(utm_campaign, ts) AS entry_utm_campaign,
    argMinState(country, ts) AS entry_country,
    argMinState(device, ts) AS entry_device,
    argMinState(browser, ts) AS entry_browser,
    argMinState(os, ts) AS entry_os
FROM events
GROUP BY site_id, session_id, day
;
