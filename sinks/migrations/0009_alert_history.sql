-- Alert history: one row per (alert_id, status), so the firing record with its numbers
-- (rate, counts, Wilson bounds, baseline) stays after the resolved record arrives. Until now
-- the table was ordered by alert_id alone and ReplacingMergeTree kept only the resolved row
-- once parts merged. The sorting key of a MergeTree cannot take an existing column, so the
-- table is rebuilt: an empty table with the new key is swapped in (writers insert into it from
-- then on), then the old rows are copied into it. Redeliveries and repeated copies collapse on
-- (alert_id, status, version), and readers take argMax(..., version) per alert_id, so a copy
-- never changes an answer. The old table stays as hangup_alerts_0005 (drop it when the upgrade
-- is done: docs/operations.md); it is never dropped here, so a concurrent migrator's late
-- rename always fails on its first pair ("already exists", 57, or "unknown table", 60:
-- tolerated for that statement only) and never renames the new table away.
-- Swap first, copy second: on 18.16 a copy INTO the new table running beside another
-- migrator's RENAME of it deadlocks the two queries (measured), so nothing reads or writes
-- hangup_alerts_0009 but the CREATE and the RENAME.
-- On a cluster 0005 already created the table with this key (clusters start fresh).
{% if not cluster %}
CREATE TABLE IF NOT EXISTS {{ db }}.hangup_alerts_0009
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
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (alert_id, status)
{%- if has.ttl and retention.get('hangup_alerts') %}
TTL window_start + INTERVAL {{ retention['hangup_alerts'] }} DAY
{%- endif %};
-- tolerate: 57 60
RENAME TABLE {{ db }}.hangup_alerts TO {{ db }}.hangup_alerts_0005, {{ db }}.hangup_alerts_0009 TO {{ db }}.hangup_alerts;
INSERT INTO {{ db }}.hangup_alerts
SELECT alert_id, status, dimension, value, window_size_s, window_start, window_end, connected, hung_up,
       hangup_rate, wilson_low, wilson_high, baseline_rate, baseline_connected, explanation, version,
       emitted_at, ingested_at
FROM {{ db }}.hangup_alerts_0005;
{% endif %}
