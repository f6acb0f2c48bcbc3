-- scribe-bridge ledger, schema 1. Plain SQL that runs unchanged on PGlite (PostgreSQL 18 in WASM) and on
-- PostgreSQL >= 13. Run only through the migration runner (src/ledger/migrate.ts), which records it in
-- schema_migrations; "if not exists" only keeps a half-applied manual run repeatable.
--
-- Identity: a note revision is (tenant, note_id, revision); a delivery adds the destination id.
-- Timestamps are timestamptz; hashes are lower-case hex SHA-256; JSON is jsonb.

-- One row per note: the row every transaction that records a revision of the note locks first, so that
-- revisions arriving out of order (N before N-1, concurrently) are placed one after the other.
create table if not exists notes (
  tenant            text        not null,
  note_id           text        not null,
  first_received_at timestamptz not null,
  primary key (tenant, note_id)
);

-- One row per signed revision received.
--   state accepted:      placed in order; its deliveries run (or wait for the previous revision's).
--   state waiting:       revision N-1 has not arrived; hold_until says when it is dead-lettered.
--   state dead-lettered: left for an operator (state_reason says why); a re-send of the same content revives it.
create table if not exists note_revisions (
  id              bigint generated always as identity primary key,
  tenant          text        not null,
  note_id         text        not null,
  revision        bigint      not null check (revision >= 1),
  status          text        not null check (status in ('final', 'amended', 'entered-in-error')),
  replaces        bigint      check (replaces >= 1),
  -- sha256 of the canonical signed content (RFC 8785, without signature.jws): same key + same hash = duplicate
  content_sha256  text        not null check (content_sha256 ~ '^[0-9a-f]{64}$'),
  envelope        jsonb       not null,
  sig_kid         text        not null,
  sig_alg         text        not null,
  sig_thumbprint  text,
  signed_at       timestamptz not null,
  -- [{name, source, uri?, sha256, hashSigned}]
  artifacts       jsonb       not null check (jsonb_typeof(artifacts) = 'array'),
  source          text        not null check (source ~ '^[a-z][a-z0-9-]*$'),
  state           text        not null check (state in ('accepted', 'waiting', 'dead-lettered')),
  hold_until      timestamptz,
  state_reason    text,
  received_at     timestamptz not null,
  updated_at      timestamptz not null,
  unique (tenant, note_id, revision),
  foreign key (tenant, note_id) references notes (tenant, note_id),
  check ((state = 'waiting') = (hold_until is not null))
);

create index if not exists note_revisions_waiting
  on note_revisions (hold_until) where state = 'waiting';

-- What one destination receives for one revision, rendered at intake: the exact bytes and how they were made.
create table if not exists renderings (
  id              bigint generated always as identity primary key,
  revision_id     bigint      not null references note_revisions (id),
  destination     text        not null,
  mapping_id      text        not null,
  mapping_version text        not null,
  mapping_digest  text        not null,
  content_type    text        not null,
  payload         text        not null,
  payload_sha256  text        not null check (payload_sha256 ~ '^[0-9a-f]{64}$'),
  -- FHIR REST: {method, url, ifNoneExist?}; null for MLLP and file destinations
  write_request   jsonb,
  -- what the destination can be asked about later (trace, read-back):
  -- [{system, value}] for FHIR, [{documentNumber, controlId}] for MDM
  identifiers     jsonb       not null default '[]' check (jsonb_typeof(identifiers) = 'array'),
  created_at      timestamptz not null,
  unique (revision_id, destination)
);

-- Payloads (a FHIR transaction is ~100 KB) and envelopes are stored compressed: lz4 costs a third of the
-- default pglz's CPU on insert (measured: 1.9 vs 5.5 ms per 100 KB). PGlite is built without lz4 and keeps
-- pglz; the schema is otherwise identical.
do $$
begin
  execute 'alter table renderings alter column payload set compression lz4';
  execute 'alter table note_revisions alter column envelope set compression lz4';
exception when feature_not_supported then
  null;
end
$$;

-- Trace and read-back lookups: identifiers @> '[{"system":…,"value":…}]', '[{"documentNumber":…}]',
-- '[{"controlId":…}]' all use this one index.
create index if not exists renderings_identifiers
  on renderings using gin (identifiers jsonb_path_ops);

-- One row per (revision, destination): the delivery state machine.
--   pending -> sending -> delivered | rejected | failed | ambiguous | pending (retry)
--   ambiguous -> sending (the reconciler reads back before any resend)
--   blocked: waits for the same destination's previous revision (or for an operator when that one was
--            rejected or failed)
create table if not exists deliveries (
  id              bigint generated always as identity primary key,
  revision_id     bigint      not null references note_revisions (id),
  rendering_id    bigint      not null references renderings (id),
  -- copied from the revision: the ordering rule (N+1 after N, per destination) is a query on these
  tenant          text        not null,
  note_id         text        not null,
  revision        bigint      not null,
  destination     text        not null,
  state           text        not null check (state in
                    ('pending', 'sending', 'delivered', 'rejected', 'failed', 'ambiguous', 'blocked')),
  attempts        integer     not null default 0,
  next_attempt_at timestamptz,
  lease_owner     text,
  lease_until     timestamptz,
  last_error_code text,
  receipt         jsonb,
  created_at      timestamptz not null,
  updated_at      timestamptz not null,
  unique (revision_id, destination),
  check (state <> 'sending' or (lease_owner is not null and lease_until is not null)),
  check (state not in ('pending', 'ambiguous') or next_attempt_at is not null)
);

-- Due work per destination, in the order it is claimed.
create index if not exists deliveries_due
  on deliveries (destination, next_attempt_at, id) where state in ('pending', 'ambiguous');
-- Leases in flight: the concurrency count and the expiry sweep (a few rows per destination).
create index if not exists deliveries_sending
  on deliveries (destination, lease_until) where state = 'sending';
-- The ordering rule and the per-note status page.
create index if not exists deliveries_note
  on deliveries (tenant, note_id, destination, revision);
-- Backlog and age of the oldest open delivery, without scanning the delivered history.
create index if not exists deliveries_open
  on deliveries (created_at) where state in ('pending', 'sending', 'ambiguous');
create index if not exists deliveries_backlog
  on deliveries (destination, state) where state <> 'delivered';

-- Every send (or lost lease) of a delivery. No PHI: ids, versions, codes, timings.
create table if not exists delivery_attempts (
  id              bigint generated always as identity primary key,
  delivery_id     bigint      not null references deliveries (id),
  attempt         integer     not null check (attempt >= 1),
  owner           text,
  at              timestamptz not null,
  duration_ms     integer     check (duration_ms >= 0),
  outcome         text        not null check (outcome in
                    ('delivered', 'rejected', 'retry', 'ambiguous', 'failed', 'lease-expired')),
  http_status     integer,
  ack_code        text,
  error_code      text,
  -- sha256 of the bytes actually sent (differs from the rendering's when references were resolved at send)
  payload_sha256  text        check (payload_sha256 ~ '^[0-9a-f]{64}$'),
  receipt         jsonb
);

create index if not exists delivery_attempts_delivery on delivery_attempts (delivery_id, id);

-- The append-only audit log, hash-chained: hash = sha256(prev_hash || RFC 8785 JSON of the record), see
-- src/ledger/audit.ts. seq is gapless and assigned under the chain head's row lock, so the chain has no forks.
create table if not exists audit_log (
  seq          bigint      primary key check (seq >= 1),
  at           timestamptz not null,
  actor        text        not null,
  action       text        not null,
  tenant       text,
  note_id      text,
  revision     bigint,
  destination  text,
  details      jsonb       not null default '{}',
  prev_hash    text        not null check (prev_hash ~ '^[0-9a-f]{64}$'),
  hash         text        not null unique check (hash ~ '^[0-9a-f]{64}$')
);

create index if not exists audit_log_note on audit_log (tenant, note_id, revision);

-- The chain's head: one row, locked by every append (a row lock rather than an advisory lock, because it
-- also hands over the previous hash and seq in the same statement).
-- prev_hash is the hash before the last append: one UPDATE … RETURNING hands both to the INSERT.
create table if not exists audit_chain_head (
  singleton  boolean primary key default true check (singleton),
  last_seq   bigint  not null,
  last_hash  text    not null,
  prev_hash  text
);

insert into audit_chain_head (singleton, last_seq, last_hash)
values (true, 0, '0000000000000000000000000000000000000000000000000000000000000000')
on conflict (singleton) do nothing;

-- Append-only, enforced by the database as well: UPDATE, DELETE and TRUNCATE of the audit log fail. (The hash
-- chain detects what this cannot stop: a superuser dropping the triggers.)
create or replace function audit_log_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'audit_log is append-only (% refused)', tg_op using errcode = '42501';
end
$$;

drop trigger if exists audit_log_append_only on audit_log;
create trigger audit_log_append_only before update or delete on audit_log
  for each row execute function audit_log_append_only();

drop trigger if exists audit_log_no_truncate on audit_log;
create trigger audit_log_no_truncate before truncate on audit_log
  for each statement execute function audit_log_append_only();
