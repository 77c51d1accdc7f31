-- One borrower's calls, fast: the same events as call_events, ordered by borrower, so that a
-- drill-down into one borrower over a year reads a few granules per month instead of every
-- partition of call_events (ordered by branch and campaign for the dashboards). Written by
-- the sink with call_events, row for row; copies of a redelivered event collapse on merge
-- and reads take one row per event_id (LIMIT 1 BY event_id). Pseudonymous ids only, like
-- call_events.
CREATE TABLE IF NOT EXISTS {{ t('borrower_calls') }}{{ on_cluster }}
(
    borrower_id String,
    occurred_at DateTime('UTC'),
    event_id String,
    call_id String,
    loan_id String,
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
    ingested_at DateTime('UTC')
)
ENGINE = {{ engine('ReplacingMergeTree', table='borrower_calls') }}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (borrower_id, occurred_at, event_id)
{%- if has.ttl and retention.get('borrower_calls') %}
TTL occurred_at + INTERVAL {{ retention['borrower_calls'] }} DAY
{%- endif %}
{%- if has.ttl_only_drop_parts and retention.get('borrower_calls') %}
SETTINGS ttl_only_drop_parts = 1
{%- endif %};
{{ distributed('borrower_calls') }}
