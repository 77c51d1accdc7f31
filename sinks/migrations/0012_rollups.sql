-- Rollups of call_events at three grains, maintained by the sink (sinks/rollup.py), so that
-- dashboards, the report and queries never recompute from raw events:
--   rollup_1m  one minute (UTC), for ranges up to a day and the edges of longer ranges;
--   rollup_1h  one hour (UTC);
--   rollup_1d  one local day (midnight in the `timezone` setting, stored as UTC).
-- A row holds the outcome counts of one segment (branch, campaign, channel, script version)
-- in one bucket, split further by one facet: 'all' (no split), 'profile' (credit grade,
-- pre-notification, first-time borrower), 'stage' (hang-up stage) or 'agent' (agent id).
-- Columns a facet does not split by are ''. Values are written as the stream writes its
-- dimension values: null -> '(none)', booleans -> 'true'/'false'.
-- Exact under redelivery: a bucket is recomputed as a whole from its distinct event_ids,
-- never incremented, and `version` is the number of distinct events the recompute saw
-- (it only grows as events arrive), so ReplacingMergeTree(version) and argMax(..., version)
-- keep the newest complete recompute; an equal version means the same events.
{% for grain, partition in (('1m', 'toYYYYMMDD'), ('1h', 'toYYYYMM'), ('1d', 'toYYYYMM')) %}
CREATE TABLE IF NOT EXISTS {{ t('rollup_' ~ grain) }}{{ on_cluster }}
(
    bucket_start DateTime('UTC'),
    facet {{ lc('String') }},
    branch {{ lc('String') }},
    campaign {{ lc('String') }},
    channel {{ lc('String') }},
    script_version {{ lc('String') }},
    credit_grade {{ lc('String') }},
    pre_notified {{ lc('String') }},
    first_time_borrower {{ lc('String') }},
    hangup_stage {{ lc('String') }},
    agent_id {{ lc('String') }},
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
ENGINE = {{ engine('ReplacingMergeTree', 'version', table='rollup_' ~ grain) }}
PARTITION BY {{ partition }}(bucket_start)
ORDER BY (facet, bucket_start, branch, campaign, channel, script_version, credit_grade, pre_notified,
          first_time_borrower, hangup_stage, agent_id)
{%- if has.ttl and retention.get('rollup_' ~ grain) %}
TTL bucket_start + INTERVAL {{ retention['rollup_' ~ grain] }} DAY
{%- endif %}
{%- if has.ttl_only_drop_parts and retention.get('rollup_' ~ grain) %}
SETTINGS ttl_only_drop_parts = 1
{%- endif %};
{{ distributed('rollup_' ~ grain) }}
{% endfor %}
