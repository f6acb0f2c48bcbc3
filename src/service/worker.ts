/**
 * Delivery workers: per destination, claim due deliveries from the ledger (`FOR UPDATE SKIP LOCKED`, per-note
 * revision order, the destination's concurrency limit, a lease), send each through the destination's sender and
 * record the attempt — delivered, rejected, retried with exponential backoff and jitter (never earlier than a
 * Retry-After), failed when the retry budget is spent, or ambiguous (settled by read-back when next claimed).
 * Stateless: any number of workers on one PostgreSQL share the work. See docs/durability.md.
 */
import { randomUUID } from 'node:crypto';
import type { Config, DestinationConfig } from '../config/index.ts';
import { type BackoffPolicy, backoffDelayMs } from '../deliver/backoff.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../deliver/mllp.ts';
import { ScribeError } from '../errors.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { AttemptResult, ClaimedDelivery } from '../ledger/types.ts';
import { fault } from './faults.ts';
import { type Sender, type SenderLog, senderFor } from './senders.ts';

export interface WorkerOptions {
  readonly ledger: Ledger;
  readonly config: Config;
  /** Unique per worker process (leases are owned). */
  readonly owner?: string;
  /** How long a claimed delivery is ours before another worker may treat it as ambiguous (ms). */
  readonly leaseMs?: number;
  /** Idle wait between claim rounds (ms). */
  readonly pollMs?: number;
  readonly now?: () => Date;
  readonly random?: () => number;
  /** Called after every recorded attempt (metrics). */
  readonly onAttempt?: (destination: string, outcome: string, receivedAt: Date) => void;
  /** Where the senders' own events go (e.g. an MLLP ACK for another MSH-10): ids and codes only. */
  readonly senderLog?: SenderLog;
  /** Ids, codes and durations only. */
  readonly log?: (e: {
    event: 'delivery.attempt';
    deliveryId: number;
    destination: string;
    outcome: string;
    /** The stable code of a failed attempt (HTTP status class, ACK code, transport error): never content. */
    errorCode?: string;
    ms: number;
  }) => void;
}

/** The longest lease, ms: a crashed worker's deliveries are settled within about this (R1: visibility + 60 s). */
export const MAX_LEASE_MS = 30_000;

/**
 * How long a claim is ours before it must be renewed. The worker renews the leases of its sends in flight every
 * third of this (`extendLeases`), so a lease never runs out under a live send however long it takes (another
 * worker would then read back and resend concurrently), and a crashed worker's deliveries are settled within one
 * lease. At most {@link MAX_LEASE_MS}; shorter where the destination's own timeouts bound a send more tightly
 * (FHIR: token, reference lookups, read-back and the write, each bounded by `timeoutMs`; MLLP: one connection,
 * sends queued behind each other).
 */
export function leaseMsFor(d: DestinationConfig): number {
  const margin = 5_000;
  const bound =
    d.type === 'fhir'
      ? 4 * d.timeoutMs + margin
      : d.type === 'mllp'
        ? d.concurrency * (DEFAULT_CONNECT_TIMEOUT_MS + d.ackTimeoutMs) + margin
        : MAX_LEASE_MS;
  return Math.min(MAX_LEASE_MS, bound);
}

/** A finished send, before it is recorded. */
interface Attempt {
  readonly delivery: ClaimedDelivery;
  readonly result: AttemptResult & {
    readonly outcome: 'delivered' | 'rejected' | 'retry' | 'ambiguous' | 'failed';
    /** The destination's Retry-After, for the gate (not recorded). */
    readonly retryAfterMs?: number;
  };
}

/** Consecutive failed sends after which a destination is probed one send at a time. */
export const PROBE_AFTER_FAILURES = 3;
/** The probe interval's bounds, ms: at most one send a second to a failing endpoint, at least one in 30 s. */
const PROBE_MIN_MS = 1_000;
const PROBE_MAX_MS = 30_000;

/**
 * What one worker knows of a destination's endpoint, to spare it (reliability-scenarios R12, R13): after a
 * Retry-After nothing is sent to it until that time has passed, whichever delivery it came with; after
 * {@link PROBE_AFTER_FAILURES} failed sends in a row (retry, ambiguous) it gets one send at a time, the next no
 * sooner than a backoff (1 s at least, 30 s at most) after the last, until one succeeds. Deliveries not sent
 * meanwhile stay due and spend none of their retry budget, so an outage longer than the budget's waits does not
 * fail them.
 */
export class DestinationGate {
  #pausedUntil = 0;
  #failures = 0;
  readonly #policy: BackoffPolicy;
  readonly #random: (() => number) | undefined;

  constructor(policy: BackoffPolicy, random?: () => number) {
    this.#policy = policy;
    this.#random = random;
  }

  /** Learns from a finished send. */
  observe(
    r: { readonly outcome: string; readonly retryAfterMs?: number; readonly startedAt: Date },
    now: number,
  ): void {
    if (r.retryAfterMs !== undefined)
      this.#pausedUntil = Math.max(this.#pausedUntil, r.startedAt.getTime() + r.retryAfterMs);
    if (r.outcome === 'delivered' || r.outcome === 'rejected') {
      // A definite answer: the endpoint works.
      this.#failures = 0;
      return;
    }
    this.#failures++;
    if (this.#failures >= PROBE_AFTER_FAILURES) {
      const backoff = backoffDelayMs(this.#failures - PROBE_AFTER_FAILURES, this.#policy, this.#random);
      this.#pausedUntil = Math.max(
        this.#pausedUntil,
        now + Math.min(PROBE_MAX_MS, Math.max(PROBE_MIN_MS, backoff)),
      );
    }
  }

  /** How many deliveries may be claimed now, with `inflight` sends under way. */
  slots(concurrency: number, inflight: number, now: number): number {
    if (now < this.#pausedUntil) return 0;
    if (this.#failures >= PROBE_AFTER_FAILURES) return inflight === 0 ? 1 : 0;
    return Math.max(0, concurrency - inflight);
  }

  /** While held back, how long until the gate opens, ms. */
  waitMs(now: number): number | undefined {
    return now < this.#pausedUntil ? this.#pausedUntil - now : undefined;
  }
}

export class DeliveryWorker {
  readonly #o: WorkerOptions;
  readonly #owner: string;
  readonly #senders = new Map<string, { config: DestinationConfig; sender: Sender }>();
  #running = false;
  #loops: Promise<void> | undefined;
  readonly #wakers = new Set<() => void>();

  constructor(options: WorkerOptions) {
    this.#o = options;
    this.#owner = options.owner ?? `worker-${process.pid}-${randomUUID().slice(0, 8)}`;
    for (const d of options.config.destinations)
      this.#senders.set(d.id, { config: d, sender: senderFor(d, options.senderLog) });
  }

  /** One claim-and-send round over every destination; resolves with the number of attempts made. */
  async runOnce(): Promise<number> {
    const rounds = await Promise.all([...this.#senders.values()].map((s) => this.#round(s.config, s.sender)));
    return rounds.reduce((a, b) => a + b, 0);
  }

  async #round(config: DestinationConfig, sender: Sender): Promise<number> {
    const claimed = await this.#o.ledger.claimDue(config.id, this.#claimOptions(config));
    const attempts = await Promise.all(claimed.map((d) => this.#send(config, sender, d)));
    await this.#record(config, attempts);
    return claimed.length;
  }

  #claimOptions(config: DestinationConfig, limit = config.concurrency) {
    return {
      limit,
      owner: this.#owner,
      leaseMs: this.#o.leaseMs ?? leaseMsFor(config),
      concurrency: config.concurrency,
      now: this.#o.now?.() ?? new Date(),
    };
  }

  /**
   * One destination's loop. Sends run side by side up to the destination's concurrency, and a finished send
   * frees its slot at once: the attempts finished so far are recorded and the free slots claimed again in one
   * transaction, so a send that hangs until its timeout holds up only its own note, never the others (no
   * head-of-line blocking). Idle, the loop waits for `pollMs`, an intake commit in this process (`notify`) or a
   * send finishing. Once stopped it claims nothing more, but deliveries it already holds are sent and recorded.
   * The destination's {@link DestinationGate} may hold claims back: until a Retry-After has passed, and while the
   * endpoint keeps failing (one probe at a time).
   *
   * Fair across workers: a claim under the destination's concurrency limit takes at most a fair share of it
   * (the ledger's claimDue): with n active owners (holding a live lease there or seen claiming there in the
   * last 5 s), `floor(concurrency / n)` while another one holds fewer than that, else `ceil(concurrency / n)`,
   * minus the leases it holds. A worker alone keeps the whole limit; when another worker's claim found the slots
   * full, the next recorded round re-claims only its share and the other worker takes the rest at its next
   * poll. See docs/durability.md.
   */
  async #loop(config: DestinationConfig, sender: Sender): Promise<void> {
    const gate = new DestinationGate(config.retry, this.#o.random);
    const inflight = new Set<Promise<void>>();
    // The leases of sends in flight are renewed while they last (see leaseMsFor).
    const leased = new Set<number>();
    const leaseMs = this.#o.leaseMs ?? leaseMsFor(config);
    const renewal = setInterval(
      () => {
        if (leased.size > 0)
          this.#o.ledger.extendLeases([...leased], this.#owner, leaseMs).catch(() => undefined);
      },
      Math.max(100, Math.floor(leaseMs / 3)),
    );
    renewal.unref();
    let finished: Attempt[] = [];
    let signal: (() => void) | undefined;
    const launch = (d: ClaimedDelivery) => {
      leased.add(d.id);
      // Senders report every outcome as a result; should one throw anyway, its lease runs out and the delivery
      // is settled as ambiguous (read back before any resend).
      const p: Promise<void> = this.#send(config, sender, d)
        .then(
          (a) => {
            finished.push(a);
            gate.observe(a.result, Date.now());
          },
          // Left to its lease: no longer renewed, it runs out and the delivery is settled as ambiguous.
          () => void leased.delete(d.id),
        )
        .finally(() => {
          inflight.delete(p);
          signal?.();
        });
      inflight.add(p);
    };
    while (this.#running || inflight.size > 0 || finished.length > 0) {
      const slots = this.#running ? gate.slots(config.concurrency, inflight.size, Date.now()) : 0;
      let claimed: ClaimedDelivery[] = [];
      if (finished.length > 0) {
        const batch = finished;
        finished = [];
        claimed = await this.#record(config, batch, slots > 0, slots).catch(() => []);
        // Recorded (or left to their leases when the ledger failed): no longer renewed.
        for (const a of batch) leased.delete(a.delivery.id);
      } else if (slots > 0) {
        claimed = await this.#o.ledger.claimDue(config.id, this.#claimOptions(config, slots)).catch(() => []);
      }
      for (const d of claimed) launch(d);
      if (finished.length > 0 || (!this.#running && inflight.size === 0)) continue;
      // Wait for a send to finish, new work (notify), the gate to open, or the next poll.
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#wakers.delete(done);
          signal = undefined;
          resolve();
        };
        signal = done;
        const timer = setTimeout(done, gate.waitMs(Date.now()) ?? this.#o.pollMs ?? 250);
        if (this.#running && inflight.size < config.concurrency) this.#wakers.add(done);
      });
    }
    clearInterval(renewal);
  }

  /** Sends one claimed delivery and decides what to record (retry schedule, retry budget). */
  async #send(config: DestinationConfig, sender: Sender, d: ClaimedDelivery): Promise<Attempt> {
    const startedAt = this.#o.now?.() ?? new Date();
    const t0 = performance.now();
    const r = await sender.send(d);
    if (r.outcome === 'delivered') fault('after-ehr-2xx-before-record');
    const durationMs = Math.round(performance.now() - t0);
    const attempt = d.attempts + 1;
    let outcome: 'delivered' | 'rejected' | 'retry' | 'ambiguous' | 'failed' = r.outcome;
    let nextAttemptAt: Date | undefined;
    // A transient failure waits out a backoff (never less than a Retry-After); so does an ambiguous send, whose
    // read-back or resend with the same key comes later, not at once. Both spend the retry budget: past it the
    // delivery is failed, for an operator (an ambiguous one may have landed: the read-back of a replay settles it).
    if (r.outcome === 'retry' || r.outcome === 'ambiguous') {
      if (attempt >= config.retry.maxAttempts) outcome = 'failed';
      else {
        const wait = Math.max(backoffDelayMs(attempt - 1, config.retry, this.#o.random), r.retryAfterMs ?? 0);
        nextAttemptAt = new Date(startedAt.getTime() + wait);
      }
    }
    return {
      delivery: d,
      result: {
        outcome,
        startedAt,
        durationMs,
        ...(r.httpStatus !== undefined ? { httpStatus: r.httpStatus } : {}),
        ...(r.ackCode ? { ackCode: r.ackCode } : {}),
        ...(r.errorCode ? { errorCode: r.errorCode } : {}),
        ...(r.receipt ? { receipt: r.receipt } : {}),
        ...(r.sentPayloadSha256 ? { sentPayloadSha256: r.sentPayloadSha256 } : {}),
        ...(nextAttemptAt ? { nextAttemptAt } : {}),
        ...(r.retryAfterMs !== undefined ? { retryAfterMs: r.retryAfterMs } : {}),
      },
    };
  }

  /**
   * Records a round's attempts in one transaction (one commit and one audit append for the round). A lost lease
   * refuses only its own item; a batch the database failed is recorded item by item, and the first database
   * error is thrown after the others were tried.
   */
  async #record(
    config: DestinationConfig,
    attempts: readonly Attempt[],
    claimNext = false,
    claimLimit = config.concurrency,
  ): Promise<ClaimedDelivery[]> {
    if (attempts.length === 0) return [];
    const ledger = this.#o.ledger;
    const items = attempts.map((a) => ({ deliveryId: a.delivery.id, owner: this.#owner, result: a.result }));
    let recorded: boolean[];
    let claimed: ClaimedDelivery[] = [];
    let failure: unknown;
    try {
      if (claimNext) {
        const r = await ledger.recordAttemptsAndClaim(
          items,
          config.id,
          this.#claimOptions(config, claimLimit),
        );
        recorded = r.recorded.map((x) => x.ok);
        claimed = r.claimed;
      } else recorded = (await ledger.recordAttempts(items)).map((r) => r.ok);
    } catch {
      recorded = [];
      for (const a of attempts) {
        recorded.push(
          await ledger.recordAttempt(a.delivery.id, this.#owner, a.result).then(
            () => true,
            (e: unknown) => {
              if (!(e instanceof ScribeError && e.code === 'LEDGER_LEASE_LOST')) failure ??= e;
              return false;
            },
          ),
        );
      }
    }
    attempts.forEach((a, i) => {
      if (!recorded[i]) return;
      this.#o.onAttempt?.(config.id, a.result.outcome, a.delivery.receivedAt);
      this.#o.log?.({
        event: 'delivery.attempt',
        deliveryId: a.delivery.id,
        destination: config.id,
        outcome: a.result.outcome,
        ...(a.result.errorCode ? { errorCode: a.result.errorCode } : {}),
        ms: a.result.durationMs,
      });
    });
    if (failure !== undefined) throw failure;
    return claimed;
  }

  /** Work was just recorded in this process (an intake commit): idle loops claim now instead of at their next poll. */
  notify(): void {
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    // One loop per destination: a slow or unreachable destination never holds up another's deliveries.
    const loops = [...this.#senders.values()].map(({ config, sender }) => this.#loop(config, sender));
    this.#loops = Promise.all(loops).then(() => undefined);
  }

  /** Stops claiming; in-flight sends finish and are recorded. */
  async stop(): Promise<void> {
    this.#running = false;
    this.notify();
    await this.#loops;
    await Promise.all([...this.#senders.values()].map((s) => s.sender.close()));
  }
}
