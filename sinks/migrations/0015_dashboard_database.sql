-- The dashboard database (docs/privacy.md, "Masked borrower ids"): what Grafana's read-only
-- user and the report read, with borrower and loan ids masked. ClickHouse 18.16 has no row or
-- column security, and a VIEW (or Merge table) in another database is checked with the
-- querying user's rights on the tables it reads: a user limited to this database gets "Access
-- denied to database <db>". So, where the server has the dashboard cluster (privacy.
-- dashboard_cluster: a "loopback" <remote_servers> entry that connects back to the same
-- server as a read-only user that may read every database; in cluster mode, clickhouse.cluster):
--   {{ mask }}  private: VIEWs with the ids masked, over the tables with borrower ids, and the
--               masking key (random, made here once; never leaves the server);
--   {{ dash }}  Distributed tables over that cluster: over the masking views for
--               borrower_flags and borrower_calls, over the tables themselves for the rest
--               (dead_letters without the stored message). A query reaches the tables as the
--               cluster's user; the dashboard user (prefer_localhost_replica=0, which makes even
--               the local shard go over the network) needs rights on {{ dash }} only.
-- Without that cluster (the embedded store, a server not yet configured for it): plain VIEWs
-- and Merge tables with the same columns, readable by users that may read {{ db }} anyway.
-- A masked id: its first 2 characters, '*' and 12 hex characters (48 bits: no two of millions of
-- borrowers share one) of SHA-256(key || id), so one borrower keeps one masked id everywhere,
-- and a known id can't be looked up without the key.
-- After a migration that adds columns to one of these tables, re-create its objects here.
{%- set masked_id %}if({0} = '', '', concat(substring({0}, 1, 2), '*',
    lower(hex(substring(SHA256(concat((SELECT min(key) FROM {{ mask }}.mask_key), {0})), 1, 6)))))
{%- endset %}
{%- set flag_columns = ['flag_id', 'rule_id', 'explanation', 'evidence', 'rule_version', 'severity', 'status',
    'evidence_count', 'first_event_at', 'last_event_at', 'emitted_at', 'emitted_at_ms', 'ingested_at',
    'evidence_event_id', 'evidence_call_id', 'evidence_occurred_at', 'evidence_outcome', 'evidence_hangup_stage',
    'evidence_agent_id', 'evidence_channel',
    'evidence_script_version', 'schema_version', 'fact_outcomes', 'fact_outcome_counts', 'fact_hangup_stages',
    'fact_channels', 'fact_channel_counts', 'fact_pre_notified_calls', 'fact_bad_hour_calls', 'threshold_metric',
    'threshold_op', 'threshold_count', 'threshold_limit', 'threshold_window_ms', 'next_action',
    'next_action_param_names', 'next_action_param_values', 'next_action_also'] %}
{%- set call_columns = ['occurred_at', 'event_id', 'call_id', 'occurred_at_ms', 'campaign', 'channel', 'agent_id',
    'branch', 'outcome', 'hangup_stage', 'duration_s', 'attempt_no', 'pre_notified', 'credit_grade',
    'first_time_borrower', 'script_version', 'ingested_at'] %}
{%- set dead_letter_columns = ['source_topic', 'source_partition', 'source_offset', 'source_timestamp_ms',
    'error_kind', 'error_field', 'error', 'received_at', 'worker', 'ingested_at'] %}
{%- set plain = ['hangup_rates', 'hangup_alerts', 'sink_batches', 'rollup_1m', 'rollup_1h', 'rollup_1d'] %}
CREATE DATABASE IF NOT EXISTS {{ mask }}{{ on_cluster }};
CREATE DATABASE IF NOT EXISTS {{ dash }}{{ on_cluster }};
CREATE TABLE IF NOT EXISTS {{ mask }}.mask_key{{ '_local' if cluster else '' }}{{ on_cluster }} (key String)
ENGINE = {{ engine('MergeTree', table='mask_key') }} ORDER BY key;
{%- if cluster %}
CREATE TABLE IF NOT EXISTS {{ mask }}.mask_key{{ on_cluster }} AS {{ mask }}.mask_key_local
ENGINE = Distributed({{ cluster }}, {{ mask }}, mask_key_local);
{%- endif %}
-- 128 random bits, once (a concurrent migrator may add a second key: min(key) picks one). On a
-- cluster into this host's shard (a Distributed table without a sharding key takes no INSERT);
-- reads go through the Distributed table, so every shard masks with the same key.
INSERT INTO {{ mask }}.mask_key{{ '_local' if cluster else '' }}
SELECT lower(hex(SHA256(concat(toString(rand64()), toString(rand64(1)), toString(now())))))
FROM system.one WHERE (SELECT count() FROM {{ mask }}.mask_key) = 0;
-- The dead letters' columns the dashboards may read: not the stored message (key_b64, value_b64).
CREATE VIEW IF NOT EXISTS {{ mask }}.dead_letters_columns{{ on_cluster }} AS
SELECT {{ dead_letter_columns | join(', ') }} FROM {{ t('dead_letters') }};
-- The raw ids are renamed in a subquery, so each masked column is computed from the raw one.
-- flag_id stays: a SHA-1 of rule, borrower and episode, it names no one, and it leads from a
-- dashboard to the flag in `hangwatch export flags`. Explanations and evidence name no
-- borrower or loan.
CREATE VIEW IF NOT EXISTS {{ mask }}.borrower_flags{{ on_cluster }} AS
SELECT {{ masked_id.format('raw_borrower_id') }} AS borrower_id, {{ masked_id.format('raw_loan_id') }} AS loan_id,
       {{ flag_columns | join(', ') }}
FROM (SELECT borrower_id AS raw_borrower_id, loan_id AS raw_loan_id,
             {{ flag_columns | join(', ') }}
      FROM {{ t('borrower_flags') }});
CREATE VIEW IF NOT EXISTS {{ mask }}.borrower_calls{{ on_cluster }} AS
SELECT {{ masked_id.format('raw_borrower_id') }} AS borrower_id, {{ masked_id.format('raw_loan_id') }} AS loan_id,
       {{ call_columns | join(', ') }}
FROM (SELECT borrower_id AS raw_borrower_id, loan_id AS raw_loan_id, {{ call_columns | join(', ') }}
      FROM {{ t('borrower_calls') }});
{%- if dash_cluster %}
{%- set local = '_local' if cluster else '' %}
{%- for name in ('borrower_flags', 'borrower_calls') %}
CREATE TABLE IF NOT EXISTS {{ dash }}.{{ name }}{{ on_cluster }} AS {{ mask }}.{{ name }}
ENGINE = Distributed({{ dash_cluster }}, {{ mask }}, {{ name }});
{%- endfor %}
{%- for name in plain %}
CREATE TABLE IF NOT EXISTS {{ dash }}.{{ name }}{{ on_cluster }} AS {{ t(name) }}
ENGINE = Distributed({{ dash_cluster }}, {{ db }}, {{ name }}{{ local }});
{%- endfor %}
CREATE TABLE IF NOT EXISTS {{ dash }}.dead_letters{{ on_cluster }} AS {{ mask }}.dead_letters_columns
ENGINE = Distributed({{ dash_cluster }}, {{ db }}, dead_letters{{ local }});
{%- else %}
{%- for name in ('borrower_flags', 'borrower_calls') %}
CREATE VIEW IF NOT EXISTS {{ dash }}.{{ name }} AS SELECT * FROM {{ mask }}.{{ name }};
{%- endfor %}
{%- for name in plain %}
CREATE TABLE IF NOT EXISTS {{ dash }}.{{ name }} AS {{ t(name) }} ENGINE = Merge({{ db }}, '^{{ name }}$');
{%- endfor %}
CREATE TABLE IF NOT EXISTS {{ dash }}.dead_letters AS {{ mask }}.dead_letters_columns
ENGINE = Merge({{ db }}, '^dead_letters$');
{%- endif %}
