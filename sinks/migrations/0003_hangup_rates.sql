-- Window counts per dimension value as emitted by the stream (and corrected by reconcile).
-- One row per version of a window cell; ReplacingMergeTree(version) keeps the highest
-- version per key (window_size_s, dimension, value, window_start), and reads use FINAL.
-- Only counts are stored: every rate is derived from counts in the queries (sinks/queries.py),
-- so a rate over several windows or values is always exact.
CREATE TABLE IF NOT EXISTS {{ t('hangup_rates') }}{{ on_cluster }}
(
    window_size_s UInt32,
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    dimension {{ lc('String') }},
    value {{ lc('String') }},
    attempts UInt32,
    connected UInt32,
    completed UInt32,
    hung_up UInt32,
    refused UInt32,
    wrong_party UInt32,
    declined UInt32,
    no_answer UInt32,
    busy UInt32,
    voicemail UInt32,
    invalid_number UInt32,
    version UInt64,
    final UInt8,
    source Enum8('stream' = 1, 'reconcile' = 2),
    emitted_at DateTime('UTC'),
    ingested_at DateTime('UTC')
)
ENGINE = {{ engine('ReplacingMergeTree', 'version', table='hangup_rates') }}
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (window_size_s, dimension, value, window_start)
{%- if has.ttl and retention.get('hangup_rates') %}
TTL window_start + INTERVAL {{ retention['hangup_rates'] }} DAY
{%- endif %}
{%- if has.ttl_only_drop_parts and retention.get('hangup_rates') %}
SETTINGS ttl_only_drop_parts = 1
{%- endif %};
{{ distributed('hangup_rates') }}
