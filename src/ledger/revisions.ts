/**
 * Recording revisions and keeping each note's lifecycle in order (spec: "Identity and lifecycle rules").
 *
 * Every function here runs inside the caller's transaction. A revision is placed while holding its note's row
 * lock (`notes`), so two revisions of one note — N and N-1 arriving together from SQS and HTTP — are placed one
 * after the other and a waiting revision is always released by its predecessor's arrival.
 */
import { createHash } from 'node:crypto';
import type { NoteStatus } from '../contract/envelope.ts';
import { ScribeError } from '../errors.ts';
import type { AuditInput } from './audit.ts';
import type { Tx } from './db.ts';
import type {
  DeadLetteredRevision,
  DeliveryState,
  DeliverySummary,
  RecordResult,
  ReleasedRevision,
  RevisionInput,
  RevisionState,
} from './types.ts';

/** What a placement needs besides the input. */
export interface PlaceContext {
  readonly actor: string;
  readonly holdSeconds: number;
  readonly now: Date;
}

interface StoredRevision {
  id: number;
  revision: number;
  status: NoteStatus;
  state: RevisionState;
  content_sha256: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Input checks: each failure is a caller defect, never a property of the note. */
export function checkRevisionInput(input: RevisionInput): void {
  const fail = (detail: string) => {
    throw new ScribeError('INTERNAL', detail, { where: `note ${input.noteId} revision ${input.revision}` });
  };
  if (!input.signature.verified) fail('an unverified (dry-run) note cannot be recorded for delivery');
  if (!HEX64.test(input.contentSha256)) fail('contentSha256 is not a sha256 hex digest');
  if (!Number.isSafeInteger(input.revision) || input.revision < 1) fail('revision is not a positive integer');
  const seen = new Set<string>();
  for (const r of input.renderings) {
    if (seen.has(r.destination)) fail(`two renderings for destination ${r.destination}`);
    seen.add(r.destination);
    const sha = createHash('sha256').update(r.payload, 'utf8').digest('hex');
    if (sha !== r.payloadSha256) fail(`the payload for ${r.destination} does not match its payloadSha256`);
  }
}

/**
 * Records one revision: duplicate, conflict, lifecycle, then the revision, its renderings and deliveries.
 * Returns the outcome and the audit records to append (the caller appends them last).
 */
export async function placeRevision(
  tx: Tx,
  input: RevisionInput,
  ctx: PlaceContext,
): Promise<{ result: RecordResult; audit: AuditInput[] }> {
  const { tenant, noteId, revision } = input;
  const at = { actor: ctx.actor, tenant, noteId, revision };
  // The common case, a note never seen, needs no reads: revision 1 is accepted with pending deliveries, a
  // later revision waits with blocked ones. So the note row, the revision, its renderings and deliveries go
  // in one statement that inserts nothing unless the note row is new.
  const firstState: RevisionState = revision === 1 ? 'accepted' : 'waiting';
  const fresh = await insertRevision(tx, input, {
    newNote: true,
    state: firstState,
    holdUntil: holdUntil(firstState, ctx),
    states: new Map<string, DeliveryState>(
      input.renderings.map((r) => [r.destination, revision === 1 ? 'pending' : 'blocked']),
    ),
    now: ctx.now,
  });
  if (fresh) {
    return {
      result: { outcome: firstState, ...fresh, released: [], revived: false },
      audit: placedAudit(at, input, firstState, fresh.deliveries, false),
    };
  }
  // The note exists: lock it, then read its revisions in a new statement (a fresh READ COMMITTED snapshot
  // that includes whatever the previous lock holder committed).
  await tx.query('select 1 from notes where tenant = $1 and note_id = $2 for update', [tenant, noteId]);
  const existing = await tx.query<StoredRevision>(
    `select id, revision, status, state, content_sha256 from note_revisions
     where tenant = $1 and note_id = $2 order by revision`,
    [tenant, noteId],
  );

  const same = existing.find((r) => r.revision === revision);
  if (same && same.content_sha256 !== input.contentSha256) {
    const details = {
      storedSha256: same.content_sha256,
      receivedSha256: input.contentSha256,
      source: input.source,
    };
    return {
      result: { outcome: 'conflict', revisionId: same.id, storedSha256: same.content_sha256 },
      audit: [{ ...at, action: 'revision.conflict', details }],
    };
  }
  if (same && same.state !== 'dead-lettered') {
    const deliveries = await deliveriesOf(tx, same.id);
    return {
      result: { outcome: 'duplicate', revisionId: same.id, state: same.state, deliveries },
      audit: [
        {
          ...at,
          action: 'revision.duplicate-suppressed',
          details: { contentSha256: input.contentSha256, source: input.source, state: same.state },
        },
      ],
    };
  }
  const retraction = existing.find((r) => r.status === 'entered-in-error' && r.revision < revision);
  if (retraction) {
    const detail = `revision ${revision} follows revision ${retraction.revision}, which is entered-in-error`;
    return {
      result: { outcome: 'rejected', code: 'LIFECYCLE_INVALID', detail },
      audit: [
        {
          ...at,
          action: 'revision.rejected',
          details: { code: 'LIFECYCLE_INVALID', retractedBy: retraction.revision, source: input.source },
        },
      ],
    };
  }

  const predecessor = existing.find((r) => r.revision === revision - 1);
  const accepted = revision === 1 || predecessor?.state === 'accepted';
  const state: RevisionState = accepted ? 'accepted' : 'waiting';

  let revisionId: number;
  let deliveries: DeliverySummary[];
  if (same) {
    // The same content re-sent after it was dead-lettered (an operator's redrive): place it again.
    await tx.query(
      `update note_revisions set state = $2, hold_until = $3, state_reason = null, updated_at = $4 where id = $1`,
      [same.id, state, holdUntil(state, ctx), ctx.now],
    );
    revisionId = same.id;
    deliveries = await deliveriesOf(tx, same.id);
  } else {
    const states = await deliveryStates(tx, input, accepted);
    const placed = await insertRevision(tx, input, {
      newNote: false,
      state,
      holdUntil: holdUntil(state, ctx),
      states,
      now: ctx.now,
    });
    if (!placed) throw new Error('unreachable: a revision insert without a note row returned nothing');
    ({ revisionId, deliveries } = placed);
  }

  const audit: AuditInput[] = placedAudit(at, input, state, deliveries, same !== undefined);
  const released: ReleasedRevision[] = [];
  if (input.status === 'entered-in-error') {
    // Later revisions that arrived early follow a retraction: none of them may ever be delivered.
    const later = existing.filter((r) => r.revision > revision && r.state !== 'dead-lettered');
    for (const r of later) {
      await setRevisionState(tx, r.id, 'dead-lettered', 'LIFECYCLE_INVALID', ctx.now);
      released.push({ revision: r.revision, state: 'dead-lettered' });
      audit.push({
        ...at,
        revision: r.revision,
        action: 'revision.dead-lettered',
        details: { code: 'LIFECYCLE_INVALID', retractedBy: revision },
      });
    }
  } else if (accepted) {
    // Release the waiting successors chain: N+1 waited for N, N+2 for N+1, …
    for (let next = revision + 1; ; next++) {
      const r = existing.find((x) => x.revision === next);
      if (r?.state !== 'waiting') break;
      await setRevisionState(tx, r.id, 'accepted', null, ctx.now);
      released.push({ revision: r.revision, state: 'accepted' });
      audit.push({ ...at, revision: r.revision, action: 'revision.released', details: { after: revision } });
    }
  }
  if (accepted && (same !== undefined || released.some((r) => r.state === 'accepted'))) {
    await releaseBlocked(tx, tenant, noteId, null, ctx.now);
    deliveries = await deliveriesOf(tx, revisionId);
  }
  return {
    result: { outcome: state, revisionId, deliveries, released, revived: same !== undefined },
    audit,
  };
}

/**
 * Each destination's first state: `blocked` while the revision waits, or while the same destination's
 * delivery of revision N-1 is not delivered (not yet terminal, or rejected/failed: then until an operator acts).
 */
async function deliveryStates(
  tx: Tx,
  input: RevisionInput,
  accepted: boolean,
): Promise<Map<string, DeliveryState>> {
  const out = new Map<string, DeliveryState>();
  if (!accepted) {
    for (const r of input.renderings) out.set(r.destination, 'blocked');
    return out;
  }
  const before =
    input.revision === 1
      ? []
      : // FOR UPDATE: a worker recording N-1's outcome right now either commits first (we see it) or waits
        // for us (and then sees our blocked row to release). Without the lock, both could miss each other.
        await tx.query<{ destination: string; state: DeliveryState }>(
          `select destination, state from deliveries
           where tenant = $1 and note_id = $2 and revision = $3 for update`,
          [input.tenant, input.noteId, input.revision - 1],
        );
  for (const r of input.renderings) {
    const prev = before.find((b) => b.destination === r.destination);
    out.set(r.destination, prev === undefined || prev.state === 'delivered' ? 'pending' : 'blocked');
  }
  return out;
}

function holdUntil(state: RevisionState, ctx: PlaceContext): Date | null {
  return state === 'waiting' ? new Date(ctx.now.getTime() + ctx.holdSeconds * 1000) : null;
}

function placedAudit(
  at: { actor: string; tenant: string; noteId: string; revision: number },
  input: RevisionInput,
  state: RevisionState,
  deliveries: readonly DeliverySummary[],
  revived: boolean,
): AuditInput[] {
  const placed: AuditInput = {
    ...at,
    action: revived ? 'revision.revived' : `revision.${state}`,
    details: {
      contentSha256: input.contentSha256,
      status: input.status,
      source: input.source,
      deliveries: input.renderings.map((r) => ({
        destination: r.destination,
        state: deliveries.find((d) => d.destination === r.destination)?.state ?? null,
        mapping: `${r.mapping.id}@${r.mapping.version}`,
        payloadSha256: r.payloadSha256,
      })),
    },
  };
  if (revived) return [placed];
  // One record per stored rendering: what each destination gets, by which mapping version (hashes, no content).
  const renderings: AuditInput[] = input.renderings.map((r) => ({
    ...at,
    destination: r.destination,
    action: 'rendering.recorded',
    details: {
      mapping: { id: r.mapping.id, version: r.mapping.version, digest: r.mapping.digest },
      contentType: r.contentType,
      payloadSha256: r.payloadSha256,
    },
  }));
  return [placed, ...renderings];
}

/**
 * Inserts the revision, its renderings and its deliveries in one statement. With `newNote`, also the note
 * row — and nothing at all (null) when the note already exists.
 */
async function insertRevision(
  tx: Tx,
  input: RevisionInput,
  p: {
    newNote: boolean;
    state: RevisionState;
    holdUntil: Date | null;
    states: ReadonlyMap<string, DeliveryState>;
    now: Date;
  },
): Promise<{ revisionId: number; deliveries: DeliverySummary[] } | null> {
  const receivedAt = input.receivedAt ?? p.now;
  const meta = input.renderings.map((r, i) => ({
    i: i + 1,
    destination: r.destination,
    mapping_id: r.mapping.id,
    mapping_version: r.mapping.version,
    mapping_digest: r.mapping.digest,
    content_type: r.contentType,
    payload_sha256: r.payloadSha256,
    write_request: r.writeRequest ?? null,
    write_plan: r.writePlan ?? null,
    identifiers: r.identifiers,
    state: p.states.get(r.destination),
  }));
  // Payloads travel as text parameters of their own, not inside the JSON: a 100 KB FHIR payload escaped into
  // JSON costs ~4 ms more to encode and parse (measured).
  const payloads = input.renderings.map((_, i) => `$${20 + i}::text`).join(', ');
  const revisionValues = `$1, $2, $3, $4, $5, $6, $7::json, $8, $9, $10, $11, $12::jsonb, $13, $14, $15, $16, $17, $19::jsonb`;
  const rows = await tx.query<{
    revision_id: number;
    id: number | null;
    destination: string;
    state: DeliveryState;
  }>(
    `with ${
      p.newNote
        ? `n as (
       insert into notes (tenant, note_id, first_received_at) values ($1, $2, $17)
       on conflict (tenant, note_id) do nothing returning tenant),
     v as (
       insert into note_revisions (tenant, note_id, revision, status, replaces, content_sha256, envelope, sig_kid,
         sig_alg, sig_thumbprint, signed_at, artifacts, source, state, hold_until, received_at, updated_at,
         trace)
       select ${revisionValues} from n
       returning id),`
        : `v as (
       insert into note_revisions (tenant, note_id, revision, status, replaces, content_sha256, envelope, sig_kid,
         sig_alg, sig_thumbprint, signed_at, artifacts, source, state, hold_until, received_at, updated_at,
         trace)
       values (${revisionValues})
       returning id),`
    }
     x as (
       select * from jsonb_to_recordset($18::jsonb) as x(i int, destination text, mapping_id text,
         mapping_version text, mapping_digest text, content_type text, payload_sha256 text, write_request jsonb,
         write_plan jsonb, identifiers jsonb, state text)),
     r as (
       insert into renderings (revision_id, destination, mapping_id, mapping_version, mapping_digest,
         content_type, payload, payload_sha256, write_request, write_plan, identifiers, created_at)
       select v.id, x.destination, x.mapping_id, x.mapping_version, x.mapping_digest, x.content_type,
         (array[${payloads}]::text[])[x.i], x.payload_sha256, nullif(x.write_request, 'null'::jsonb),
         nullif(x.write_plan, 'null'::jsonb), x.identifiers, $17
       from v, x
       returning id, revision_id, destination),
     d as (
       insert into deliveries (revision_id, rendering_id, tenant, note_id, revision, destination, state,
         next_attempt_at, created_at, updated_at)
       select r.revision_id, r.id, $1, $2, $3, r.destination, x.state,
         case when x.state = 'pending' then $17::timestamptz end, $17, $17
       from r join x using (destination)
       returning id, destination, state)
     select v.id as revision_id, d.id, d.destination, d.state from v left join d on true order by d.destination`,
    [
      input.tenant,
      input.noteId,
      input.revision,
      input.status,
      input.replaces,
      input.contentSha256,
      input.envelope,
      input.signature.kid,
      input.signature.alg,
      input.signature.thumbprint ?? null,
      input.signature.signedAt,
      input.artifacts,
      input.source,
      p.state,
      p.holdUntil,
      receivedAt,
      p.now,
      meta,
      input.trace ?? null,
      ...input.renderings.map((r) => r.payload),
    ],
  );
  if (rows.length === 0) return null;
  const revisionId = rows[0]!.revision_id;
  const deliveries = rows
    .filter((r) => r.id !== null)
    .map((r) => ({ id: r.id as number, destination: r.destination, state: r.state }));
  return { revisionId, deliveries };
}

async function deliveriesOf(tx: Tx, revisionId: number): Promise<DeliverySummary[]> {
  return tx.query<DeliverySummary>(
    'select id, destination, state from deliveries where revision_id = $1 order by destination',
    [revisionId],
  );
}

async function setRevisionState(
  tx: Tx,
  id: number,
  state: RevisionState,
  reason: string | null,
  now: Date,
): Promise<void> {
  await tx.query(
    'update note_revisions set state = $2, state_reason = $3, hold_until = null, updated_at = $4 where id = $1',
    [id, state, reason, now],
  );
}

/**
 * Moves `blocked` deliveries of a note to `pending` where the ordering rule now allows it: the revision is
 * accepted and the same destination's delivery of revision N-1 is delivered (or there is none). A rejected or
 * failed predecessor keeps its successor blocked. Returns the ids released.
 */
export async function releaseBlocked(
  tx: Tx,
  tenant: string,
  noteId: string,
  destination: string | null,
  now: Date,
): Promise<number[]> {
  const rows = await tx.query<{ id: number }>(
    `update deliveries d set state = 'pending', next_attempt_at = $4, updated_at = $4
     from note_revisions v
     where v.id = d.revision_id and v.state = 'accepted' and d.state = 'blocked'
       and d.tenant = $1 and d.note_id = $2 and ($3::text is null or d.destination = $3)
       and not exists (
         select 1 from deliveries p
         where p.tenant = d.tenant and p.note_id = d.note_id and p.destination = d.destination
           and p.revision = d.revision - 1 and p.state <> 'delivered')
     returning d.id`,
    [tenant, noteId, destination, now],
  );
  return rows.map((r) => r.id);
}

/**
 * Dead-letters waiting revisions whose hold ran out. Notes being placed right now are skipped (their row is
 * locked) and expire on the next sweep, so a predecessor that arrives at the last moment always wins.
 */
export async function expireWaiting(
  tx: Tx,
  actor: string,
  now: Date,
): Promise<{ expired: DeadLetteredRevision[]; audit: AuditInput[] }> {
  const rows = await tx.query<{ id: number; tenant: string; note_id: string; revision: number }>(
    `with n as (
       select n.tenant, n.note_id from notes n
       where exists (select 1 from note_revisions w where w.tenant = n.tenant and w.note_id = n.note_id
                       and w.state = 'waiting' and w.hold_until <= $1)
       for update of n skip locked)
     update note_revisions v
     set state = 'dead-lettered', state_reason = 'HOLD_EXPIRED', hold_until = null, updated_at = $1
     from n
     where v.tenant = n.tenant and v.note_id = n.note_id and v.state = 'waiting' and v.hold_until <= $1
     returning v.id, v.tenant, v.note_id, v.revision`,
    [now],
  );
  rows.sort((a, b) => a.id - b.id);
  const expired = rows.map((r) => ({
    revisionId: r.id,
    tenant: r.tenant,
    noteId: r.note_id,
    revision: r.revision,
    reason: 'HOLD_EXPIRED',
  }));
  const audit = expired.map((r) => ({
    actor,
    action: 'revision.dead-lettered',
    tenant: r.tenant,
    noteId: r.noteId,
    revision: r.revision,
    details: { code: 'HOLD_EXPIRED' },
  }));
  return { expired, audit };
}
