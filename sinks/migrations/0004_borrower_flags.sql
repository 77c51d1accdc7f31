-- Borrower flag transitions. One row per (flag_id, status): a redelivered transition
-- collapses, the latest emission wins (version emitted_at_ms). The current state of a flag
-- is the row with the furthest status (raised < escalated < resolved), read with argMax.
-- Partitioned by month of the episode's first event, which every transition of a flag shares.
CREATE TABLE IF NOT EXISTS {{ t('borrower_flags') }}{{ on_cluster }}
(
    flag_id String,
    borrower_id String,
    loan_id String,
    rule_id {{ lc('String') }},
    rule_version UInt32,
    severity Enum8('low' = 1, 'medium' = 2, 'high' = 3),
    status Enum8('raised' = 1, 'escalated' = 2, 'resolved' = 3),
    evidence String,
    evidence_count UInt32,
    first_event_at DateTime('UTC'),
    last_event_at DateTime('UTC'),
    explanation String,
    emitted_at DateTime('UTC'),
    emitted_at_ms UInt64,
    ingested_at DateTime('UTC')
)
ENGINE = {{ engine('ReplacingMergeTree', 'emitted_at_ms', table='borrower_flags') }}
PARTITION BY toYYYYMM(first_event_at)
ORDER BY (flag_id, status)
{%- if has.ttl and retention.get('borrower_flags') %}
TTL first_event_at + INTERVAL {{ retention['borrower_flags'] }} DAY
{%- endif %};
{{ distributed('borrower_flags') }}
