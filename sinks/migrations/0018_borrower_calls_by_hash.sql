-- borrower_calls sorted by the hash of the borrower first (issue 14): ORDER BY
-- (cityHash64(borrower_id), borrower_id, occurred_at, event_id). One borrower's calls stay
-- together (readers add `cityHash64(borrower_id) = cityHash64(<id>)`, which the key prunes on
-- as before), and a hash range of the borrowers is now a range of the primary key: the
-- design-effect estimate (borrower_clustering) reads a random sample of the borrowers as a
-- sixth of the granules at 90 days instead of every granule of the range's months.
-- Rebuilt like hangup_alerts in 0009 (a MergeTree's sorting key cannot be changed): an empty
-- table with the new key is swapped in first (writers insert into it from then on), then the
-- old rows are copied into it. Copies of an event collapse on the key and readers take one row
-- per event_id, so a repeated copy (a concurrent migrator) never changes an answer. The old
-- table stays as borrower_calls_0013 (drop it when the upgrade is done: docs/operations.md);
-- a concurrent migrator's late rename fails on its first pair ("already exists", 57, or
-- "unknown table", 60: tolerated for that statement only).
{%- set suffix = '_local' if cluster else '' %}
{%- set zk_table = 'borrower_calls_0018' %}
-- The columns of borrower_calls (0013) as they are; only the key changes. They are spelled
-- out, not copied with `AS borrower_calls`: on 18.16 a CREATE ... AS that reads the structure
-- of borrower_calls beside another migrator's RENAME of the same names deadlocks both
-- statements and every later DDL on the database (measured: 1 run in 9 with 4 migrators).
CREATE TABLE IF NOT EXISTS {{ db }}.borrower_calls_0018{{ suffix }}{{ on_cluster }}
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
ENGINE = {{ engine('ReplacingMergeTree', table=zk_table) }}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (cityHash64(borrower_id), borrower_id, occurred_at, event_id)
{%- if has.ttl and retention.get('borrower_calls') %}
TTL occurred_at + INTERVAL {{ retention['borrower_calls'] }} DAY
{%- endif %}
{%- if has.ttl_only_drop_parts and retention.get('borrower_calls') %}
SETTINGS ttl_only_drop_parts = 1
{%- endif %};
-- tolerate: 57 60
RENAME TABLE {{ db }}.borrower_calls{{ suffix }} TO {{ db }}.borrower_calls_0013{{ suffix }},
             {{ db }}.borrower_calls_0018{{ suffix }} TO {{ db }}.borrower_calls{{ suffix }}{{ on_cluster }};
{%- if cluster %}
-- The Distributed table borrower_calls reads and writes borrower_calls_local by name, so it
-- now serves the new tables; the old rows come back through one over the renamed ones (same
-- sharding key: every row returns to its own shard).
CREATE TABLE IF NOT EXISTS {{ db }}.borrower_calls_0013{{ on_cluster }} AS {{ db }}.borrower_calls_0013_local
ENGINE = Distributed({{ cluster }}, {{ db }}, borrower_calls_0013_local, cityHash64(borrower_id));
{%- endif %}
INSERT INTO {{ db }}.borrower_calls
SELECT borrower_id, occurred_at, event_id, call_id, loan_id, occurred_at_ms, campaign, channel, agent_id, branch,
       outcome, hangup_stage, duration_s, attempt_no, pre_notified, credit_grade, first_time_borrower,
       script_version, ingested_at
FROM {{ db }}.borrower_calls_0013;
