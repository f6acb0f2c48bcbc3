/**
 * Crash safety by SIGKILL (reliability-scenarios R2; docs/durability.md § Crash points): a real
 * `scribe-bridge serve` process takes signed notes from a fauxqs queue and delivers them to a FHIR server and an
 * MLLP receiver, is killed with SIGKILL at one point, then restarted without the fault. Promise checked for each
 * point: every (note, revision) is delivered exactly once per sink — one DocumentReference per identifier and no
 * second create (an ambiguous FHIR send is settled by read-back), one MSH-10 per TXA-12 at the MLLP receiver
 * (a resend after a lost answer carries the same MSH-10, which the receiver de-duplicates) — the queue is
 * drained, and the ledger shows every delivery delivered, each revision recorded once.
 *
 * Points: (a) after receive, before the intake commit; (b) after the commit, before the SQS delete; (c) after
 * the EHR's 2xx / AA, before it is recorded; (d) while the FHIR server and the MLLP receiver hold the request
 * and give no answer (killed from outside). (a)–(c) use SCRIBE_BRIDGE_FAULT (src/service/faults.ts).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Ledger } from '../src/ledger/ledger.ts';
import {
  deliveredOverHttp,
  fhirCounts,
  mllpByDocument,
  noteKey,
  smallNote,
  startServe,
  startServiceStack,
  tempDir,
  until,
} from './support/service-harness.ts';

const tmp = tempDir('sb-crash-');

afterAll(() => {
  tmp.remove();
});

type Point = 'after-receive-before-commit' | 'after-commit-before-delete' | 'after-ehr-2xx-before-record';

interface Scenario {
  readonly name: string;
  readonly fault?: Point;
  /** For the no-answer case: the sinks hold the first request; the test kills the process then. */
  readonly hold?: boolean;
  /** The embedded store instead of PostgreSQL: its lock file and its files must survive the kill too. */
  readonly pglite?: boolean;
}

type Rows = <T>(sql: string, params?: unknown[]) => Promise<T[]>;

async function runScenario(s: Scenario): Promise<void> {
  const tag = s.name;
  const stack = await startServiceStack(s.pglite ? undefined : `crash_${tag}`, {
    queue: `q-${tag}`,
    // No-answer case: the first message gets nothing back (the receiver stays silent).
    mllp: { script: (_m, i) => (s.hold && i === 0 ? [] : [{ ack: 'AA' }]) },
  });
  const { db, queue, fhir, mllp } = stack;
  if (s.hold) fhir.fault({ kind: 'delay', ms: 4_000, match: { method: 'POST' } });
  let ledger: Ledger | undefined;
  try {
    const { key, keysFile } = await noteKey(tmp.dir);
    // Three notes, one of them with an amendment: 4 (note, revision) pairs, 8 deliveries.
    const notes = [`${tag}-1`, `${tag}-2`, `${tag}-3`];
    const bodies = [
      ...(await Promise.all(notes.map((n) => smallNote(key, n, 1)))),
      await smallNote(key, `${tag}-1`, 2),
    ];
    const expected = [...notes.map((n) => `${n}-r1`), `${tag}-1-r2`].sort();
    await queue.send(bodies);
    const dir = join(tmp.dir, tag);
    mkdirSync(dir);
    const config = stack.writeConfig(dir, keysFile, { visibilityTimeoutSeconds: 3 });

    // First run: dies at the point.
    const first = startServe(config, s.fault ? { SCRIBE_BRIDGE_FAULT: s.fault } : {});
    if (s.hold) {
      await until(
        async () => fhir.count('POST', 'DocumentReference') > 0 && mllp.received.length > 0,
        60_000,
        'both sinks to hold a request',
      );
      first.child.kill('SIGKILL');
    }
    const died = await first.exited;
    expect(died.signal).toBe('SIGKILL');
    // What the kill left behind is the state the point names.
    const recordedBefore = db
      ? (await db.query<{ n: number }>('select count(*)::int as n from note_revisions')).rows[0]!.n
      : undefined;
    if (s.fault === 'after-receive-before-commit') expect(recordedBefore).toBe(0);
    if (s.fault === 'after-commit-before-delete' && db) expect(recordedBefore).toBeGreaterThan(0);
    if (s.fault === 'after-commit-before-delete') expect(await queue.depth()).toBe(bodies.length);
    if (s.fault === 'after-ehr-2xx-before-record')
      expect((await fhirCounts(fhir)).size + mllp.received.length).toBeGreaterThan(0);

    // Second run, no fault: everything settles.
    const second = startServe(config);
    const url = await second.url;
    // Settled: read through the operator API (PGlite is held by the service until it stops).
    await until(
      async () => (await deliveredOverHttp(url, notes)) === 8 && (await queue.depth()) === 0,
      90_000,
      `all 8 deliveries of ${tag} delivered and the queue drained`,
    );
    const stopped = await second.stop();
    expect(stopped.code).toBe(0);
    ledger = db ? undefined : await Ledger.open(`pglite://${join(dir, 'data')}`);
    const rows: Rows = async (sql, params) =>
      db ? (await db.query(sql, params)).rows : await ledger!.db.query(sql, params as never);

    // Ledger: each revision recorded once, every delivery delivered, one delivered audit per delivery.
    const revs = await rows<{ note_id: string; revision: number }>(
      `select note_id, revision::int from note_revisions where note_id like $1 order by 1, 2`,
      [`${tag}-%`],
    );
    expect(revs.map((r) => `${r.note_id}-r${r.revision}`)).toEqual(expected);
    const states = await rows<{ state: string; n: number }>(
      `select state, count(*)::int as n from deliveries where note_id like $1 group by state`,
      [`${tag}-%`],
    );
    expect(states).toEqual([{ state: 'delivered', n: 8 }]);
    const audits = await rows<{ n: number }>(
      `select count(*)::int as n from audit_log where note_id like $1 and action = 'delivery.delivered'`,
      [`${tag}-%`],
    );
    expect(audits[0]!.n).toBe(8);

    // FHIR: exactly one DocumentReference per (note, revision), and exactly one create request for each.
    const counts = await fhirCounts(fhir);
    expect([...counts.keys()].sort()).toEqual(expected);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(fhir.count('POST', 'DocumentReference')).toBe(4);

    // MLLP: one document per TXA-12, each received under one MSH-10 only.
    const docNumbers = await rows<{ doc: string }>(
      `select r.identifiers->0->>'documentNumber' as doc from renderings r join note_revisions v on v.id = r.revision_id
       where v.note_id like $1 and r.destination = 'ehr-mdm'`,
      [`${tag}-%`],
    );
    const byDoc = mllpByDocument(mllp);
    expect([...byDoc.keys()].sort()).toEqual(docNumbers.map((r) => r.doc).sort());
    for (const v of byDoc.values()) expect(v.controlIds.size).toBe(1);

    if (s.fault === 'after-commit-before-delete') {
      // The message came back after the crash and was recognised as a duplicate (audited), not re-recorded.
      const dup = await rows<{ n: number }>(
        `select count(*)::int as n from audit_log where note_id like $1 and action = 'revision.duplicate-suppressed'`,
        [`${tag}-%`],
      );
      expect(dup[0]!.n).toBeGreaterThanOrEqual(1);
    }
    if (s.fault === 'after-ehr-2xx-before-record' || s.hold) {
      // The send in flight at the crash became ambiguous (lease expired) and was settled by read-back or by a
      // resend with the same MSH-10.
      const expired = await rows<{ n: number }>(
        `select count(*)::int as n from delivery_attempts a join deliveries d on d.id = a.delivery_id
         where d.note_id like $1 and a.outcome = 'lease-expired'`,
        [`${tag}-%`],
      );
      expect(expired[0]!.n).toBeGreaterThanOrEqual(1);
    }
    if (s.hold) {
      // The held MDM was resent (same MSH-10) and the held FHIR write landed after the kill: read back, not re-created.
      expect(mllp.received.length).toBeGreaterThan(byDoc.size);
      expect(fhir.count('GET', 'DocumentReference')).toBeGreaterThanOrEqual(1);
    }
  } finally {
    await ledger?.close();
    await stack.close();
  }
}

describe.concurrent('crash safety by SIGKILL, then restart', () => {
  it(
    '(a) after receive, before the intake commit',
    () => runScenario({ name: 'a', fault: 'after-receive-before-commit' }),
    150_000,
  );
  it(
    '(b) after the intake commit, before the SQS delete',
    () => runScenario({ name: 'b', fault: 'after-commit-before-delete' }),
    150_000,
  );
  it(
    '(c) after the EHR answered 2xx / AA, before the attempt is recorded',
    () => runScenario({ name: 'c', fault: 'after-ehr-2xx-before-record' }),
    150_000,
  );
  it('(d) during a send that gets no answer', () => runScenario({ name: 'd', hold: true }), 150_000);
  it(
    '(b) on PGlite: the embedded store and its lock survive the kill',
    () => runScenario({ name: 'e', fault: 'after-commit-before-delete', pglite: true }),
    150_000,
  );
});
