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
import type { Queryable, Tx } from './db.ts';
import type {
  DeadLetteredRevision,
  DeliveryState,
  DeliverySummary,
  RecordResult,
  ReleasedRevision,
  RenderingInput,
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
  render_pending: boolean;
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
  if (input.renderPending && (input.renderings.length > 0 || input.revision < 2))
    fail('a revision still to be rendered has no renderings yet, and a predecessor');
  checkRenderings(input.renderings, `note ${input.noteId} revision ${input.revision}`);
}

/** One rendering per destination, each payload matching its payloadSha256 (caller defects otherwise). */
export function checkRenderings(renderings: readonly RenderingInput[], where: string): void {
  const seen = new Set<string>();
  for (const r of renderings) {
    if (seen.has(r.destination))
      throw new ScribeError('INTERNAL', `two renderings for destination ${r.destination}`, { where });
    seen.add(r.destination);
    const sha = createHash('sha256').update(r.payload, 'utf8').digest('hex');
    if (sha !== r.payloadSha256)
      throw new ScribeError('INTERNAL', `the payload for ${r.destination} does not match its payloadSha256`, {
        where,
      });
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
    `select id, revision, status, state, content_sha256, render_pending from note_revisions
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
  // A revision still to be rendered waits, whatever its predecessor's state (it is rendered, then placed).
  const accepted =
    !(input.renderPending || same?.render_pending) && (revision === 1 || predecessor?.state === 'accepted');
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
      // One still to be rendered (an early retraction) stays waiting: it is released when it is rendered.
      if (r?.state !== 'waiting' || r.render_pending) break;
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
  input: Pick<RevisionInput, 'tenant' | 'noteId' | 'revision' | 'renderings'>,
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
  input: Pick<RevisionInput, 'contentSha256' | 'status' | 'source' | 'renderings'>,
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
 * The CTEs `x` (the renderings' metadata), `r` (rendering rows) and `d` (delivery rows) that follow a CTE `v`
 * holding the revision's id: one statement writes them all. Placeholders name the statement's parameters.
 */
function renderingCtes(
  $: { tenant: string; noteId: string; revision: string; now: string; meta: string },
  payloads: string,
): string {
  return `x as (
       select * from jsonb_to_recordset(${$.meta}::jsonb) as x(i int, destination text, mapping_id text,
         mapping_version text, mapping_digest text, content_type text, payload_sha256 text, write_request jsonb,
         write_plan jsonb, identifiers jsonb, state text)),
     r as (
       insert into renderings (revision_id, destination, mapping_id, mapping_version, mapping_digest,
         content_type, payload, payload_sha256, write_request, write_plan, identifiers, created_at)
       select v.id, x.destination, x.mapping_id, x.mapping_version, x.mapping_digest, x.content_type,
         (array[${payloads}]::text[])[x.i], x.payload_sha256, nullif(x.write_request, 'null'::jsonb),
         nullif(x.write_plan, 'null'::jsonb), x.identifiers, ${$.now}
       from v, x
       returning id, revision_id, destination),
     d as (
       insert into deliveries (revision_id, rendering_id, tenant, note_id, revision, destination, state,
         next_attempt_at, created_at, updated_at)
       select r.revision_id, r.id, ${$.tenant}, ${$.noteId}, ${$.revision}, r.destination, x.state,
         case when x.state = 'pending' then ${$.now}::timestamptz end, ${$.now}, ${$.now}
       from r join x using (destination)
       returning id, destination, state)`;
}

/** The renderings' metadata for `renderingCtes` (payloads travel as parameters of their own). */
function renderingMeta(
  renderings: readonly RenderingInput[],
  states: ReadonlyMap<string, DeliveryState>,
): object[] {
  return renderings.map((r, i) => ({
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
    state: states.get(r.destination),
  }));
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
  const meta = renderingMeta(input.renderings, p.states);
  // Payloads travel as text parameters of their own, not inside the JSON: a 100 KB FHIR payload escaped into
  // JSON costs ~4 ms more to encode and parse (measured).
  const payloads = input.renderings.map((_, i) => `$${21 + i}::text`).join(', ');
  const revisionValues = `$1, $2, $3, $4, $5, $6, $7::json, $8, $9, $10, $11, $12::jsonb, $13, $14, $15, $16, $17, $19::json, $20`;
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
         trace, render_pending)
       select ${revisionValues} from n
       returning id),`
        : `v as (
       insert into note_revisions (tenant, note_id, revision, status, replaces, content_sha256, envelope, sig_kid,
         sig_alg, sig_thumbprint, signed_at, artifacts, source, state, hold_until, received_at, updated_at,
         trace, render_pending)
       values (${revisionValues})
       returning id),`
    }
     ${renderingCtes({ tenant: '$1', noteId: '$2', revision: '$3', now: '$17', meta: '$18' }, payloads)}
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
      input.renderPending === true,
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

/** A revision recorded without renderings (an early retraction) whose predecessor is here now: to render. */
export interface PendingRender {
  readonly revisionId: number;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  /** The envelope as recorded (verified when it was). */
  readonly envelope: unknown;
}

/** Up to `limit` waiting revisions still to be rendered whose predecessor is recorded (not dead-lettered). */
export async function pendingRenders(db: Queryable, limit: number): Promise<PendingRender[]> {
  const rows = await db.query<{
    id: number;
    tenant: string;
    note_id: string;
    revision: number;
    envelope: unknown;
  }>(
    `select v.id, v.tenant, v.note_id, v.revision, v.envelope from note_revisions v
     where v.state = 'waiting' and v.render_pending
       and exists (select 1 from note_revisions p where p.tenant = v.tenant and p.note_id = v.note_id
                     and p.revision = v.revision - 1 and p.state <> 'dead-lettered')
     order by v.id limit $1`,
    [limit],
  );
  return rows.map((r) => ({
    revisionId: r.id,
    tenant: r.tenant,
    noteId: r.note_id,
    revision: r.revision,
    envelope: r.envelope,
  }));
}

/**
 * Gives a revision recorded without renderings (`renderPending`) its renderings and deliveries, under its note's
 * lock: accepted — deliveries pending, or blocked behind the predecessor's undelivered ones — when the predecessor
 * is accepted, else still waiting with blocked deliveries (released with the predecessor, as any waiting revision).
 * Null when there is nothing to do any more: rendered by another worker meanwhile, dead-lettered, or the
 * predecessor is gone.
 */
export async function attachRenderings(
  tx: Tx,
  revisionId: number,
  renderings: readonly RenderingInput[],
  ctx: PlaceContext,
): Promise<{ result: RecordResult; audit: AuditInput[] } | null> {
  const [head] = await tx.query<{ tenant: string; note_id: string }>(
    'select tenant, note_id from note_revisions where id = $1',
    [revisionId],
  );
  if (!head) return null;
  await tx.query('select 1 from notes where tenant = $1 and note_id = $2 for update', [
    head.tenant,
    head.note_id,
  ]);
  // Read again under the lock (a new statement sees what the previous lock holder committed).
  const [v] = await tx.query<{
    revision: number;
    status: NoteStatus;
    content_sha256: string;
    source: RevisionInput['source'];
    state: RevisionState;
    render_pending: boolean;
    predecessor: RevisionState | null;
  }>(
    `select v.revision, v.status, v.content_sha256, v.source, v.state, v.render_pending,
       (select p.state from note_revisions p
        where p.tenant = v.tenant and p.note_id = v.note_id and p.revision = v.revision - 1) as predecessor
     from note_revisions v where v.id = $1`,
    [revisionId],
  );
  if (!v || !v.render_pending || v.state !== 'waiting' || !v.predecessor || v.predecessor === 'dead-lettered')
    return null;
  const key = { tenant: head.tenant, noteId: head.note_id, revision: v.revision, renderings };
  const accepted = v.predecessor === 'accepted';
  const states = await deliveryStates(tx, key, accepted);
  const payloads = renderings.map((_, i) => `$${7 + i}::text`).join(', ');
  const deliveries = await tx.query<DeliverySummary>(
    `with v as (select $6::bigint as id),
     ${renderingCtes({ tenant: '$1', noteId: '$2', revision: '$3', now: '$4', meta: '$5' }, payloads)}
     select d.id, d.destination, d.state from d order by d.destination`,
    [
      head.tenant,
      head.note_id,
      v.revision,
      ctx.now,
      renderingMeta(renderings, states),
      revisionId,
      ...renderings.map((r) => r.payload),
    ],
  );
  const state: RevisionState = accepted ? 'accepted' : 'waiting';
  await tx.query(
    `update note_revisions set render_pending = false, state = $2, state_reason = null,
       hold_until = case when $2 = 'waiting' then hold_until end, updated_at = $3
     where id = $1`,
    [revisionId, state, ctx.now],
  );
  const at = { actor: ctx.actor, tenant: head.tenant, noteId: head.note_id, revision: v.revision };
  return {
    result: { outcome: state, revisionId, deliveries, released: [], revived: false },
    audit: placedAudit(
      at,
      { contentSha256: v.content_sha256, status: v.status, source: v.source, renderings },
      state,
      deliveries,
      false,
    ),
  };
}

/** A revision still to be rendered that cannot be (its mapping refuses it for good): dead-lettered with the code. */
export async function refusePendingRender(
  tx: Tx,
  revisionId: number,
  code: string,
  actor: string,
  now: Date,
): Promise<{ result: boolean; audit: AuditInput[] }> {
  const rows = await tx.query<{ tenant: string; note_id: string; revision: number }>(
    `update note_revisions set state = 'dead-lettered', state_reason = $2, hold_until = null, updated_at = $3
     where id = $1 and state = 'waiting' and render_pending
     returning tenant, note_id, revision`,
    [revisionId, code, now],
  );
  const r = rows[0];
  if (!r) return { result: false, audit: [] };
  return {
    result: true,
    audit: [
      {
        actor,
        action: 'revision.dead-lettered',
        tenant: r.tenant,
        noteId: r.note_id,
        revision: r.revision,
        details: { code },
      },
    ],
  };
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
