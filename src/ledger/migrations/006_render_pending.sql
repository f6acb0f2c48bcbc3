-- 006: a retraction that arrives before the revision it retracts.
--
-- A retraction re-sends the retracted revision unchanged, so it cannot be rendered until that revision is here.
-- It is recorded at once as waiting (the spec: "a revision whose predecessor has not arrived is recorded as
-- waiting"), with no renderings and render_pending set; once the predecessor is recorded the service renders it,
-- attaches its renderings and deliveries and clears the flag (src/ledger/revisions.ts attachRenderings). A
-- revision with the flag set is never released to `accepted` by its predecessor's arrival.
alter table note_revisions add column if not exists render_pending boolean not null default false;
