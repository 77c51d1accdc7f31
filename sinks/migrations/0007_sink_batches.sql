-- One row per table per sink flush: what the Pipeline health dashboard shows as batch sizes
-- and flush durations. An append-only log (MergeTree), not deduplicated: a retried flush
-- that failed before this insert never wrote its row.
CREATE TABLE IF NOT EXISTS {{ t('sink_batches') }}{{ on_cluster }}
(
    table {{ lc('String') }},
    rows UInt32,
    rejected UInt32,
    seconds Float64,
    flushed_at DateTime('UTC'),
    worker String
)
ENGINE = {{ engine('MergeTree', table='sink_batches') }}
PARTITION BY toYYYYMMDD(flushed_at)
ORDER BY (table, flushed_at)
{%- if has.ttl and retention.get('sink_batches') %}
TTL flushed_at + INTERVAL {{ retention['sink_batches'] }} DAY
{%- endif %};
{{ distributed('sink_batches') }}
