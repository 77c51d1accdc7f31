-- Per flush of call_events: the stored calls that happened more than worker.grace_s before
-- they were stored (the stream had closed their windows; the rollups count them at once), so
-- the "late calls" panel reads the small flush log instead of scanning call_events by
-- ingestion time. 0 in rows written before this migration and for the other tables.
-- tolerate: 44
ALTER TABLE {{ t('sink_batches') }}{{ on_cluster }} ADD COLUMN late_rows UInt64;
{{ redistributed('sink_batches') }}
