-- Compact rollups (issue 14), maintained by the sink from rollup_1h (sinks/rollup.py) for the
-- reads that need no segment filter: a bank's portfolio has hundreds of segments (branch x
-- campaign x channel x script version) and thousands of (segment, profile) pairs per hour, so
-- the rows of rollup_1h/1d that a 90-day breakdown by one column reads are nearly as many as
-- the calls. Here each row is one value of one column, summed over every segment:
--   rollup_compact_1m  one minute (UTC);
--   rollup_compact_1h  one hour (UTC);
--   rollup_compact_1d  one local day (midnight in the `timezone` setting, stored as UTC).
-- facet: the column the row splits by ('all': no split; 'branch', 'campaign', 'channel',
-- 'script_version', 'credit_grade', 'pre_notified', 'first_time_borrower'; 'agent': value is
-- the agent id and branch its branch), value its value (as rollup_1h writes it), branch ''
-- except for 'agent'. Readers use these rows only when no segment filter is set
-- (sinks/catalogue/rollup.py compact_rows); a filtered read keeps reading rollup_1m/1h/1d.
-- Exact under redelivery like the rollups: a minute or hour is recomputed as a whole from its
-- current rollup_1m/1h rows and a day from its hours; `version` is the number of distinct events of the
-- bucket, so ReplacingMergeTree(version) and argMax(..., version) keep the newest recompute.
{% for grain, partition in (('1m', 'toYYYYMMDD'), ('1h', 'toYYYYMM'), ('1d', 'toYYYYMM')) %}
CREATE TABLE IF NOT EXISTS {{ t('rollup_compact_' ~ grain) }}{{ on_cluster }}
(
    bucket_start DateTime('UTC'),
    facet {{ lc('String') }},
    value {{ lc('String') }},
    branch {{ lc('String') }},
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
    computed_at DateTime('UTC')
)
ENGINE = {{ engine('ReplacingMergeTree', 'version', table='rollup_compact_' ~ grain) }}
PARTITION BY {{ partition }}(bucket_start)
ORDER BY (facet, bucket_start, value, branch)
{%- if has.ttl and retention.get('rollup_compact_' ~ grain) %}
TTL bucket_start + INTERVAL {{ retention['rollup_compact_' ~ grain] }} DAY
{%- endif %}
{%- if has.ttl_only_drop_parts and retention.get('rollup_compact_' ~ grain) %}
SETTINGS ttl_only_drop_parts = 1
{%- endif %};
{{ distributed('rollup_compact_' ~ grain) }}
{%- if dash_cluster %}
CREATE TABLE IF NOT EXISTS {{ dash }}.rollup_compact_{{ grain }}{{ on_cluster }} AS {{ t('rollup_compact_' ~ grain) }}
ENGINE = Distributed({{ dash_cluster }}, {{ db }}, rollup_compact_{{ grain }}{{ '_local' if cluster else '' }});
{%- else %}
CREATE TABLE IF NOT EXISTS {{ dash }}.rollup_compact_{{ grain }} AS {{ t('rollup_compact_' ~ grain) }}
ENGINE = Merge({{ db }}, '^rollup_compact_{{ grain }}$');
{%- endif %}
{% endfor %}
