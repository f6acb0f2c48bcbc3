/**
 * Prometheus metrics (prom-client): backlog by state and destination and the age of the oldest open delivery,
 * read from the ledger at scrape time (so every worker of a fleet reports the same shared truth); deliveries by
 * destination and outcome and the intake → delivered latency, counted by this process.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Ledger } from '../ledger/ledger.ts';

export class Metrics {
  readonly registry = new Registry();
  readonly #deliveries: Counter<'destination' | 'outcome'>;
  readonly #latency: Histogram<'destination'>;
  readonly #intake: Counter<'source' | 'outcome'>;
  readonly #mappingReloads: Counter<'destination' | 'outcome'>;

  constructor(ledger: Ledger) {
    const registry = this.registry;
    new Gauge({
      name: 'scribe_bridge_backlog',
      help: 'Deliveries not yet delivered, by state and destination (from the ledger)',
      labelNames: ['destination', 'state'],
      registers: [registry],
      async collect() {
        this.reset();
        const b = await ledger.backlog();
        for (const [destination, states] of Object.entries(b.byDestination)) {
          for (const [state, n] of Object.entries(states))
            if (state !== 'delivered') this.set({ destination, state }, n ?? 0);
        }
      },
    });
    new Gauge({
      name: 'scribe_bridge_waiting_revisions',
      help: 'Revisions waiting for their predecessor',
      registers: [registry],
      async collect() {
        this.set((await ledger.backlog()).waitingRevisions);
      },
    });
    new Gauge({
      name: 'scribe_bridge_oldest_pending_age_seconds',
      help: 'Age of the oldest delivery not yet settled, seconds (0 when none)',
      registers: [registry],
      async collect() {
        this.set(((await ledger.oldestPendingAge()) ?? 0) / 1000);
      },
    });
    this.#deliveries = new Counter({
      name: 'scribe_bridge_delivery_attempts_total',
      help: 'Delivery attempts by destination and outcome',
      labelNames: ['destination', 'outcome'],
      registers: [registry],
    });
    this.#latency = new Histogram({
      name: 'scribe_bridge_intake_to_delivered_seconds',
      help: 'From the ledger receiving a revision to its delivery being acknowledged, seconds',
      labelNames: ['destination'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600],
      registers: [registry],
    });
    this.#intake = new Counter({
      name: 'scribe_bridge_intake_total',
      help: 'Envelopes received, by source and outcome (accepted, waiting, duplicate, conflict, rejected, or an error code)',
      labelNames: ['source', 'outcome'],
      registers: [registry],
    });
    this.#mappingReloads = new Counter({
      name: 'scribe_bridge_mapping_reloads_total',
      help: 'Mapping file changes seen while running, by destination and outcome (reloaded, or failed: the previous mapping is kept)',
      labelNames: ['destination', 'outcome'],
      registers: [registry],
    });
  }

  attempt(destination: string, outcome: string, receivedAt: Date): void {
    this.#deliveries.inc({ destination, outcome });
    if (outcome === 'delivered')
      this.#latency.observe({ destination }, (Date.now() - receivedAt.getTime()) / 1000);
  }

  /** A mapping file change: activated (`reloaded`) or refused, the previous mapping kept (`failed`). */
  mappingReload(destination: string, outcome: 'reloaded' | 'failed'): void {
    this.#mappingReloads.inc({ destination, outcome });
  }

  intake(source: string, outcome: string): void {
    this.#intake.inc({ source, outcome });
  }
}
