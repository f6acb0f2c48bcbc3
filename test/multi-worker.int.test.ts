/**
 * Three worker processes on one PostgreSQL database and one queue (issue 5 "Must show"; reliability R5's
 * single-writer claim): three real `scribe-bridge serve` processes with the same config take 150 signed messages
 * (120 notes, 30 amendments) from one fauxqs queue and deliver to one FHIR server and one MLLP receiver.
 * Promise checked: every (note, revision) exactly once at each sink, the queue drained, every delivery delivered,
 * and the work spread — each process recorded deliveries (the ledger's attempt owners carry the process id).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
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

const NOTES = 120;
const AMENDMENTS = 30;
const TOTAL = NOTES + AMENDMENTS;

let stack: ServiceStack;
const tmp = tempDir('sb-workers-');
const workers: ServeProcess[] = [];

beforeAll(async () => {
  stack = await startServiceStack('workers');
});

afterAll(async () => {
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  await stack?.close();
  tmp.remove();
});

describe('three worker processes, one PostgreSQL, one queue', () => {
  it('deliver every (note, revision) exactly once at each sink and share the work', async () => {
    const { db, queue, fhir, mllp } = stack;
    const { key, keysFile } = await noteKey(tmp.dir);
    const config = stack.writeConfig(tmp.dir, keysFile, {
      visibilityTimeoutSeconds: 20,
      // The destination's default concurrency, a cap across all workers: while it is saturated each claim takes
      // only a fair share (about concurrency / active workers), so all three processes get slots.
      fhirTimeoutMs: 10_000,
      mllpAckTimeoutMs: 10_000,
      // The default write, conditional create (If-None-Exist).
    });
    // Started one after the other: the first run's migrations are then in place (concurrent runs are safe too).
    for (let i = 0; i < 3; i++) {
      const w = startServe(config);
      workers.push(w);
      await w.url;
    }
    const ids = Array.from({ length: NOTES }, (_, i) => `multi-${String(i).padStart(4, '0')}`);
    const bodies: string[] = [];
    for (const id of ids) bodies.push(await smallNote(key, id, 1));
    for (const id of ids.slice(0, AMENDMENTS)) bodies.push(await smallNote(key, id, 2));
    await queue.send(bodies);

    await until(
      async () => {
        const { rows } = await db.query<{ n: number }>(
          `select count(*)::int as n from deliveries where state = 'delivered'`,
        );
        return rows[0]!.n === 2 * TOTAL && (await queue.depth()) === 0;
      },
      300_000,
      'every delivery delivered and the queue drained',
    );
    for (const w of workers) expect((await w.stop()).code).toBe(0);

    // Ledger: each revision once; every delivery delivered by exactly one recorded 'delivered' attempt.
    expect((await db.query('select 1 from note_revisions')).rowCount).toBe(TOTAL);
    const delivered = await db.query<{ delivery_id: number; owner: string; destination: string }>(
      `select a.delivery_id::int, a.owner, d.destination from delivery_attempts a
       join deliveries d on d.id = a.delivery_id where a.outcome = 'delivered'`,
    );
    expect(delivered.rowCount).toBe(2 * TOTAL);
    expect(new Set(delivered.rows.map((r) => r.delivery_id)).size).toBe(2 * TOTAL);

    // Work spread: every process (its pid is in its lease owner id) delivered some of it.
    const pids = workers.map((w) => w.child.pid!);
    const byPid = new Map<number, number>();
    for (const r of delivered.rows) {
      const pid = Number(/^worker-(\d+)-/.exec(r.owner)?.[1]);
      byPid.set(pid, (byPid.get(pid) ?? 0) + 1);
    }
    expect([...byPid.keys()].sort()).toEqual([...pids].sort());
    for (const pid of pids) expect(byPid.get(pid)).toBeGreaterThan(0);
    // ... including at the FHIR destination, saturated at its default concurrency: claims take a fair share.
    const fhirByPid = new Map<number, number>();
    for (const r of delivered.rows.filter((x) => x.destination === 'ehr-fhir')) {
      const pid = Number(/^worker-(\d+)-/.exec(r.owner)?.[1]);
      fhirByPid.set(pid, (fhirByPid.get(pid) ?? 0) + 1);
    }
    console.log(`FHIR deliveries per process: ${[...fhirByPid.values()].join(', ')}`);
    for (const pid of pids) expect(fhirByPid.get(pid)).toBeGreaterThan(0);

    // FHIR: one DocumentReference per (note, revision); MLLP: one message and one MSH-10 per TXA-12.
    const expected = [...ids.map((id) => `${id}-r1`), ...ids.slice(0, AMENDMENTS).map((id) => `${id}-r2`)];
    await expectFhirCreatedOnce(fhir, db, expected);
    // Resends (only after a lost answer) are bounded by the ambiguous outcomes the ledger recorded.
    await expectMllpOncePerDocument(mllp, db);
  }, 420_000);
});
