-- Which migrations have been applied. One row per (migration, process that applied it):
-- several processes may apply the same migration concurrently, so rows are deduplicated by
-- version (ReplacingMergeTree) and read with GROUP BY version.
CREATE TABLE IF NOT EXISTS {{ t('schema_migrations') }}{{ on_cluster }}
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime('UTC'),
    server_version String,
    applied_by String
)
ENGINE = {{ engine('ReplacingMergeTree', table='schema_migrations') }}
ORDER BY version;
{{ distributed('schema_migrations') }}
