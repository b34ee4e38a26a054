-- 0006 control: what central sends to edges over the control channel,
-- besides `sites`: the other names a hit gives for its site, and the
-- plugin chains with everything an edge needs to build them.

-- GA4 measurement ids (`kind` 'ga4', `secret` = the stream's api secret)
-- and Segment write keys (`kind` 'segment', `secret` empty) of a site.
-- Deleting a stream is a higher `version` with `deleted` = 1.
CREATE TABLE IF NOT EXISTS site_streams
(
    site_id String,
    kind String,
    stream_id String,
    secret String,
    created_at DateTime,
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site_id, kind, stream_id)
;

-- The active plugin chains. `scope` empty is the platform chain (every
-- site, first); otherwise a `site_id`, whose chain runs after the
-- platform's for that site only. `position` orders a chain. A binding
-- names the component by `sha256` (stored content-addressed in the archive
-- store) and its optional data blob by `data_sha256`; `config` goes to the
-- plugin's `init` as is; `on_failure` is 'skip-plugin' or 'reject-batch'.
-- Deactivating is a higher `version` with `deleted` = 1.
CREATE TABLE IF NOT EXISTS plugin_bindings
(
    scope String,
    name String,
    plugin_version String,
    sha256 String,
    config String,
    data_sha256 String,
    on_failure String,
    position UInt16,
    activated_at DateTime,
    activated_by String,
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (scope, name)
;

-- Every binding change, appended and never merged away: what `plugin
-- rollback` reads to find the binding before the current one.
CREATE TABLE IF NOT EXISTS plugin_binding_log
(
    scope String,
    name String,
    plugin_version String,
    sha256 String,
    config String,
    data_sha256 String,
    on_failure String,
    position UInt16,
    activated_at DateTime,
    activated_by String,
    version UInt64,
    deleted UInt8
)
ENGINE = MergeTree()
ORDER BY (scope, name, version)
;

-- `plugin_activations` (0004) had no room for a binding's config, data or
-- failure policy and was never written; `plugin_bindings` replaces it.
DROP TABLE IF EXISTS plugin_activations
;
