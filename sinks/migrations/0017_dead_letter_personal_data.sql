-- Dead letters of kind personal_data keep the message with the matched numbers masked; these
-- columns keep, per match, its type (mobile, resident_id), its field path ('' when only the
-- byte scan saw it) and its keyed hash (HMAC-SHA256 with privacy.hash_key, hex; '' without a
-- key), in the order the worker found them. A producer finds its record here by the hash of
-- the number it sent, as on the DLQ topic (`hangwatch query dlq_personal_data -p hmac=...`).
-- Empty for other dead letters and for rows written before this migration.
-- tolerate: 44
ALTER TABLE {{ t('dead_letters') }}{{ on_cluster }} ADD COLUMN personal_data_types Array(String);
-- tolerate: 44
ALTER TABLE {{ t('dead_letters') }}{{ on_cluster }} ADD COLUMN personal_data_fields Array(String);
-- tolerate: 44
ALTER TABLE {{ t('dead_letters') }}{{ on_cluster }} ADD COLUMN personal_data_hmacs Array(String);
{{ redistributed('dead_letters') }}
