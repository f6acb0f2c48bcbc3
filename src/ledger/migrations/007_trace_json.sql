-- 007: the trace data as json (its text, checked for syntax) instead of jsonb, in form 2 (src/trace/record.ts).
--
-- It is written with every revision and read only by a trace, whole: form 2 cites each evidence segment by its
-- SegmentId (form 1 held a copy of the segment in each of a typical note's ~270 citations), so the trace reads the
-- sentences and the transcript together and no longer fetches single members (what kept it jsonb, migration 004).
-- jsonb input costs the server ~1.4 ms of CPU more per typical note than json (measured: 2.5 vs 1.1 ms per
-- insert of a typical note's trace and envelope, lz4). Rows of form 1 are read as they are.
alter table note_revisions alter column trace type json using trace::json;

do $$
begin
  alter table note_revisions alter column trace set compression lz4;
exception when feature_not_supported then
  null;
end $$;
