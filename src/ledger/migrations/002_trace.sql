-- scribe-bridge ledger, schema 2: what the provenance trace needs (src/trace). Plain SQL for PGlite and PostgreSQL.

-- The trace data computed at intake from the verified note (src/trace/record.ts TraceData): sentences with edit
-- classes and evidence SegmentIds, removed draft sentences, the transcript's segments (speaker, audio times,
-- text). The transcript itself is not stored, and S3 / file / job artifacts may be gone when an auditor asks.
-- Null for revisions recorded before this migration.
alter table note_revisions add column if not exists trace jsonb;

do $$
begin
  execute 'alter table note_revisions alter column trace set compression lz4';
exception when feature_not_supported then
  null;
end
$$;

-- The trace by an id the EHR assigned: the ids of a receipt (its primary resource and every transaction entry),
-- as one jsonb array of strings; `? $id` uses this index, then containment on the receipt checks the type.
-- Only delivered receipts with ids are indexed (MLLP and file receipts carry none).
create index if not exists deliveries_receipt_ids
  on deliveries using gin ((jsonb_path_query_array(receipt, 'lax $.id')
                            || jsonb_path_query_array(receipt, 'lax $.entries[*].id')))
  where receipt is not null;
