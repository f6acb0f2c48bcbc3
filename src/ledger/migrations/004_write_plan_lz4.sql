-- 004: the FHIR request planned at intake, and cheaper storage of the large columns.
--
-- write_plan: {method, path, ifNoneExist?} exactly as sent (path and If-None-Exist already percent-encoded),
-- decided at intake from the rendered value and the destination's write mode, so a delivery worker never
-- parses the recorded payload (~280 KB for a typical transaction Bundle) again to decide its request. Null for
-- MLLP and file destinations and for renderings recorded before this migration (their sender plans from the
-- payload, as before).
alter table renderings add column if not exists write_plan jsonb;

-- The stored envelope as json (its text, checked for syntax) instead of jsonb (parsed into PostgreSQL's binary
-- form): it is written once per revision and always read whole, never searched inside, and jsonb input costs
-- the server ~2.5× the CPU of json (measured: 4.1 vs 1.7 ms per 72 KB insert). The trace data stays jsonb:
-- a trace reads single members of it (`trace->'sentences'`), and as json each `->` re-parses the whole text
-- (the 60-minute note's trace read went from ~12 to ~27 ms, measured).
alter table note_revisions alter column envelope type json using envelope::json;

-- TOAST compression: lz4 instead of the default pglz for the columns that hold whole notes and payloads.
-- pglz costs the server ~4 ms more CPU per typical transaction Bundle (measured: 8.8 vs 4.3 ms per 277 KB
-- insert) for ~10% less disk. Servers built without lz4, and PGlite, keep pglz.
do $$
begin
  alter table renderings alter column payload set compression lz4;
  alter table note_revisions alter column envelope set compression lz4;
  alter table note_revisions alter column trace set compression lz4;
exception when feature_not_supported then
  null;
end $$;
