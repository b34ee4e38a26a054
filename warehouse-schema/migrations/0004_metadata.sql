-- 0004 metadata: merchants, sites, API keys, goals, funnels, plugins,
-- edges and the loads ledger.
--
-- Every table is a ReplacingMergeTree(version) ordered by its natural key:
-- an update is an INSERT of the whole row with a higher `version` (e.g. a
-- millisecond timestamp), a delete is such a row with `deleted = 1`.
-- Duplicates disappear only on background merges, so readers take the
-- latest version per key themselves (`argMax(col, version)` … `GROUP BY
-- key`, or `FINAL`) and skip deleted rows. Services cache these tables in
-- memory.

CREATE TABLE IF NOT EXISTS merchants
(
    merchant_id String,
    name String,
    created_at DateTime,
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY merchant_id
;

-- `allowed_hostnames` empty means: only `domain` and its subdomains.
CREATE TABLE IF NOT EXISTS sites
(
    site_id String,
    merchant_id String,
    domain String,
    allowed_hostnames Array(String),
    timezone String,
    created_at DateTime,
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY site_id
;

-- Only the hash of a key is stored, never the key. `key_prefix` is the
-- short public part shown in listings. Empty `site_ids` means every site of
-- the merchant. `expires_at` 0 (1970-01-01 00:00:00) means never.
CREATE TABLE IF NOT EXISTS api_keys
(
    key_hash String,
    key_prefix String,
    merchant_id String,
    site_ids Array(String),
    name String,
    rate_limit_per_minute UInt32,
    created_at DateTime,
    expires_at DateTime,
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_hash
;

-- `kind` is 'event' (matches `event_name`) or 'page' (matches
-- `page_path`, which may end in '*').
CREATE TABLE IF NOT EXISTS goals
(
    site_id String,
    goal_id String,
    kind String,
    event_name String,
    page_path String,
    display_name String,
    created_at DateTime,
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site_id, goal_id)
;

-- `steps` are goal ids, in order; `window_seconds` is the windowFunnel
-- window.
CREATE TABLE IF NOT EXISTS funnels
(
    site_id String,
    funnel_id String,
    name String,
    steps Array(String),
    window_seconds UInt32,
    created_at DateTime,
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site_id, funnel_id)
;

-- Uploaded plugin components, content-addressed in the archive store by
-- `sha256`. `plugin_version` is the plugin's own version string (`version`
-- is the row version, as in every metadata table). `merchant_id` is empty
-- for platform plugins. `status`: 'validating', 'ready' or 'rejected'.
CREATE TABLE IF NOT EXISTS plugins
(
    name String,
    plugin_version String,
    sha256 String,
    archive_key String,
    size_bytes UInt64,
    merchant_id String,
    status String,
    status_detail String,
    uploaded_at DateTime,
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (name, plugin_version)
;

-- Which plugin version runs where: `site_id` empty is the platform chain
-- (every site); `position` orders a chain.
CREATE TABLE IF NOT EXISTS plugin_activations
(
    site_id String,
    name String,
    plugin_version String,
    position UInt16,
    activated_at DateTime,
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site_id, name)
;

-- Edge agents, known by the SHA-256 fingerprint of their client
-- certificate. Revoking is the soft delete.
CREATE TABLE IF NOT EXISTS edges
(
    edge_id String,
    name String,
    cert_fingerprint String,
    created_at DateTime,
    revoked UInt8,
    revoked_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY edge_id
;

-- The loads ledger: one entry per batch id, what makes loading
-- exactly-once. `status`: 'loading' (written before the insert),
-- 'loaded' (after it), 'failed' (with `error`), 'superseded' (a reprocess
-- replaced the batch's days). `min_ts`/`max_ts` bound the batch's event
-- times, so a day's batches can be found for recovery and reprocess.
CREATE TABLE IF NOT EXISTS loads
(
    batch_id String,
    archive_key String,
    plugin_set String,
    rows UInt64,
    min_ts DateTime,
    max_ts DateTime,
    status String,
    error String,
    loaded_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY batch_id
;
