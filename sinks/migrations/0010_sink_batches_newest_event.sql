-- The newest event time of each flush (milliseconds; for call_events its newest occurred_at,
-- for the other tables their time column), so `freshness` and the "pipeline stalled" rule
-- read the small flush log instead of scanning every call event. 0 in rows written before
-- this migration (readers ignore 0).
-- A concurrent migrator that loses the race gets "column already exists" (code 44 on 18.16,
-- 15 on current versions), tolerated for this statement.
-- tolerate: 44
ALTER TABLE {{ t('sink_batches') }}{{ on_cluster }} ADD COLUMN newest_event_ms UInt64;
{{ redistributed('sink_batches') }}
