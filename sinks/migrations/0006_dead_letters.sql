-- Messages that could not be stored as data: the worker's DLQ records (contract violations
-- of call-outcomes) and rows the sink itself could not write (error_kind sink_*), with the
-- original bytes in base64 and the source position. One row per source position: a
-- redelivery collapses; reads group by the position, so they are exact before merges.
CREATE TABLE IF NOT EXISTS {{ t('dead_letters') }}{{ on_cluster }}
(
    source_topic {{ lc('String') }},
    source_partition UInt32,
    source_offset UInt64,
    source_timestamp_ms Nullable(UInt64),
    key_b64 Nullable(String),
    value_b64 Nullable(String),
    error_kind {{ lc('String') }},
    error_field Nullable(String),
    error String,
    received_at DateTime('UTC'),
    worker String,
    ingested_at DateTime('UTC')
)
ENGINE = {{ engine('ReplacingMergeTree', table='dead_letters') }}
PARTITION BY toYYYYMM(received_at)
ORDER BY (source_topic, source_partition, source_offset)
{%- if has.ttl and retention.get('dead_letters') %}
TTL received_at + INTERVAL {{ retention['dead_letters'] }} DAY
{%- endif %};
{{ distributed('dead_letters') }}
