/**
 * Read-only views of the ledger: a note's status (the HTTP status endpoint), the backlog and the age of the
 * oldest open delivery (metrics). Each is one or two statements outside any transaction.
 */
import type { NoteStatus } from '../contract/envelope.ts';
import type { JsonValue } from '../contract/json.ts';
import type { Queryable } from './db.ts';
import {
  type Backlog,
  DELIVERY_STATES,
  type DeliveryState,
  type DeliveryStatus,
  type NoteStatusView,
  type RevisionState,
} from './types.ts';

/** Revisions of one note with their per-destination deliveries, or null when the note is unknown. */
export async function revisionStatus(
  db: Queryable,
  tenant: string,
  noteId: string,
): Promise<NoteStatusView | null> {
  const revisions = await db.query<{
    id: number;
    revision: number;
    status: NoteStatus;
    state: RevisionState;
    state_reason: string | null;
    hold_until: Date | null;
    content_sha256: string;
    source: string;
    received_at: Date;
    sig_kid: string;
    sig_alg: string;
    signed_at: string;
  }>(
    // signedAt exactly as signed (the envelope's string), not the timestamp column re-formatted.
    `select id, revision, status, state, state_reason, hold_until, content_sha256, source, received_at, sig_kid,
       sig_alg, envelope->'signature'->>'signedAt' as signed_at
     from note_revisions where tenant = $1 and note_id = $2 order by revision`,
    [tenant, noteId],
  );
  if (revisions.length === 0) return null;
  const deliveries = await db.query<{
    id: number;
    revision_id: number;
    destination: string;
    state: DeliveryState;
    attempts: number;
    next_attempt_at: Date | null;
    last_error_code: string | null;
    receipt: JsonValue | null;
    updated_at: Date;
    mapping_id: string;
    mapping_version: string;
    mapping_digest: string;
    payload_sha256: string;
  }>(
    `select d.id, d.revision_id, d.destination, d.state, d.attempts, d.next_attempt_at, d.last_error_code,
       d.receipt, d.updated_at, r.mapping_id, r.mapping_version, r.mapping_digest, r.payload_sha256
     from deliveries d join renderings r on r.id = d.rendering_id
     where d.tenant = $1 and d.note_id = $2 order by d.revision, d.destination`,
    [tenant, noteId],
  );
  return {
    tenant,
    noteId,
    revisions: revisions.map((v) => ({
      revision: v.revision,
      status: v.status,
      state: v.state,
      stateReason: v.state_reason,
      holdUntil: v.hold_until,
      contentSha256: v.content_sha256,
      source: v.source,
      receivedAt: v.received_at,
      signature: { kid: v.sig_kid, alg: v.sig_alg, signedAt: v.signed_at },
      deliveries: deliveries
        .filter((d) => d.revision_id === v.id)
        .map(
          (d): DeliveryStatus => ({
            id: d.id,
            destination: d.destination,
            state: d.state,
            attempts: d.attempts,
            nextAttemptAt: d.next_attempt_at,
            lastErrorCode: d.last_error_code,
            receipt: d.receipt,
            mapping: { id: d.mapping_id, version: d.mapping_version, digest: d.mapping_digest },
            payloadSha256: d.payload_sha256,
            updatedAt: d.updated_at,
          }),
        ),
    })),
  };
}

/** Open deliveries by state and by destination, and revisions waiting for a predecessor. */
export async function backlog(db: Queryable): Promise<Backlog> {
  // `state <> 'delivered'` matches the partial index: delivered history (the bulk of the table) is never read.
  // The blocked deliveries of a dead-lettered revision are not work waiting: that revision is a dead letter
  // (listed as one; replayed, its deliveries count again) — or, after a retraction, never sent at all.
  const rows = await db.query<{ destination: string; state: DeliveryState; n: number }>(
    `select d.destination, d.state, count(*)::int as n from deliveries d
     where d.state <> 'delivered'
       and not (d.state = 'blocked' and exists (
         select 1 from note_revisions v where v.id = d.revision_id and v.state = 'dead-lettered'))
     group by d.destination, d.state`,
  );
  const [waiting] = await db.query<{ n: number }>(
    `select count(*)::int as n from note_revisions where state = 'waiting'`,
  );
  const byState = Object.fromEntries(
    DELIVERY_STATES.filter((s) => s !== 'delivered').map((s) => [s, 0]),
  ) as Record<Exclude<DeliveryState, 'delivered'>, number>;
  const byDestination: Record<string, Partial<Record<DeliveryState, number>>> = {};
  for (const r of rows) {
    if (r.state !== 'delivered') byState[r.state] += r.n;
    const d = byDestination[r.destination] ?? {};
    d[r.state] = r.n;
    byDestination[r.destination] = d;
  }
  return { byState, byDestination, waitingRevisions: waiting?.n ?? 0 };
}

/**
 * Milliseconds since the oldest delivery still in flight (pending, sending or ambiguous) was created, or null
 * when there is none. Blocked deliveries wait for another delivery or an operator and are counted by `backlog`.
 */
export async function oldestPendingAge(db: Queryable, now: Date): Promise<number | null> {
  const [row] = await db.query<{ oldest: Date | null }>(
    `select min(created_at) as oldest from deliveries where state in ('pending', 'sending', 'ambiguous')`,
  );
  return row?.oldest ? Math.max(0, now.getTime() - row.oldest.getTime()) : null;
}
