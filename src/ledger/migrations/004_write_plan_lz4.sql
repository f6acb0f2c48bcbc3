-- 004: the FHIR request planned at intake, and cheaper storage of the large columns.
--
-- write_plan: {method, path, ifNoneExist?} exactly as sent (path and If-None-Exist already percent-encoded),
-- decided at intake from the rendered value and the destination's write mode, so a delivery worker never
-- parses the recorded payload (~280 KB for a typical transaction Bundle) again to decide its request. Null for
-- MLLP and file destinations and for renderings recorded before this migration (their sender plans from the
-- payload, as before).
alter table renderings add column if not exists write_plan jsonb;

-- The stored envelope and trace data as json (the text, checked for syntax) instead of jsonb (parsed into
-- PostgreSQL's binary form): they are written once per revision and read whole, never searched inside, and
-- turning ~130 KB of JSON into jsonb cost the server ~3 ms of CPU per typical note (measured: 4.1 vs 1.7 ms
-- per 72 KB insert), a quarter of its work per note. A trace read pays ~3 ms more for the `->` lookups.
alter table note_revisions alter column envelope type json using envelope::json;
alter table note_revisions alter column trace type json using trace::json;

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
