-- Every valid call event (contract CallOutcome v1), stored once per event_id.
-- ReplacingMergeTree: a redelivered or re-sent event has the same sorting key (an event_id is
-- immutable), so copies collapse on merge; reads use FINAL to be exact before that.
-- Partitioned by day of event time (retention drops days); ordered for the dashboards'
-- filters (branch, campaign, then time), with event_id last as the deduplication key.
-- No raw personal data: borrower_id and loan_id are pseudonymous by contract.
CREATE TABLE IF NOT EXISTS {{ t('call_events') }}{{ on_cluster }}
(
    event_id String,
    call_id String,
    borrower_id String,
    loan_id String,
    occurred_at DateTime('UTC'),
    occurred_at_ms UInt64,
    campaign {{ lc('String') }},
    channel Enum8('human' = 1, 'robot' = 2),
    agent_id {{ lc('Nullable(String)') }},
    branch {{ lc('String') }},
    outcome Enum8('completed' = 1, 'hung_up' = 2, 'refused' = 3, 'wrong_party' = 4, 'declined' = 5,
                  'no_answer' = 6, 'busy' = 7, 'voicemail' = 8, 'invalid_number' = 9),
    hangup_stage {{ lc('Nullable(String)') }},
    duration_s Float64,
    attempt_no Nullable(UInt32),
    pre_notified UInt8,
    credit_grade {{ lc('Nullable(String)') }},
    first_time_borrower Nullable(UInt8),
    script_version {{ lc('Nullable(String)') }},
    schema_version UInt16,
    extra String,
    kafka_partition UInt32,
    kafka_offset UInt64,
    ingested_at DateTime('UTC')
)
ENGINE = {{ engine('ReplacingMergeTree', table='call_events') }}
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (branch, campaign, occurred_at, event_id)
{%- if has.ttl and retention.get('call_events') %}
TTL occurred_at + INTERVAL {{ retention['call_events'] }} DAY
{%- endif %}
{%- if has.ttl_only_drop_parts and retention.get('call_events') %}
SETTINGS ttl_only_drop_parts = 1
{%- endif %};
{{ distributed('call_events') }}
