/**
 * Dead letters in the ledger, for operators: what is parked, and putting it back to work.
 *
 * - A **delivery** that ended `rejected` (the EHR refused it) or `failed` (its retry budget ran out). Replay puts
 *   it back to `pending`, due now, with a fresh attempt budget (`attempts` restarts at 0: attempt numbers in
 *   `delivery_attempts` restart after the `delivery.replayed` audit record that marks the replay). Its blocked
 *   successors at that destination follow once it is delivered, as always.
 * - A **revision** dead-lettered because it waited longer than `holdSeconds` for its predecessor
 *   (`HOLD_EXPIRED`). Replay places it again: `accepted` when the predecessor is accepted by now (its blocked
 *   deliveries are released), otherwise `waiting` with a fresh hold. Revisions dead-lettered because they
 *   follow a retraction (`LIFECYCLE_INVALID`) are final and refused.
 *
 * Listings carry ids, states, codes and times only — never note content. Each function runs in the caller's
 * transaction and returns the audit records to append (the caller appends them last, in the same transaction).
 */
import { ScribeError } from '../errors.ts';
import type { AuditInput } from './audit.ts';
import type { Queryable, Tx } from './db.ts';
import { releaseBlocked } from './revisions.ts';
import type { DeliveryState } from './types.ts';

/** Delivery states an operator may replay. */
export const REPLAYABLE_DELIVERY_STATES = ['rejected', 'failed'] as const satisfies readonly DeliveryState[];
/** Why a revision is dead-lettered, when it can be replayed. */
export const REPLAYABLE_REVISION_REASONS = ['HOLD_EXPIRED'] as const;

export interface DeadLetteredDelivery {
  readonly deliveryId: number;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  readonly destination: string;
  readonly state: 'rejected' | 'failed';
  readonly attempts: number;
  /** The last attempt's code: an HTTP issue code, an ACK code's reason, a transport error code. */
  readonly lastErrorCode: string | null;
  readonly updatedAt: string;
}

export interface DeadLetteredRevisionRow {
  readonly revisionId: number;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  /** `HOLD_EXPIRED` (replayable) or `LIFECYCLE_INVALID` (follows a retraction: final). */
  readonly reason: string | null;
  readonly replayable: boolean;
  readonly receivedAt: string;
  readonly updatedAt: string;
}

export interface LedgerDeadLetters {
  readonly deliveries: readonly DeadLetteredDelivery[];
  readonly revisions: readonly DeadLetteredRevisionRow[];
}

export interface DeadLetterFilter {
  /** Only these tenants (a token limited to tenants); absent: every tenant. */
  readonly tenants?: readonly string[];
  readonly destination?: string;
  /** At most this many of each kind, oldest first (default 1000). */
  readonly limit?: number;
}

/** Everything parked in the ledger, oldest first. */
export async function listDeadLetters(
  db: Queryable,
  filter: DeadLetterFilter = {},
): Promise<LedgerDeadLetters> {
  const tenants = filter.tenants ? [...filter.tenants] : null;
  const limit = filter.limit ?? 1000;
  const deliveries = await db.query<{
    id: number;
    tenant: string;
    note_id: string;
    revision: number;
    destination: string;
    state: 'rejected' | 'failed';
    attempts: number;
    last_error_code: string | null;
    updated_at: Date;
  }>(
    `select id, tenant, note_id, revision::int as revision, destination, state, attempts, last_error_code, updated_at
     from deliveries
     where state in ('rejected', 'failed') and ($1::jsonb is null or tenant in (select jsonb_array_elements_text($1::jsonb)))
       and ($2::text is null or destination = $2)
     order by updated_at, id limit $3`,
    [tenants, filter.destination ?? null, limit],
  );
  const revisions = await db.query<{
    id: number;
    tenant: string;
    note_id: string;
    revision: number;
    state_reason: string | null;
    received_at: Date;
    updated_at: Date;
  }>(
    `select id, tenant, note_id, revision::int as revision, state_reason, received_at, updated_at
     from note_revisions
     where state = 'dead-lettered' and ($1::jsonb is null or tenant in (select jsonb_array_elements_text($1::jsonb)))
     order by updated_at, id limit $2`,
    [tenants, limit],
  );
  return {
    deliveries: deliveries.map((d) => ({
      deliveryId: Number(d.id),
      tenant: d.tenant,
      noteId: d.note_id,
      revision: d.revision,
      destination: d.destination,
      state: d.state,
      attempts: d.attempts,
      lastErrorCode: d.last_error_code,
      updatedAt: d.updated_at.toISOString(),
    })),
    revisions: revisions.map((r) => ({
      revisionId: Number(r.id),
      tenant: r.tenant,
      noteId: r.note_id,
      revision: r.revision,
      reason: r.state_reason,
      replayable: (REPLAYABLE_REVISION_REASONS as readonly (string | null)[]).includes(r.state_reason),
      receivedAt: r.received_at.toISOString(),
      updatedAt: r.updated_at.toISOString(),
    })),
  };
}

/** What a replay request names. */
export interface ReplayRequest {
  readonly deliveryIds?: readonly number[];
  readonly revisionIds?: readonly number[];
  /** Refuse items of other tenants (a token limited to tenants). */
  readonly tenants?: readonly string[];
  /** Who asked (recorded in the audit record): e.g. `operator:<token hash prefix>` or `cli`. */
  readonly by: string;
}

export interface ReplayedDelivery {
  readonly deliveryId: number;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  readonly destination: string;
  readonly previousState: string;
  /** `pending` (due now). */
  readonly state: 'pending';
}

export interface ReplayedRevision {
  readonly revisionId: number;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  /** `accepted` (its deliveries run, or wait for the previous revision's) or `waiting` (fresh hold). */
  readonly state: 'accepted' | 'waiting';
  /** Deliveries released to `pending` by this replay. */
  readonly released: readonly number[];
}

export interface ReplayResult {
  readonly deliveries: readonly ReplayedDelivery[];
  readonly revisions: readonly ReplayedRevision[];
}

/**
 * Replays every named item or none: an unknown id is NOT_FOUND, an item that is not dead-lettered (or is
 * final) is REPLAY_REFUSED, another tenant's item is FORBIDDEN — each with the id in `where`.
 */
export async function replayDeadLetters(
  tx: Tx,
  req: ReplayRequest,
  ctx: { readonly actor: string; readonly holdSeconds: number; readonly now: Date },
): Promise<{ result: ReplayResult; audit: AuditInput[] }> {
  const audit: AuditInput[] = [];
  const revisions: ReplayedRevision[] = [];
  const deliveries: ReplayedDelivery[] = [];
  const allowed = (tenant: string) => !req.tenants || req.tenants.includes(tenant);

  // Revisions first: a revived revision may release deliveries; a delivery replayed after is then counted once.
  for (const revisionId of [...new Set(req.revisionIds ?? [])].sort((a, b) => a - b)) {
    const [head] = await tx.query<{ tenant: string; note_id: string }>(
      'select tenant, note_id from note_revisions where id = $1',
      [revisionId],
    );
    if (!head)
      throw new ScribeError('NOT_FOUND', 'no such revision', {
        where: `revisionId ${revisionId}`,
        hint: 'Take the ids from `scribe-bridge dead-letters list` (or GET /v1/dead-letters).',
      });
    if (!allowed(head.tenant))
      throw new ScribeError('FORBIDDEN', 'this token may not act for that tenant', {
        where: `revisionId ${revisionId}`,
      });
    // The note row first, as every writer of a note's revisions does (revisions.ts), then a fresh read.
    await tx.query('select 1 from notes where tenant = $1 and note_id = $2 for update', [
      head.tenant,
      head.note_id,
    ]);
    const rows = await tx.query<{ id: number; revision: number; state: string; state_reason: string | null }>(
      `select id, revision::int as revision, state, state_reason from note_revisions
       where tenant = $1 and note_id = $2 order by revision`,
      [head.tenant, head.note_id],
    );
    const rev = rows.find((r) => Number(r.id) === revisionId)!;
    if (rev.state !== 'dead-lettered')
      throw new ScribeError('REPLAY_REFUSED', `the revision is ${rev.state}, not dead-lettered`, {
        where: `revisionId ${revisionId}`,
      });
    if (!(REPLAYABLE_REVISION_REASONS as readonly (string | null)[]).includes(rev.state_reason))
      throw new ScribeError(
        'REPLAY_REFUSED',
        `the revision was dead-lettered for ${rev.state_reason ?? 'an unknown reason'}, which is final`,
        { where: `revisionId ${revisionId}` },
      );
    const predecessor = rows.find((r) => r.revision === rev.revision - 1);
    const accepted = rev.revision === 1 || predecessor?.state === 'accepted';
    const state = accepted ? 'accepted' : 'waiting';
    const holdUntil = accepted ? null : new Date(ctx.now.getTime() + ctx.holdSeconds * 1000);
    await tx.query(
      `update note_revisions set state = $2, hold_until = $3, state_reason = null, updated_at = $4 where id = $1`,
      [revisionId, state, holdUntil, ctx.now],
    );
    const at = { actor: ctx.actor, tenant: head.tenant, noteId: head.note_id, revision: rev.revision };
    audit.push({
      ...at,
      action: 'revision.replayed',
      details: { revisionId, previousReason: rev.state_reason, state, by: req.by },
    });
    if (accepted) {
      // Its waiting successors follow it, N+1 after N (as when the predecessor itself arrives).
      for (let next = rev.revision + 1; ; next++) {
        const r = rows.find((x) => x.revision === next);
        if (r?.state !== 'waiting') break;
        await tx.query(
          `update note_revisions set state = 'accepted', hold_until = null, state_reason = null, updated_at = $2
           where id = $1`,
          [r.id, ctx.now],
        );
        audit.push({
          ...at,
          revision: r.revision,
          action: 'revision.released',
          details: { after: rev.revision },
        });
      }
    }
    let released: number[] = [];
    if (accepted) {
      // As in revisions.ts: lock the predecessor's deliveries first, so a worker recording one of them right
      // now either committed before (the release below, a new statement, sees it delivered) or waits for this
      // transaction (and its own release then sees this revision accepted). Otherwise both could miss.
      await tx.query(
        'select 1 from deliveries where tenant = $1 and note_id = $2 and revision = $3 for update',
        [head.tenant, head.note_id, rev.revision - 1],
      );
      released = await releaseBlocked(tx, head.tenant, head.note_id, null, ctx.now);
    }
    revisions.push({
      revisionId,
      tenant: head.tenant,
      noteId: head.note_id,
      revision: rev.revision,
      state,
      released: released.map(Number),
    });
  }

  for (const deliveryId of [...new Set(req.deliveryIds ?? [])].sort((a, b) => a - b)) {
    const [d] = await tx.query<{
      tenant: string;
      note_id: string;
      revision: number;
      destination: string;
      state: DeliveryState;
      attempts: number;
      last_error_code: string | null;
    }>(
      `select tenant, note_id, revision::int as revision, destination, state, attempts, last_error_code
       from deliveries where id = $1 for update`,
      [deliveryId],
    );
    if (!d)
      throw new ScribeError('NOT_FOUND', 'no such delivery', {
        where: `deliveryId ${deliveryId}`,
        hint: 'Take the ids from `scribe-bridge dead-letters list` (or GET /v1/dead-letters).',
      });
    if (!allowed(d.tenant))
      throw new ScribeError('FORBIDDEN', 'this token may not act for that tenant', {
        where: `deliveryId ${deliveryId}`,
      });
    if (!(REPLAYABLE_DELIVERY_STATES as readonly string[]).includes(d.state))
      throw new ScribeError('REPLAY_REFUSED', `the delivery is ${d.state}, not rejected or failed`, {
        where: `deliveryId ${deliveryId}`,
      });
    await tx.query(
      `update deliveries set state = 'pending', attempts = 0, next_attempt_at = $2, lease_owner = null,
         lease_until = null, last_error_code = null, updated_at = $2
       where id = $1`,
      [deliveryId, ctx.now],
    );
    audit.push({
      actor: ctx.actor,
      action: 'delivery.replayed',
      tenant: d.tenant,
      noteId: d.note_id,
      revision: d.revision,
      destination: d.destination,
      details: {
        deliveryId,
        previousState: d.state,
        previousAttempts: d.attempts,
        lastErrorCode: d.last_error_code,
        by: req.by,
      },
    });
    deliveries.push({
      deliveryId,
      tenant: d.tenant,
      noteId: d.note_id,
      revision: d.revision,
      destination: d.destination,
      previousState: d.state,
      state: 'pending',
    });
  }
  return { result: { deliveries, revisions }, audit };
}
