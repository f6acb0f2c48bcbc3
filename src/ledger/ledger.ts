/**
 * The durable ledger: the service's one source of truth for what was received, what each destination gets,
 * and what happened when it was sent. Every operation is one transaction, and every state change commits
 * together with its audit record.
 *
 * Isolation: READ COMMITTED with explicit locks, on both drivers.
 * - Each invariant is local and has its own lock: a note's row (revisions of one note are placed one at a
 *   time, so N and N-1 arriving together cannot miss each other), a predecessor's delivery rows (a revision
 *   and its predecessor's outcome), `FOR UPDATE SKIP LOCKED` on due deliveries (claimers never share a row or
 *   wait on each other), a per-destination advisory lock around a claim when a concurrency limit applies, and
 *   the audit chain head's row.
 * - SERIALIZABLE would detect the same conflicts only by aborting one side (40001), turning every hot queue
 *   row into a retry loop; SKIP LOCKED queues are built for READ COMMITTED. PGlite has one session, so its
 *   transactions never overlap anyway.
 * - Where a decision must see rows committed while it waited for a lock, it is a separate statement after the
 *   locking one (READ COMMITTED takes a snapshot per statement): the tests in test/ledger.test.ts hold one
 *   transaction open on a second connection to prove each such race.
 *
 * Cost: the audit chain's head row is locked from a transaction's append to its commit, so audited
 * transactions commit one at a time. `recordRevisions` / `recordAttempts` share one commit and one append
 * among a batch (an SQS batch, a worker's finished sends): on this 2-core machine with ~110 KB FHIR payloads,
 * batches of 10 took recording from ~210 to ~280 notes/s and delivery bookkeeping from ~310 to ~470/s.
 */
import { createHash } from 'node:crypto';
import type { VerifiedNote } from '../contract/verify.ts';
import { ScribeError } from '../errors.ts';
import { traceData } from '../trace/record.ts';
import { type AuditInput, appendAudit } from './audit.ts';
import { type Db, type OpenOptions, openLedger, sqlState, type Tx } from './db.ts';
import {
  type DeadLetterFilter,
  type LedgerDeadLetters,
  listDeadLetters,
  type ReplayRequest,
  type ReplayResult,
  replayDeadLetters,
} from './dead-letters.ts';
import { claimDue, recordAttempt, releaseExpiredLeases } from './deliveries.ts';
import { migrate } from './migrate.ts';
import { backlog, oldestPendingAge, revisionStatus } from './reads.ts';
import {
  attachRenderings,
  checkRenderings,
  checkRevisionInput,
  expireWaiting,
  type PendingRender,
  pendingRenders,
  placeRevision,
  refusePendingRender,
} from './revisions.ts';
import type {
  AttemptRecorded,
  AttemptResult,
  Backlog,
  ClaimedDelivery,
  ClaimOptions,
  DeadLetteredRevision,
  ExpiredLease,
  NoteSource,
  NoteStatusView,
  RecordResult,
  RenderingInput,
  RevisionInput,
} from './types.ts';

/** Ledger settings. */
export interface LedgerOptions {
  /** How long a revision waits for its predecessor before it is dead-lettered (`intake.holdSeconds`). */
  readonly holdSeconds?: number;
  /** The time source (tests pin it). */
  readonly clock?: () => Date;
  /** Audit actor for intake and sweeps (workers are recorded by their lease owner id). */
  readonly actor?: string;
}

/** The ledger over a migrated database. */
export class Ledger {
  readonly db: Db;
  readonly #holdSeconds: number;
  readonly #clock: () => Date;
  readonly #actor: string;

  constructor(db: Db, options: LedgerOptions = {}) {
    this.db = db;
    this.#holdSeconds = options.holdSeconds ?? 3600;
    this.#clock = options.clock ?? (() => new Date());
    this.#actor = options.actor ?? 'scribe-bridge';
  }

  /** Opens the store a URL names (see `openLedger`), brings its schema up to date, and wraps it. */
  static async open(url: string, options: LedgerOptions & OpenOptions = {}): Promise<Ledger> {
    const db = await openLedger(url, options);
    try {
      await migrate(db);
    } catch (e) {
      await db.close();
      throw e;
    }
    return new Ledger(db, options);
  }

  /**
   * Records a verified, rendered revision in one transaction: a duplicate (same key and content) or a conflict
   * (same key, other content) is audited and nothing else is stored; a revision following an entered-in-error
   * one is rejected (audited); a revision whose predecessor is missing waits (deliveries blocked); otherwise
   * it is accepted with one delivery per rendering. Its arrival releases waiting successors.
   */
  async recordRevision(input: RevisionInput): Promise<RecordResult> {
    checkRevisionInput(input);
    const now = this.#clock();
    return this.#withAudit(now, (tx) =>
      placeRevision(tx, input, { actor: this.#actor, holdSeconds: this.#holdSeconds, now }),
    );
  }

  /**
   * `recordRevision` for several revisions (an SQS batch) in one transaction and one audit-chain append:
   * results in input order. Measured on PostgreSQL (2 cores), batching cuts the per-note cost because the
   * commit and the audit chain's lock are shared. A database error fails the whole batch (nothing is
   * recorded): retry the items one by one to isolate it.
   */
  async recordRevisions(inputs: readonly RevisionInput[]): Promise<RecordResult[]> {
    for (const input of inputs) checkRevisionInput(input);
    const now = this.#clock();
    // Placed in key order, so two concurrent batches lock note rows in the same order (no deadlock).
    const order = inputs
      .map((input, i) => ({ input, i }))
      .sort((a, b) => compareKeys(a.input, b.input) || a.i - b.i);
    return this.#withAudit(now, async (tx) => {
      const results: RecordResult[] = new Array(inputs.length);
      const audit: AuditInput[] = [];
      for (const { input, i } of order) {
        const placed = await placeRevision(tx, input, {
          actor: this.#actor,
          holdSeconds: this.#holdSeconds,
          now,
        });
        results[i] = placed.result;
        audit.push(...placed.audit);
      }
      return { result: results, audit };
    });
  }

  /**
   * Leases up to `opts.limit` due deliveries of `destination` to `opts.owner` (state `sending` until
   * `now + leaseMs`), honouring per-note revision order and the destination's concurrency. Each comes with
   * its rendering. A delivery claimed from `ambiguous` must be read back before it is resent.
   */
  async claimDue(destination: string, opts: ClaimOptions): Promise<ClaimedDelivery[]> {
    const o = {
      limit: opts.limit,
      owner: opts.owner,
      leaseMs: opts.leaseMs,
      concurrency: opts.concurrency,
      now: opts.now ?? this.#clock(),
    };
    // Without a concurrency limit the claim is one statement, atomic on its own: no BEGIN/COMMIT round trips.
    return o.concurrency === undefined
      ? claimDue(this.db, destination, o)
      : this.db.transaction((tx) => claimDue(tx, destination, o));
  }

  /**
   * Records a send's result for the lease holder `owner` (refused when the lease was lost to another worker),
   * moves the delivery on, releases the next revision at that destination once this one is delivered, and
   * audits every outcome but `retry`.
   */
  async recordAttempt(deliveryId: number, owner: string, result: AttemptResult): Promise<AttemptRecorded> {
    const now = this.#clock();
    return this.#withAudit(now, async (tx) => {
      const { recorded, audit } = await recordAttempt(tx, deliveryId, owner, result, now);
      return { result: recorded, audit };
    });
  }

  /**
   * `recordAttempt` for several deliveries in one transaction (a worker reporting the sends it finished).
   * A lost lease fails only its own item (`ok: false`); a database error fails the whole batch.
   */
  async recordAttempts(items: readonly AttemptItem[]): Promise<AttemptOutcome[]> {
    const now = this.#clock();
    return this.#withAudit(now, async (tx) => {
      const { out, audit } = await recordEach(tx, items, now);
      return { result: out, audit };
    });
  }

  /**
   * `recordAttempts`, then `claimDue` for one destination, in ONE transaction: a worker reports a round's sends
   * and takes its next round in the same commit (one transaction per round instead of two — what bounds a
   * destination with `concurrency: 1`, whose rounds are one delivery each). The claim sees the leases just
   * ended as free. It runs before the audit append, so the chain head is locked only for the append and commit.
   */
  async recordAttemptsAndClaim(
    items: readonly AttemptItem[],
    destination: string,
    opts: ClaimOptions,
  ): Promise<{ recorded: AttemptOutcome[]; claimed: ClaimedDelivery[] }> {
    const now = this.#clock();
    return this.#withAudit(now, async (tx) => {
      const { out, audit } = await recordEach(tx, items, now);
      const claimed = await claimDue(tx, destination, {
        limit: opts.limit,
        owner: opts.owner,
        leaseMs: opts.leaseMs,
        concurrency: opts.concurrency,
        now: opts.now ?? now,
      });
      return { result: { recorded: out, claimed }, audit };
    });
  }

  /** Deliveries whose lease ran out while sending become `ambiguous` (the reconciler decides), audited. */
  /**
   * Extends the leases `owner` still holds on these deliveries (sends in flight) to `now + leaseMs`: a live worker
   * keeps its claims however long a send takes, while a crashed one's run out within one short lease. Resolves with
   * the ids extended (a lease already lost is not taken back).
   */
  async extendLeases(
    ids: readonly number[],
    owner: string,
    leaseMs: number,
    now: Date = this.#clock(),
  ): Promise<number[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.query<{ id: number }>(
      `update deliveries set lease_until = $3
       where lease_owner = $2 and state = 'sending' and lease_until > $4
         and id in (select (jsonb_array_elements_text($1::jsonb))::bigint)
       returning id`,
      [ids, owner, new Date(now.getTime() + leaseMs), now],
    );
    return rows.map((r) => r.id);
  }

  async releaseExpiredLeases(now: Date = this.#clock()): Promise<ExpiredLease[]> {
    return this.#withAudit(now, async (tx) => {
      const { expired, audit } = await releaseExpiredLeases(tx, this.#actor, now);
      return { result: expired, audit };
    });
  }

  /** Revisions recorded without renderings (early retractions) whose predecessor is here now, oldest first. */
  pendingRenders(limit = 50): Promise<PendingRender[]> {
    return pendingRenders(this.db, limit);
  }

  /**
   * Attaches the renderings of a revision recorded without them, in one transaction with their audit records;
   * null when that is no longer to do (see revisions.ts `attachRenderings`).
   */
  async attachRenderings(
    revisionId: number,
    renderings: readonly RenderingInput[],
  ): Promise<RecordResult | null> {
    checkRenderings(renderings, `revision id ${revisionId}`);
    const now = this.#clock();
    return this.#withAudit(now, async (tx) => {
      const placed = await attachRenderings(tx, revisionId, renderings, {
        actor: this.#actor,
        holdSeconds: this.#holdSeconds,
        now,
      });
      return placed ?? { result: null, audit: [] };
    });
  }

  /** A revision still to be rendered whose rendering is refused for good: dead-lettered with the code, audited. */
  async refusePendingRender(revisionId: number, code: string): Promise<boolean> {
    const now = this.#clock();
    return this.#withAudit(now, (tx) => refusePendingRender(tx, revisionId, code, this.#actor, now));
  }

  /** Waiting revisions past their hold become `dead-lettered`, audited, and are returned. */
  async expireWaiting(now: Date = this.#clock()): Promise<DeadLetteredRevision[]> {
    return this.#withAudit(now, async (tx) => {
      const { expired, audit } = await expireWaiting(tx, this.#actor, now);
      return { result: expired, audit };
    });
  }

  /** A note's revisions and per-destination delivery states, or null when unknown. */
  revisionStatus(tenant: string, noteId: string): Promise<NoteStatusView | null> {
    return revisionStatus(this.db, tenant, noteId);
  }

  /** Open deliveries by state and destination, and waiting revisions. */
  backlog(): Promise<Backlog> {
    return backlog(this.db);
  }

  /** Milliseconds since the oldest pending/sending/ambiguous delivery was created; null when none. */
  oldestPendingAge(now: Date = this.#clock()): Promise<number | null> {
    return oldestPendingAge(this.db, now);
  }

  /** Dead letters for operators: rejected/failed deliveries and dead-lettered revisions (ids, codes, times). */
  deadLetters(filter: DeadLetterFilter = {}): Promise<LedgerDeadLetters> {
    return listDeadLetters(this.db, filter);
  }

  /** Puts dead-lettered deliveries and revisions back to work, all or none, each with a replay audit record. */
  async replayDeadLetters(req: ReplayRequest, now: Date = this.#clock()): Promise<ReplayResult> {
    return this.#withAudit(now, (tx) =>
      replayDeadLetters(tx, req, { actor: this.#actor, holdSeconds: this.#holdSeconds, now }),
    );
  }

  /** Appends audit records on their own (e.g. an operator's replay of SQS dead letters). */
  async audit(records: readonly AuditInput[], now: Date = this.#clock()): Promise<void> {
    await this.#withAudit(now, async () => ({ result: undefined, audit: records }));
  }

  /** Closes the database (and releases a PGlite directory's lock). */
  close(): Promise<void> {
    return this.db.close();
  }

  /** Runs `fn` and appends its audit records last in the same transaction (the chain lock is held briefly). */
  #withAudit<T>(now: Date, fn: (tx: Tx) => Promise<{ result: T; audit: readonly AuditInput[] }>): Promise<T> {
    return this.db.transaction(async (tx) => {
      const { result, audit } = await fn(tx);
      await appendAudit(tx, audit, now);
      return result;
    });
  }
}

/** One attempt to record: the delivery, the lease holder reporting it, and what the send did. */
export interface AttemptItem {
  readonly deliveryId: number;
  readonly owner: string;
  readonly result: AttemptResult;
}

/** An attempt's fate: recorded, or refused on its own (lease lost, unknown delivery). */
export type AttemptOutcome = { ok: true; recorded: AttemptRecorded } | { ok: false; error: ScribeError };

/**
 * Records attempts in the caller's transaction, row locks in id order (concurrent batches cannot deadlock on
 * each other). A refused item stands alone; a driver error has aborted the transaction and is thrown.
 */
async function recordEach(
  tx: Tx,
  items: readonly AttemptItem[],
  now: Date,
): Promise<{ out: AttemptOutcome[]; audit: AuditInput[] }> {
  const order = items.map((item, i) => ({ item, i })).sort((a, b) => a.item.deliveryId - b.item.deliveryId);
  const out: AttemptOutcome[] = new Array(items.length);
  const audit: AuditInput[] = [];
  for (const { item, i } of order) {
    try {
      const r = await recordAttempt(tx, item.deliveryId, item.owner, item.result, now);
      out[i] = { ok: true, recorded: r.recorded };
      audit.push(...r.audit);
    } catch (e) {
      // recordAttempt refuses (lease lost, unknown id) before it writes anything, so the others stand;
      // a driver error has aborted the transaction and must fail the batch.
      if (!(e instanceof ScribeError) || sqlState(e) !== undefined) throw e;
      out[i] = { ok: false, error: e };
    }
  }
  return { out, audit };
}

function compareKeys(a: RevisionInput, b: RevisionInput): number {
  return (
    (a.tenant < b.tenant ? -1 : a.tenant > b.tenant ? 1 : 0) ||
    (a.noteId < b.noteId ? -1 : a.noteId > b.noteId ? 1 : 0) ||
    a.revision - b.revision
  );
}

/**
 * The note part of a `RevisionInput` from a verified note: key, lifecycle, content hash, signature, artifact
 * hashes. The caller adds the renderings (one per destination).
 */
export function revisionInput(
  note: VerifiedNote,
  source: NoteSource,
  renderings: readonly RenderingInput[],
): RevisionInput {
  const e = note.envelope;
  return {
    tenant: e.tenant,
    noteId: e.noteId,
    revision: e.revision,
    status: e.status,
    replaces: e.replaces ?? null,
    contentSha256: createHash('sha256').update(note.signedContent).digest('hex'),
    envelope: note.raw,
    signature: {
      kid: note.signature.kid,
      alg: note.signature.alg,
      thumbprint: note.signature.thumbprint,
      signedAt: note.signature.signedAt,
      verified: note.signature.verified,
    },
    artifacts: [note.artifacts.transcript, note.artifacts.clinicalDocument].map((a) => ({
      name: a.name,
      source: a.source,
      uri: a.uri,
      sha256: a.sha256,
      hashSigned: a.hashSigned,
    })),
    source,
    trace: traceData(note),
    renderings,
  };
}
