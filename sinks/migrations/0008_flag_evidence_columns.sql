-- A flag's evidence in a queryable form: one array per EvidenceItem field, element i being
-- the i-th call of the evidence (schemas.records.EvidenceItem), so panels and queries read it
-- with array functions every ClickHouse has (arrayMap, arrayStringConcat) instead of
-- JSONExtract*, which 18.16 lacks. Optional fields are '' when absent. The JSON string
-- `evidence` stays (the record as it came). Rows stored before this migration have empty
-- arrays; readers fall back to `evidence` for them (sinks/catalogue/flags.py).
-- One ALTER: a concurrent migrator that loses the race gets "column already exists" (code 44
-- on 18.16, 15 on current versions), tolerated for this statement.
-- tolerate: 44
ALTER TABLE {{ t('borrower_flags') }}{{ on_cluster }}
    ADD COLUMN evidence_event_id Array(String),
    ADD COLUMN evidence_call_id Array(String),
    ADD COLUMN evidence_occurred_at Array(DateTime('UTC')),
    ADD COLUMN evidence_outcome Array(String),
    ADD COLUMN evidence_hangup_stage Array(String),
    ADD COLUMN evidence_agent_id Array(String),
    ADD COLUMN evidence_channel Array(String),
    ADD COLUMN evidence_script_version Array(String);
{{ redistributed('borrower_flags') }}
