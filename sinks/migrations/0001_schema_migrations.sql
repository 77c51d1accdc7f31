-- Which migrations have been applied. One row per (migration, process that applied it):
-- several processes may apply the same migration concurrently, so rows are deduplicated by
-- version (ReplacingMergeTree) and read with GROUP BY version.
CREATE TABLE IF NOT EXISTS {{ db }}.schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime('UTC'),
    server_version String,
    applied_by String
)
ENGINE = ReplacingMergeTree()
ORDER BY version;
