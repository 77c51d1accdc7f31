-- BorrowerFlag v2 (docs/contract.md#borrowerflag-borrower-flags): its schema version, structured
-- facts and next action, as plain columns and parallel arrays that every ClickHouse reads
-- without JSON functions (18.16 lacks them): a map is two arrays, keys and values, element i
-- of one going with element i of the other. The facts' first/last call times are the existing
-- first_event_at/last_event_at. Rows stored before this migration, and v1 records, get the
-- defaults: schema_version 1, empty arrays, 0, '' (next_action '' = none suggested).
-- One ALTER: a concurrent migrator that loses the race gets "column already exists" (code 44
-- on 18.16, 15 on current versions), tolerated for this statement.
-- tolerate: 44
ALTER TABLE {{ t('borrower_flags') }}{{ on_cluster }}
    ADD COLUMN schema_version UInt8 DEFAULT 1,
    ADD COLUMN fact_outcomes Array(String),
    ADD COLUMN fact_outcome_counts Array(UInt32),
    ADD COLUMN fact_hangup_stages Array(String),
    ADD COLUMN fact_channels Array(String),
    ADD COLUMN fact_channel_counts Array(UInt32),
    ADD COLUMN fact_pre_notified_calls UInt32 DEFAULT 0,
    ADD COLUMN fact_bad_hour_calls UInt32 DEFAULT 0,
    ADD COLUMN threshold_metric String DEFAULT '',
    ADD COLUMN threshold_op String DEFAULT '',
    ADD COLUMN threshold_count UInt32 DEFAULT 0,
    ADD COLUMN threshold_limit UInt32 DEFAULT 0,
    ADD COLUMN threshold_window_ms UInt64 DEFAULT 0,
    ADD COLUMN next_action {{ lc('String') }} DEFAULT '',
    ADD COLUMN next_action_param_names Array(String),
    ADD COLUMN next_action_param_values Array(Int64),
    ADD COLUMN next_action_also Array(String);
{{ redistributed('borrower_flags') }}
