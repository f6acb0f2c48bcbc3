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
import type { Ledger } from '../ledger/ledger.ts';
import type { ClaimedDelivery } from '../ledger/types.ts';
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
    ms: number;
  }) => void;
}

export class DeliveryWorker {
  readonly #o: WorkerOptions;
  readonly #owner: string;
  readonly #senders = new Map<string, { config: DestinationConfig; sender: Sender }>();
  #running = false;
  #loop: Promise<void> | undefined;

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
    const now = this.#o.now?.() ?? new Date();
    const claimed = await this.#o.ledger.claimDue(config.id, {
      limit: config.concurrency,
      owner: this.#owner,
      leaseMs: this.#o.leaseMs ?? 60_000,
      concurrency: config.concurrency,
      now,
    });
    await Promise.all(claimed.map((d) => this.#deliver(config, sender, d)));
    return claimed.length;
  }

  async #deliver(config: DestinationConfig, sender: Sender, d: ClaimedDelivery): Promise<void> {
    const startedAt = this.#o.now?.() ?? new Date();
    const t0 = performance.now();
    const r = await sender.send(d);
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
    await this.#o.ledger.recordAttempt(d.id, this.#owner, {
      outcome,
      startedAt,
      durationMs,
      ...(r.httpStatus !== undefined ? { httpStatus: r.httpStatus } : {}),
      ...(r.ackCode ? { ackCode: r.ackCode } : {}),
      ...(r.errorCode ? { errorCode: r.errorCode } : {}),
      ...(r.receipt ? { receipt: r.receipt } : {}),
      ...(r.sentPayloadSha256 ? { sentPayloadSha256: r.sentPayloadSha256 } : {}),
      ...(nextAttemptAt ? { nextAttemptAt } : {}),
    });
    this.#o.onAttempt?.(config.id, outcome, d.receivedAt);
    this.#o.log?.({
      event: 'delivery.attempt',
      deliveryId: d.id,
      destination: config.id,
      outcome,
      ms: durationMs,
    });
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        const n = await this.runOnce().catch(() => 0);
        if (n === 0 && this.#running) await new Promise((r) => setTimeout(r, this.#o.pollMs ?? 250));
      }
    })();
  }

  /** Stops claiming; in-flight sends finish and are recorded. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    await Promise.all([...this.#senders.values()].map((s) => s.sender.close()));
  }
}
