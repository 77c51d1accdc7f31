-- Spike alerts: a firing record (version 1), later a resolved one (version 2), per alert_id.
-- ReplacingMergeTree(version) collapses redeliveries; reads take argMax(..., version) per
-- alert_id, which is exact even when the two records fall in different monthly partitions.
CREATE TABLE IF NOT EXISTS {{ t('hangup_alerts') }}{{ on_cluster }}
(
    alert_id String,
    status Enum8('firing' = 1, 'resolved' = 2),
    dimension {{ lc('String') }},
    value String,
    window_size_s UInt32,
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    connected UInt32,
    hung_up UInt32,
    hangup_rate Float64,
    wilson_low Float64,
    wilson_high Float64,
    baseline_rate Float64,
    baseline_connected UInt32,
    explanation String,
    version UInt64,
    emitted_at DateTime('UTC'),
    ingested_at DateTime('UTC')
)
ENGINE = {{ engine('ReplacingMergeTree', 'version', table='hangup_alerts') }}
PARTITION BY toYYYYMM(window_start)
-- On a cluster (created fresh) the table gets 0009's key at once; 0009 does nothing there.
ORDER BY {% if cluster %}(alert_id, status){% else %}alert_id{% endif %}
{%- if has.ttl and retention.get('hangup_alerts') %}
TTL window_start + INTERVAL {{ retention['hangup_alerts'] }} DAY
{%- endif %};
{{ distributed('hangup_alerts') }}
