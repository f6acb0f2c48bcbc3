/**
 * Delivery workers: per destination, claim due deliveries from the ledger (`FOR UPDATE SKIP LOCKED`, per-note
 * revision order, the destination's concurrency limit, a lease), send each through the destination's sender and
 * record the attempt — delivered, rejected, retried with exponential backoff and jitter (never earlier than a
 * Retry-After), failed when the retry budget is spent, or ambiguous (settled by read-back when next claimed).
 * Stateless: any number of workers on one PostgreSQL share the work. See docs/durability.md.
 */
import { randomUUID } from 'node:crypto';
import type { Config, DestinationConfig } from '../config/index.ts';
import { backoffDelayMs } from '../deliver/backoff.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../deliver/mllp.ts';
import { ScribeError } from '../errors.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { AttemptResult, ClaimedDelivery } from '../ledger/types.ts';
import { fault } from './faults.ts';
import { type Sender, senderFor } from './senders.ts';

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

/**
 * How long a claim is ours: longer than the slowest send the destination's own timeouts allow, so a lease never
 * runs out while a send is still in flight (another worker would then read back and resend concurrently), and
 * no longer than that, so a crashed worker's deliveries are settled promptly. FHIR: token, reference lookups,
 * read-back and the write, each bounded by `timeoutMs`; MLLP: one connection, sends queued behind each other.
 */
export function leaseMsFor(d: DestinationConfig): number {
  const margin = 5_000;
  if (d.type === 'fhir') return 4 * d.timeoutMs + margin;
  if (d.type === 'mllp') return d.concurrency * (DEFAULT_CONNECT_TIMEOUT_MS + d.ackTimeoutMs) + margin;
  return 60_000;
}

/** A finished send, before it is recorded. */
interface Attempt {
  readonly delivery: ClaimedDelivery;
  readonly result: AttemptResult & {
    readonly outcome: 'delivered' | 'rejected' | 'retry' | 'ambiguous' | 'failed';
  };
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
    for (const d of options.config.destinations) this.#senders.set(d.id, { config: d, sender: senderFor(d) });
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

  #claimOptions(config: DestinationConfig) {
    return {
      limit: config.concurrency,
      owner: this.#owner,
      leaseMs: this.#o.leaseMs ?? leaseMsFor(config),
      concurrency: config.concurrency,
      now: this.#o.now?.() ?? new Date(),
    };
  }

  /**
   * One destination's loop: claim, send, then record the round's attempts and claim the next round in one
   * transaction (so a busy destination costs one transaction per round). Idle, it waits for `pollMs` or an
   * intake commit in this process (`notify`). Once stopped it claims nothing more, but deliveries it already
   * holds are sent and recorded.
   *
   * Fair across workers: a claim under the destination's concurrency limit takes at most a fair share of it
   * (the ledger's claimDue): with n active owners (holding a live lease there or seen claiming there in the
   * last 5 s), `floor(concurrency / n)` while another one holds fewer than that, else `ceil(concurrency / n)`,
   * minus the leases it holds. A worker alone keeps the whole limit and its one-transaction rounds; when
   * another worker's claim found the slots full, the next recorded round re-claims only its share and the other
   * worker takes the rest at its next poll. See docs/durability.md.
   */
  async #loop(config: DestinationConfig, sender: Sender): Promise<void> {
    let next: ClaimedDelivery[] = [];
    while (this.#running || next.length > 0) {
      const claimed =
        next.length > 0
          ? next
          : await this.#o.ledger.claimDue(config.id, this.#claimOptions(config)).catch(() => []);
      next = [];
      if (claimed.length === 0) {
        if (this.#running) await this.#idle();
        continue;
      }
      // Senders report every outcome as a result; should one throw anyway, its leases run out and the
      // deliveries are settled as ambiguous (read back before any resend).
      const attempts = await Promise.all(claimed.map((d) => this.#send(config, sender, d))).catch(() => []);
      next = await this.#record(config, attempts, this.#running).catch(() => []);
    }
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
    if (r.outcome === 'retry') {
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
  ): Promise<ClaimedDelivery[]> {
    if (attempts.length === 0) return [];
    const ledger = this.#o.ledger;
    const items = attempts.map((a) => ({ deliveryId: a.delivery.id, owner: this.#owner, result: a.result }));
    let recorded: boolean[];
    let claimed: ClaimedDelivery[] = [];
    let failure: unknown;
    try {
      if (claimNext) {
        const r = await ledger.recordAttemptsAndClaim(items, config.id, this.#claimOptions(config));
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

  #idle(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, this.#o.pollMs ?? 250);
      this.#wakers.add(done);
    });
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
