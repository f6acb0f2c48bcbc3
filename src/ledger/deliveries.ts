/**
 * The delivery state machine's database side: claiming due work with a lease, recording what a send did, and
 * turning lost leases into `ambiguous`. Each function runs inside the caller's transaction.
 */
import type { NoteStatus } from '../contract/envelope.ts';
import type { JsonValue } from '../contract/json.ts';
import { ScribeError } from '../errors.ts';
import type { AuditInput } from './audit.ts';
import type { Queryable, Tx } from './db.ts';
import { releaseBlocked } from './revisions.ts';
import type {
  AttemptRecorded,
  AttemptResult,
  ClaimedDelivery,
  DeliveryState,
  DestinationIdentifier,
  ExpiredLease,
  WritePlan,
} from './types.ts';

/** Namespace of the per-destination claim lock (pg_advisory_xact_lock(int, int)); "SB". */
const CLAIM_LOCK_NS = 0x5342;
/** Postgres int4 max: "no limit" for LIMIT arithmetic. */
const UNBOUNDED = 2_147_483_647;

interface ClaimRow {
  id: number;
  tenant: string;
  note_id: string;
  revision: number;
  destination: string;
  attempts: number;
  lease_owner: string;
  lease_until: Date;
  prior_state: 'pending' | 'ambiguous';
  status: NoteStatus;
  received_at: Date;
  rendering_id: number;
  mapping_id: string;
  mapping_version: string;
  mapping_digest: string;
  content_type: string;
  payload: string;
  payload_sha256: string;
  write_request: { method: string; url: string; ifNoneExist?: string } | null;
  write_plan: WritePlan | null;
  identifiers: DestinationIdentifier[];
}

/**
 * Claims up to `limit` due deliveries of one destination: state pending or ambiguous, next_attempt_at reached,
 * no earlier revision of the same note still undelivered at this destination, and no more unexpired leases in
 * flight than `concurrency`. Rows another transaction has locked are skipped (FOR UPDATE SKIP LOCKED), so
 * concurrent claimers never wait on each other's rows and never get the same delivery.
 */
export async function claimDue(
  tx: Queryable,
  destination: string,
  o: { limit: number; owner: string; leaseMs: number; concurrency: number | undefined; now: Date },
): Promise<ClaimedDelivery[]> {
  if (o.limit <= 0) return [];
  if (o.concurrency !== undefined) {
    // (so with a limit, `tx` must be a transaction: the lock lasts until it ends)
    // Counting leases and taking rows must not interleave between two claimers of one destination, or each
    // sees the other's claims uncommitted and both fill the same free slots. A transaction-scoped lock on the
    // destination makes the pair atomic; the claim is one short statement, so claimers queue only briefly.
    await tx.query('select pg_advisory_xact_lock($1, hashtext($2))', [CLAIM_LOCK_NS, destination]);
  }
  const limit =
    o.concurrency === undefined ? o.limit : Math.min(o.limit, await fairShare(tx, destination, o));
  if (limit <= 0) return [];
  const until = new Date(o.now.getTime() + o.leaseMs);
  const rows = await tx.query<ClaimRow>(
    `with due as (
       select d.id, d.state as prior_state from deliveries d
       where d.destination = $1 and d.state in ('pending', 'ambiguous') and d.next_attempt_at <= $2
         and not exists (
           select 1 from deliveries p
           where p.tenant = d.tenant and p.note_id = d.note_id and p.destination = d.destination
             and p.revision < d.revision and p.state <> 'delivered')
       order by d.next_attempt_at, d.id
       limit greatest(0, least($3::int, $4::int - (
         select count(*)::int from deliveries s
         where s.destination = $1 and s.state = 'sending' and s.lease_until > $2)))
       for update of d skip locked)
     update deliveries x
     set state = 'sending', lease_owner = $5, lease_until = $6, updated_at = $2
     from due, renderings r, note_revisions v
     where x.id = due.id and r.id = x.rendering_id and v.id = x.revision_id
     returning x.id, x.tenant, x.note_id, x.revision, x.destination, x.attempts, x.lease_owner, x.lease_until,
       due.prior_state, v.status, v.received_at, r.id as rendering_id, r.mapping_id, r.mapping_version,
       r.mapping_digest, r.content_type, r.payload, r.payload_sha256, r.write_request, r.write_plan, r.identifiers`,
    [destination, o.now, limit, o.concurrency ?? UNBOUNDED, o.owner, until],
  );
  return rows
    .sort((a, b) => a.id - b.id)
    .map((r) => ({
      id: r.id,
      tenant: r.tenant,
      noteId: r.note_id,
      revision: r.revision,
      status: r.status,
      destination: r.destination,
      claimedFrom: r.prior_state,
      attempts: r.attempts,
      leaseOwner: r.lease_owner,
      leaseUntil: r.lease_until,
      receivedAt: r.received_at,
      rendering: {
        id: r.rendering_id,
        mapping: { id: r.mapping_id, version: r.mapping_version, digest: r.mapping_digest },
        contentType: r.content_type,
        payload: r.payload,
        payloadSha256: r.payload_sha256,
        writeRequest: r.write_request,
        writePlan: r.write_plan,
        identifiers: r.identifiers,
      },
    }));
}

/** How long a claim keeps its owner counted as active at a destination: several idle polls (250 ms default). */
export const CLAIM_OWNER_WINDOW_MS = 5_000;

/**
 * Fair claiming under a concurrency limit (run under the destination's claim lock): records `owner` as active at
 * the destination and answers how many more leases it may take. With n active owners (those holding a live
 * lease there or seen claiming there within CLAIM_OWNER_WINDOW_MS), each is due `floor(concurrency / n)`; while
 * another active owner holds fewer than that, a claim takes only up to that floor, otherwise up to
 * `ceil(concurrency / n)` (the remainder goes to whoever claims first) — minus the live leases it already holds.
 * Alone, a worker may fill every slot; with others waiting, the slots it frees when it records a round are no
 * longer all re-taken by its own next claim, and the others get theirs at their next poll. (With fewer slots
 * than workers the floor is 0: slots then change hands only as their holders go idle.) One statement; owner
 * rows older than a day are removed on the way.
 */
async function fairShare(
  tx: Queryable,
  destination: string,
  o: { owner: string; concurrency: number | undefined; now: Date },
): Promise<number> {
  const since = new Date(o.now.getTime() - CLAIM_OWNER_WINDOW_MS);
  const stale = new Date(o.now.getTime() - 86_400_000);
  const rows = await tx.query<{ me: boolean; leases: number }>(
    `with seen as (
       insert into claim_owners (destination, owner, seen_at) values ($1, $2, $3)
       on conflict (destination, owner) do update set seen_at = excluded.seen_at
       where claim_owners.seen_at < excluded.seen_at - interval '1 second'
       returning 1),
     gone as (
       delete from claim_owners where destination = $1 and owner <> $2 and seen_at < $5 returning 1),
     active as (
       select lease_owner as owner, count(*)::int as leases from deliveries
       where destination = $1 and state = 'sending' and lease_until > $3
       group by lease_owner
       union all
       select owner, 0 from claim_owners where destination = $1 and seen_at > $4)
     select owner = $2 as me, max(leases)::int as leases from active group by owner`,
    [destination, o.owner, o.now, since, stale],
  );
  const concurrency = o.concurrency ?? UNBOUNDED;
  const mine = rows.find((r) => r.me)?.leases ?? 0;
  const others = rows.filter((r) => !r.me).map((r) => r.leases);
  const n = others.length + 1;
  const floor = Math.floor(concurrency / n);
  const share = others.some((l) => l < floor) ? floor : Math.ceil(concurrency / n);
  return share - mine;
}

const NEXT_STATE: Record<AttemptResult['outcome'], DeliveryState> = {
  delivered: 'delivered',
  rejected: 'rejected',
  failed: 'failed',
  retry: 'pending',
  ambiguous: 'ambiguous',
};

/**
 * Records one attempt's result, if `owner` still holds the delivery: its lease is current (`sending`), or it
 * ran out and was turned `ambiguous` but nobody has claimed it since — then the worker's definite answer is
 * better than the reconciler's guess. Anything else means another worker owns it now: refused.
 */
export async function recordAttempt(
  tx: Tx,
  deliveryId: number,
  owner: string,
  result: AttemptResult,
  now: Date,
): Promise<{ recorded: AttemptRecorded; audit: AuditInput[] }> {
  if (result.outcome === 'retry' && result.nextAttemptAt === undefined) {
    throw new ScribeError('INTERNAL', 'a retry needs nextAttemptAt', { where: `delivery ${deliveryId}` });
  }
  const state = NEXT_STATE[result.outcome];
  const next =
    state === 'pending' ? result.nextAttemptAt : state === 'ambiguous' ? (result.nextAttemptAt ?? now) : null;
  // The ownership check is the UPDATE's WHERE (which locks the row); the attempt row rides along. The lease
  // ends with any recorded result, so a repeated report of the same send is refused too.
  const [row] = await tx.query<{
    tenant: string;
    note_id: string;
    revision: number;
    destination: string;
    attempts: number;
    attempt: number;
  }>(
    `with d as (
       update deliveries set state = $11, attempts = attempts + 1, attempt_seq = attempt_seq + 1,
         next_attempt_at = $12, lease_owner = null, lease_until = null, last_error_code = $8,
         receipt = coalesce($10::jsonb, receipt), updated_at = $13
       where id = $1 and lease_owner = $2 and state in ('sending', 'ambiguous')
       returning id, tenant, note_id, revision, destination, attempts, attempt_seq as attempt),
     a as (
       insert into delivery_attempts (delivery_id, attempt, owner, at, duration_ms, outcome, http_status, ack_code,
         error_code, payload_sha256, receipt)
       select d.id, d.attempt, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb from d)
     select tenant, note_id, revision, destination, attempts, attempt from d`,
    [
      deliveryId,
      owner,
      result.startedAt,
      Math.max(0, Math.round(result.durationMs)),
      result.outcome,
      result.httpStatus ?? null,
      result.ackCode ?? null,
      result.errorCode ?? null,
      result.sentPayloadSha256 ?? null,
      result.receipt ?? null,
      state,
      next,
      now,
    ],
  );
  if (!row) {
    const [found] = await tx.query<{ state: DeliveryState }>('select state from deliveries where id = $1', [
      deliveryId,
    ]);
    if (!found) throw new ScribeError('INTERNAL', `delivery ${deliveryId} does not exist`);
    throw new ScribeError('LEDGER_LEASE_LOST', `delivery ${deliveryId} is no longer leased to this worker`, {
      where: `delivery ${deliveryId} (state ${found.state})`,
      disposition: 'ambiguous',
      hint: 'Its lease expired and another worker claimed it; that worker settles the outcome.',
    });
  }
  const { attempts, attempt } = row;
  // A separate statement, on purpose: its fresh snapshot sees a revision N+1 that was committed while the
  // UPDATE above waited for this row's lock (recording N+1 locks N's row). In the same statement it would be
  // invisible, and N+1 would stay blocked for good.
  const unblocked =
    state === 'delivered' ? await releaseBlocked(tx, row.tenant, row.note_id, row.destination, now) : [];
  // Every attempt is audited, retries too (bounded by the destination's retry budget); a receipt (the EHR's id
  // and version, the ACK) is a record of its own following its attempt.
  const where = {
    tenant: row.tenant,
    noteId: row.note_id,
    revision: row.revision,
    destination: row.destination,
  };
  const audit: AuditInput[] = [
    {
      actor: owner,
      action: `delivery.${result.outcome}`,
      ...where,
      details: auditDetails(deliveryId, attempts, attempt, result, unblocked),
    },
  ];
  if (result.receipt !== undefined && result.receipt !== null)
    audit.push({
      actor: owner,
      action: 'delivery.receipt',
      ...where,
      details: { deliveryId, attempt, outcome: result.outcome, receipt: result.receipt },
    });
  return { recorded: { deliveryId, state, attempts, unblocked }, audit };
}

function auditDetails(
  deliveryId: number,
  attempts: number,
  attempt: number,
  r: AttemptResult,
  unblocked: readonly number[],
): { [k: string]: JsonValue } {
  // attempts: this round's count against the retry budget (an operator's replay starts a new round); attempt:
  // the attempt's own number, as in delivery_attempts, never repeated for a delivery (migration 005).
  const d: { [k: string]: JsonValue } = { deliveryId, attempts, attempt };
  if (r.httpStatus !== undefined) d['httpStatus'] = r.httpStatus;
  if (r.ackCode !== undefined) d['ackCode'] = r.ackCode;
  if (r.errorCode !== undefined) d['errorCode'] = r.errorCode;
  if (r.sentPayloadSha256 !== undefined) d['sentPayloadSha256'] = r.sentPayloadSha256;
  if (unblocked.length > 0) d['unblocked'] = [...unblocked];
  return d;
}

/**
 * Leases that ran out while `sending` become `ambiguous`, due now: the send may or may not have reached the
 * destination, so the next claimer reads back before it resends. The lost lease counts as an attempt.
 */
export async function releaseExpiredLeases(
  tx: Tx,
  actor: string,
  now: Date,
): Promise<{ expired: ExpiredLease[]; audit: AuditInput[] }> {
  const rows = await tx.query<{
    id: number;
    tenant: string;
    note_id: string;
    revision: number;
    destination: string;
    lease_owner: string;
    attempts: number;
    attempt: number;
  }>(
    `with x as (
       select id from deliveries where state = 'sending' and lease_until <= $1 for update skip locked),
     u as (
       update deliveries d
       set state = 'ambiguous', next_attempt_at = $1, attempts = d.attempts + 1, attempt_seq = d.attempt_seq + 1,
         last_error_code = 'LEASE_EXPIRED', updated_at = $1
       from x where d.id = x.id
       returning d.id, d.tenant, d.note_id, d.revision, d.destination, d.lease_owner, d.attempts,
         d.attempt_seq as attempt),
     a as (
       insert into delivery_attempts (delivery_id, attempt, owner, at, outcome, error_code)
       select u.id, u.attempt, u.lease_owner, $1, 'lease-expired', 'LEASE_EXPIRED' from u)
     select * from u order by id`,
    [now],
  );
  const expired = rows.map((r) => ({
    deliveryId: r.id,
    tenant: r.tenant,
    noteId: r.note_id,
    revision: r.revision,
    destination: r.destination,
    owner: r.lease_owner,
  }));
  const audit = rows.map((r) => ({
    actor,
    action: 'delivery.lease-expired',
    tenant: r.tenant,
    noteId: r.note_id,
    revision: r.revision,
    destination: r.destination,
    details: {
      deliveryId: r.id,
      owner: r.lease_owner,
      attempts: r.attempts,
      attempt: r.attempt,
      state: 'ambiguous',
    },
  }));
  return { expired, audit };
}
