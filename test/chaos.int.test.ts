/**
 * Chaos (reliability-scenarios R2 and R5 together): two `scribe-bridge serve` processes share one PostgreSQL
 * database and one queue while notes arrive, and one of them, chosen at random, is killed with SIGKILL at a
 * random moment and started again — over and over. On PGlite (the embedded store: one process, its data
 * directory locked) the one process is killed and restarted the same way, so its WebAssembly PostgreSQL must
 * come back from a kill at any moment with its files intact. Unlike crash-safety.int.test.ts (one kill at each named
 * fault point), a kill lands wherever that process happens to be: mid-transaction, mid-claim, mid-send, between
 * an SQS receive and its delete, during a visibility heartbeat. Then the kills stop and everything settles.
 *
 * Promise checked: every (note, revision) exactly once at each sink — one DocumentReference per identifier (a
 * create whose answer was lost is read back, never repeated beyond the lost answers the ledger recorded), one
 * MSH-10 per TXA-12 at the MLLP receiver — the queue and its dead-letter queue empty, each revision recorded
 * once, every delivery delivered, and the hash-chained audit log intact.
 *
 * The normal suite runs a short version; `npm run chaos` a long one (SCRIBE_BRIDGE_CHAOS=1). The kill schedule
 * comes from a seed printed at the start; SCRIBE_BRIDGE_CHAOS_SEED=<n> replays it.
 */

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../src/ledger/audit-verify.ts';
import { type Db, openLedger } from '../src/ledger/db.ts';
import {
  type Database,
  deliveredOverHttp,
  expectFhirCreatedOnce,
  expectMllpOncePerDocument,
  noteKey,
  type ServeProcess,
  type ServiceStack,
  smallNote,
  startServe,
  startServiceStack,
  tempDir,
  until,
} from './support/service-harness.ts';

const LONG = process.env['SCRIBE_BRIDGE_CHAOS'] === '1';
const NOTES = LONG ? 400 : 40;
const AMENDMENTS = NOTES / 4;
const TOTAL = NOTES + AMENDMENTS;
const KILLS = LONG ? 30 : 4;
const SEED = Number(process.env['SCRIBE_BRIDGE_CHAOS_SEED'] ?? Date.now() % 2 ** 31);

const tmp = tempDir('sb-chaos-');
const stacks: ServiceStack<Database | undefined>[] = [];
const workers: ServeProcess[] = [];

afterAll(async () => {
  for (const w of workers)
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  for (const s of stacks) await s.close();
  tmp.remove();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `pg`-shaped reads over the ledger's own driver layer, for the shared assertions. */
const pgShaped = (db: Db): Pick<Database, 'query'> =>
  ({
    query: async (sql: string, params?: unknown[]) => {
      const rows = await db.query(sql, params);
      return { rows, rowCount: rows.length };
    },
  }) as unknown as Pick<Database, 'query'>;

describe.each([
  { store: 'postgres', processes: 2 },
  { store: 'pglite', processes: 1 },
] as const)(
  'chaos on $store: random SIGKILLs while notes flow ($processes process(es))',
  ({ store, processes }) => {
    it(
      `delivers every (note, revision) exactly once through ${KILLS} kills (${TOTAL} messages)`,
      async () => {
        const seed = SEED + (store === 'pglite' ? 1 : 0);
        console.log(
          `chaos on ${store}: seed ${seed} (SCRIBE_BRIDGE_CHAOS_SEED=${SEED} replays the kill schedules)`,
        );
        const rng = xoroshiro128plus(seed);
        const stack = await startServiceStack(store === 'postgres' ? 'chaos' : undefined, {
          queue: `chaos-${store}`,
        });
        stacks.push(stack);
        const { db, queue, fhir, mllp } = stack;
        const dir = join(tmp.dir, store);
        mkdirSync(dir);
        const { key, keysFile } = await noteKey(dir);
        // Short timeouts, so a killed process's leases (4 × FHIR timeout + 5 s; MLLP connect + ACK timeout + 5 s)
        // and its in-flight SQS messages (visibility timeout) come back within seconds.
        const config = stack.writeConfig(dir, keysFile, {
          visibilityTimeoutSeconds: 6,
          fhirTimeoutMs: 1_500,
          mllpAckTimeoutMs: 1_500,
        });
        const slots: ServeProcess[] = [];
        for (let i = 0; i < processes; i++) {
          const w = startServe(config);
          workers.push(w);
          slots.push(w);
          await w.url;
        }

        const ids = Array.from({ length: NOTES }, (_, i) => `chaos-${String(i).padStart(4, '0')}`);
        const bodies: string[] = [];
        for (const id of ids) bodies.push(await smallNote(key, id, 1));
        for (const id of ids.slice(0, AMENDMENTS)) bodies.push(await smallNote(key, id, 2));

        // Notes arrive in waves, one before each kill; a kill comes 20 to 600 ms after its wave, while it is worked on.
        const wave = Math.ceil(bodies.length / KILLS);
        for (let k = 0; k < KILLS; k++) {
          await queue.send(bodies.slice(k * wave, (k + 1) * wave));
          await sleep(uniformInt(rng, 20, 600));
          const i = uniformInt(rng, 0, processes - 1);
          const victim = slots[i]!;
          victim.child.kill('SIGKILL');
          expect((await victim.exited).signal).toBe('SIGKILL');
          const next = startServe(config);
          workers.push(next);
          slots[i] = next;
          await next.url;
        }

        const url = await slots[0]!.url;
        await until(
          async () => (await deliveredOverHttp(url, ids)) === 2 * TOTAL && (await queue.depth()) === 0,
          240_000,
          'every delivery delivered and the queue drained after the kills',
        );
        for (const w of slots) expect((await w.stop()).code).toBe(0);

        const ledgerDb = await openLedger(db ? db.url : `pglite://${join(dir, 'data')}`);
        try {
          const rows = pgShaped(ledgerDb);
          // What the kills interrupted (random, so reported rather than asserted): sends whose lease ran out, and
          // SQS messages received again after their revision was committed.
          const { rows: hits } = await rows.query<{ expired: number; redelivered: number }>(
            `select (select count(*)::int from delivery_attempts where outcome = 'lease-expired') as expired,
                  (select count(*)::int from audit_log where action = 'revision.duplicate-suppressed') as redelivered`,
          );
          console.log(
            `chaos on ${store}: the kills interrupted ${hits[0]!.expired} sends and ${hits[0]!.redelivered} committed intakes`,
          );

          // Ledger: each revision once, every delivery delivered, nothing parked, the audit chain unbroken.
          const revisions = await rows.query<{ key: string }>(
            `select note_id || '-r' || revision as key from note_revisions order by 1`,
          );
          const expected = [
            ...ids.map((id) => `${id}-r1`),
            ...ids.slice(0, AMENDMENTS).map((id) => `${id}-r2`),
          ].sort();
          expect(revisions.rows.map((r) => r.key)).toEqual(expected);
          const states = await rows.query<{ state: string; n: number }>(
            `select state, count(*)::int as n from deliveries group by state`,
          );
          expect(states.rows).toEqual([{ state: 'delivered', n: 2 * TOTAL }]);
          expect(await queue.depth(queue.dlqUrl)).toBe(0);
          expect(await verifyAuditChain(ledgerDb)).toMatchObject({ ok: true });

          // FHIR: one DocumentReference per (note, revision); creates beyond that only after answers were lost.
          await expectFhirCreatedOnce(fhir, rows, expected);
          // MLLP: one MSH-10 per TXA-12; resends only after a lost answer, with the same MSH-10.
          await expectMllpOncePerDocument(mllp, rows);
        } finally {
          await ledgerDb.close();
        }
      },
      LONG ? 1_800_000 : 300_000,
    );
  },
);
