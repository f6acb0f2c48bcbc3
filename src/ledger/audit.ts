/**
 * Appending to the hash-chained audit log, inside the caller's transaction, so a state change and its audit
 * record commit or vanish together (never a delivery without an audit record).
 *
 * Each record's hash is `sha256hex(prev_hash + canonicalJson(content))` over the UTF-8 of that string, where
 * `content` is `{seq, at, actor, action, tenant, noteId, revision, destination, details}` (absent values as
 * null, `at` as an ISO 8601 UTC string with milliseconds) and `canonicalJson` is RFC 8785. The first record's
 * prev_hash is 64 zeros. `auditHash` is what the verifier recomputes.
 *
 * Appends serialise on the single `audit_chain_head` row (its UPDATE's row lock, held to commit): seq is
 * gapless and the chain cannot fork. Records carry ids, hashes, codes and states only — never PHI.
 */
import { createHash } from 'node:crypto';
import type { JsonValue } from '../contract/json.ts';
import { canonicalJson } from '../contract/signature.ts';
import { ScribeError } from '../errors.ts';
import type { Queryable } from './db.ts';

/** The prev_hash of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** A record to append. */
export interface AuditInput {
  readonly actor: string;
  /** e.g. `revision.accepted`, `delivery.delivered` */
  readonly action: string;
  readonly tenant?: string | null;
  readonly noteId?: string | null;
  readonly revision?: number | null;
  readonly destination?: string | null;
  /** Ids, hashes, codes, states: never note text, names or identifier values. */
  readonly details?: { readonly [k: string]: unknown };
}

/** A stored record. */
export interface AuditRecord {
  readonly seq: number;
  readonly at: Date;
  readonly actor: string;
  readonly action: string;
  readonly tenant: string | null;
  readonly noteId: string | null;
  readonly revision: number | null;
  readonly destination: string | null;
  readonly details: { readonly [k: string]: JsonValue };
  readonly prevHash: string;
  readonly hash: string;
}

/** The hash of one record given its predecessor's hash (what `audit verify` recomputes). */
export function auditHash(prevHash: string, r: Omit<AuditRecord, 'prevHash' | 'hash'>): string {
  return createHash('sha256')
    .update(prevHash + canonicalContent(r), 'utf8')
    .digest('hex');
}

/**
 * Appends records, in order, in the caller's transaction. Call it last in a transaction: the first append
 * locks the chain head's row until commit, so every other appender waits that long.
 */
export async function appendAudit(
  tx: Queryable,
  records: AuditInput | readonly AuditInput[],
  at: Date = new Date(),
): Promise<AuditRecord[]> {
  const list = Array.isArray(records) ? (records as readonly AuditInput[]) : [records as AuditInput];
  // Milliseconds only: what a JS Date holds, so the stored timestamptz reads back to the hashed string.
  const when = new Date(at.getTime());
  if (list.length === 0) return [];
  if (list.length === 1) return [await appendOne(tx, list[0]!, when)];
  return appendMany(tx, list, when);
}

function contentOf(r: AuditInput, seq: number, when: Date): Omit<AuditRecord, 'prevHash' | 'hash'> {
  return {
    seq,
    at: when,
    actor: r.actor,
    action: r.action,
    tenant: r.tenant ?? null,
    noteId: r.noteId ?? null,
    revision: r.revision ?? null,
    destination: r.destination ?? null,
    // exactly what jsonb gives back: undefined members dropped
    details: JSON.parse(JSON.stringify(r.details ?? {})) as { [k: string]: JsonValue },
  };
}

/** Several records: lock the head, chain them here, insert them and move the head — two statements for any n. */
async function appendMany(tx: Queryable, list: readonly AuditInput[], when: Date): Promise<AuditRecord[]> {
  const [head] = await tx.query<{ last_seq: number; last_hash: string }>(
    'select last_seq, last_hash from audit_chain_head where singleton for update',
  );
  if (!head) throw new Error('audit_chain_head is empty: the ledger was not migrated');
  let prev = head.last_hash;
  const out = list.map((r, i) => {
    const base = contentOf(r, head.last_seq + i + 1, when);
    const record: AuditRecord = { ...base, prevHash: prev, hash: auditHash(prev, base) };
    prev = record.hash;
    return record;
  });
  const last = out.at(-1)!;
  // A data-modifying CTE always runs, referenced or not: one round trip for the rows and the new head.
  await tx.query(
    `with ins as (
       insert into audit_log (seq, at, actor, action, tenant, note_id, revision, destination, details, prev_hash, hash)
       select x.seq, x.at, x.actor, x.action, x.tenant, x.note_id, x.revision, x.destination, x.details,
              x.prev_hash, x.hash
       from jsonb_to_recordset($1::jsonb) as x(seq bigint, at timestamptz, actor text, action text, tenant text,
              note_id text, revision bigint, destination text, details jsonb, prev_hash text, hash text))
     update audit_chain_head set last_seq = $2, prev_hash = $3, last_hash = $4 where singleton`,
    [
      out.map((r) => ({
        seq: r.seq,
        at: r.at.toISOString(),
        actor: r.actor,
        action: r.action,
        tenant: r.tenant,
        note_id: r.noteId,
        revision: r.revision,
        destination: r.destination,
        details: r.details,
        prev_hash: r.prevHash,
        hash: r.hash,
      })),
      last.seq,
      last.prevHash,
      last.hash,
    ],
  );
  return out;
}

/**
 * One record in one statement: the head's UPDATE takes the row lock, assigns seq and computes the hash from
 * the locked (latest) head — so the lock is held for one round trip plus the commit, not three. The canonical
 * JSON is built here; only seq, which the head assigns, is spliced in by the database. The hash is then
 * recomputed here, so a database that hashed differently (an encoding) fails loudly instead of forking.
 */
async function appendOne(tx: Queryable, r: AuditInput, when: Date): Promise<AuditRecord> {
  const base = contentOf(r, 0, when);
  const { before, after } = splitAtSeq(canonicalContent(base));
  const [row] = await tx.query<{ seq: number; prev_hash: string; hash: string }>(
    `with h as (
       update audit_chain_head
       set last_seq = last_seq + 1, prev_hash = last_hash,
         last_hash = encode(sha256(convert_to(last_hash || $1 || (last_seq + 1)::text || $2, 'UTF8')), 'hex')
       where singleton
       returning last_seq, prev_hash, last_hash)
     insert into audit_log (seq, at, actor, action, tenant, note_id, revision, destination, details, prev_hash, hash)
     select h.last_seq, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, h.prev_hash, h.last_hash from h
     returning seq, prev_hash, hash`,
    [
      before,
      after,
      when,
      base.actor,
      base.action,
      base.tenant,
      base.noteId,
      base.revision,
      base.destination,
      base.details,
    ],
  );
  if (!row) throw new Error('audit_chain_head is empty: the ledger was not migrated');
  const stored: AuditRecord = { ...base, seq: row.seq, prevHash: row.prev_hash, hash: row.hash };
  if (auditHash(row.prev_hash, stored) !== row.hash) {
    throw new ScribeError('INTERNAL', `the database computed another hash for audit record ${row.seq}`);
  }
  return stored;
}

function canonicalContent(r: Omit<AuditRecord, 'prevHash' | 'hash'>): string {
  return canonicalJson({
    seq: r.seq,
    at: r.at.toISOString(),
    actor: r.actor,
    action: r.action,
    tenant: r.tenant,
    noteId: r.noteId,
    revision: r.revision,
    destination: r.destination,
    details: r.details,
  });
}

/**
 * RFC 8785 sorts members, so the top-level `"seq"` sits between `"revision"` and `"tenant"`, and nothing after
 * it can contain the marker (only the tenant string follows, where a `"` is escaped): its last occurrence is
 * the top-level one, even when `details` holds members of the same names.
 */
function splitAtSeq(canonical: string): { before: string; after: string } {
  const marker = '"seq":0,"tenant":';
  const i = canonical.lastIndexOf(marker);
  if (i < 0) throw new Error('canonical audit content without seq');
  return { before: canonical.slice(0, i + '"seq":'.length), after: canonical.slice(i + '"seq":0'.length) };
}

/** Reads audit records in chain order (for tests and the verifier). */
export async function readAudit(db: Queryable, fromSeq = 1, limit = 1000): Promise<AuditRecord[]> {
  const rows = await db.query<{
    seq: number;
    at: Date;
    actor: string;
    action: string;
    tenant: string | null;
    note_id: string | null;
    revision: number | null;
    destination: string | null;
    details: { [k: string]: JsonValue };
    prev_hash: string;
    hash: string;
  }>('select * from audit_log where seq >= $1 order by seq limit $2', [fromSeq, limit]);
  return rows.map((r) => ({
    seq: r.seq,
    at: r.at,
    actor: r.actor,
    action: r.action,
    tenant: r.tenant,
    noteId: r.note_id,
    revision: r.revision,
    destination: r.destination,
    details: r.details,
    prevHash: r.prev_hash,
    hash: r.hash,
  }));
}

/** Something that runs a transaction: the ledger's `Db`. */
export interface Transactional {
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

/**
 * Appends records in their own small transaction (for events that happen outside a ledger transaction: a
 * refused envelope, a read). The chain head's row is locked for one statement plus the commit.
 */
export function auditEvent(
  db: Transactional,
  records: AuditInput | readonly AuditInput[],
  at: Date = new Date(),
): Promise<AuditRecord[]> {
  return db.transaction((tx) => appendAudit(tx, records, at));
}

/** How many hex digits of a bearer token's sha256 an audit record keeps (enough to tell tokens apart). */
export const TOKEN_PREFIX_HEX = 12;

/** Query parameters whose values may carry identifiers from outside (kept as sha256 hex, not as given). */
const HASHED_QUERY_KEYS = new Set(['identifier']);

/** A PHI-bearing read, for `auditPhiRead`. */
export interface PhiRead {
  /** The reader's role (`auditor`, `operator`, or `cli` for a local command). */
  readonly role: string;
  /**
   * The sha256 hex of the bearer token (or its first 12+ digits); only the first `TOKEN_PREFIX_HEX` are
   * stored. Never the token. Omit for a local command-line read.
   */
  readonly tokenSha256?: string;
  /** What was read: `GET /v1/notes/{tenant}/{noteId}`, `GET /v1/trace`, `cli trace`, … (a route, not a URL). */
  readonly endpoint: string;
  /** The query as given (values of `identifier` are stored as their sha256 hex). */
  readonly query?: { readonly [k: string]: string | number | undefined };
  /** The notes whose content the answer carried (empty when nothing was found: the attempt is recorded too). */
  readonly notes: readonly { readonly tenant: string; readonly noteId: string; readonly revision?: number }[];
  /** e.g. 200, 404: recorded so refused and empty reads are visible too. */
  readonly status?: number;
  /** Response format, e.g. `json`, `fhir`, `html`. */
  readonly format?: string;
}

/**
 * Records one PHI-bearing read — who (role + token-hash prefix), when (the record's `at`), what (endpoint,
 * query, note ids) — in its own transaction, and resolves once it is committed: answer the request only
 * after it resolves, so no PHI leaves without its audit record. Action `read.phi`.
 */
export async function auditPhiRead(
  db: Transactional,
  read: PhiRead,
  at: Date = new Date(),
): Promise<AuditRecord> {
  const prefix = read.tokenSha256?.slice(0, TOKEN_PREFIX_HEX).toLowerCase();
  const query: { [k: string]: string | number } = {};
  for (const [k, v] of Object.entries(read.query ?? {})) {
    if (v === undefined) continue;
    query[k] = HASHED_QUERY_KEYS.has(k)
      ? `sha256:${createHash('sha256').update(String(v), 'utf8').digest('hex')}`
      : v;
  }
  const one = read.notes.length === 1 ? read.notes[0] : undefined;
  const tenants = [...new Set(read.notes.map((n) => n.tenant))];
  const [record] = await auditEvent(
    db,
    {
      actor: prefix ? `${read.role}:${prefix}` : read.role,
      action: 'read.phi',
      tenant: one?.tenant ?? (tenants.length === 1 ? tenants[0] : null),
      noteId: one?.noteId ?? null,
      revision: one?.revision ?? null,
      details: {
        role: read.role,
        ...(prefix ? { tokenSha256Prefix: prefix } : {}),
        endpoint: read.endpoint,
        query,
        notes: read.notes.map((n) => ({
          tenant: n.tenant,
          noteId: n.noteId,
          ...(n.revision !== undefined ? { revision: n.revision } : {}),
        })),
        ...(read.status !== undefined ? { status: read.status } : {}),
        ...(read.format !== undefined ? { format: read.format } : {}),
      },
    },
    at,
  );
  return record!;
}

/** An envelope refused at intake, for `auditVerificationFailure`. No PHI: ids, a code and a hash. */
export interface IntakeRefusal {
  /** The tenant, when the envelope parsed far enough to name a configured one. */
  readonly tenant?: string | null;
  /** The stable error code (SIGNATURE_INVALID, ARTIFACT_HASH_MISMATCH, ENVELOPE_SCHEMA, …). */
  readonly code: string;
  readonly source: string;
  /** sha256 hex of the bytes received. */
  readonly contentSha256: string;
  readonly actor?: string;
}

/** Records an envelope refused before it reached the ledger (action `intake.refused`), in its own transaction. */
export async function auditVerificationFailure(
  db: Transactional,
  refusal: IntakeRefusal,
  at: Date = new Date(),
): Promise<AuditRecord> {
  const [record] = await auditEvent(
    db,
    {
      actor: refusal.actor ?? 'scribe-bridge',
      action: 'intake.refused',
      tenant: refusal.tenant ?? null,
      details: { code: refusal.code, source: refusal.source, contentSha256: refusal.contentSha256 },
    },
    at,
  );
  return record!;
}

/** A dead-letter replay, for `auditReplay`. */
export interface Replay {
  /** Who asked: `operator:<token-hash prefix>`, `cli`, … */
  readonly actor: string;
  readonly tenant?: string | null;
  readonly noteId?: string | null;
  readonly revision?: number | null;
  readonly destination?: string | null;
  /** What was replayed: `delivery`, `revision`, `sqs-message`. */
  readonly kind: string;
  /** Ids only: delivery id, SQS message id, the state it left, the error code that parked it, … */
  readonly details?: { readonly [k: string]: string | number | boolean | null };
}

/**
 * Records a dead-letter replay (action `replay.<kind>`). Pass the transaction that makes the replay's state
 * change, so both commit together; or a `Db` to record it in a transaction of its own.
 */
export async function auditReplay(
  dbOrTx: Queryable | Transactional,
  replay: Replay,
  at: Date = new Date(),
): Promise<AuditRecord> {
  const input: AuditInput = {
    actor: replay.actor,
    action: `replay.${replay.kind}`,
    tenant: replay.tenant ?? null,
    noteId: replay.noteId ?? null,
    revision: replay.revision ?? null,
    destination: replay.destination ?? null,
    details: { ...(replay.details ?? {}) },
  };
  const [record] =
    'transaction' in dbOrTx ? await auditEvent(dbOrTx, input, at) : await appendAudit(dbOrTx, input, at);
  return record!;
}
