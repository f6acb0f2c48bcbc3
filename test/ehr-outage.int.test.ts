/**
 * EHR outages as the delivery workers see them (reliability R12, R13), against the real FHIR server: a 503
 * outage then recovery → delivered, nothing failed or dead-lettered, and the backoff visible in the recorded
 * attempt times (each gap at least the policy's ceiling for that retry, the gaps growing); a 429 with
 * `Retry-After` → the next attempt not before it. (422 + OperationOutcome → rejected after one attempt with its
 * issue code is in service-delivery.int.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/index.ts';
import { backoffCeilingMs } from '../src/deliver/backoff.ts';
import type { Ledger } from '../src/ledger/ledger.ts';
import type { Intake } from '../src/service/intake.ts';
import { DeliveryWorker } from '../src/service/worker.ts';
import { type FhirTestServer, startFhirServer } from './support/fhir-server.ts';
import { startIntake } from './support/intake.ts';
import { noteKey, smallNote, tempDir, until } from './support/service-harness.ts';

const RETRY = { maxAttempts: 10, initialDelayMs: 100, maxDelayMs: 5_000 };
let fhir: FhirTestServer;
let ledger: Ledger;
let config: Config;
let intake: Intake;
let key: Awaited<ReturnType<typeof noteKey>>['key'];
const tmp = tempDir('sb-outage-');

beforeAll(async () => {
  fhir = await startFhirServer();
  const k = await noteKey(tmp.dir);
  key = k.key;
  ({ config, ledger, intake } = await startIntake(
    tmp.dir,
    `store: pglite://./data
tenants:
  - id: riverside-clinic
    reviewKeys: ${k.keysFile}
    destinations: [ehr-fhir]
destinations:
  - id: ehr-fhir
    type: fhir
    baseUrl: ${fhir.baseUrl}
    mapping: us-core-docref
    auth: { type: none }
    timeoutMs: 10000
    retry: { maxAttempts: ${RETRY.maxAttempts}, initialDelayMs: ${RETRY.initialDelayMs}, maxDelayMs: ${RETRY.maxDelayMs} }
`,
  ));
}, 120_000);

afterAll(async () => {
  await ledger?.close();
  await fhir?.close();
  tmp.remove();
});

interface AttemptRow {
  attempt: number;
  at: Date;
  outcome: string;
  http_status: number | null;
  error_code: string | null;
}

async function attemptsOf(noteId: string): Promise<AttemptRow[]> {
  return ledger.db.query<AttemptRow>(
    `select a.attempt, a.at, a.outcome, a.http_status, a.error_code from delivery_attempts a
     join deliveries d on d.id = a.delivery_id where d.note_id = $1 order by a.id`,
    [noteId],
  );
}

async function deliverUntilSettled(noteId: string, random: () => number): Promise<string> {
  const worker = new DeliveryWorker({ ledger, config, random, pollMs: 10 });
  worker.start();
  try {
    return await until(
      async () => {
        const s = await ledger.revisionStatus('riverside-clinic', noteId);
        const state = s?.revisions[0]?.deliveries[0]?.state;
        return state && !['pending', 'sending', 'ambiguous'].includes(state) ? state : undefined;
      },
      60_000,
      `${noteId} settled`,
    );
  } finally {
    await worker.stop();
  }
}

describe('EHR outage', () => {
  it('503 for a while then recovery: delivered once, nothing failed, backoff visible in the attempt times', async () => {
    const outage = 5;
    fhir.fault({ kind: 'status', status: 503, times: outage, match: { method: 'POST' } });
    const noteId = 'outage-503';
    expect((await intake.ingest(new TextEncoder().encode(await smallNote(key, noteId)), 'sqs')).outcome).toBe(
      'accepted',
    );
    // Jitter pinned to its top (random = 1) so each wait is exactly the policy's ceiling for that retry.
    expect(await deliverUntilSettled(noteId, () => 1)).toBe('delivered');

    const rows = await attemptsOf(noteId);
    expect(rows.map((r) => r.outcome)).toEqual([...Array(outage).fill('retry'), 'delivered']);
    expect(rows.slice(0, outage).every((r) => r.http_status === 503)).toBe(true);
    const gaps = rows.slice(1).map((r, i) => r.at.getTime() - rows[i]!.at.getTime());
    gaps.forEach((g, k) => {
      expect(g).toBeGreaterThanOrEqual(backoffCeilingMs(k, RETRY));
    });
    // Exponential: 100, 200 ms, then — the endpoint having failed 3 times in a row — no sooner than the
    // destination's 1 s probe interval, and the delivery's own backoff (800, 1600 ms) beyond it.
    expect(gaps[1]!).toBeGreaterThan(gaps[0]!);
    for (let k = 2; k < gaps.length; k++) expect(gaps[k]!).toBeGreaterThanOrEqual(950);
    expect(gaps.at(-1)!).toBeGreaterThanOrEqual(1_600);
    // Exactly one DocumentReference; nothing failed, nothing dead-lettered.
    expect(
      await fhir.search(
        'DocumentReference',
        `identifier=urn:scribe-bridge:riverside-clinic:note|${noteId}-r1`,
      ),
    ).toHaveLength(1);
    const bad = await ledger.db.query(
      `select 1 from deliveries where state in ('failed', 'rejected') union all
       select 1 from note_revisions where state = 'dead-lettered'`,
    );
    expect(bad).toEqual([]);
  }, 90_000);

  it('503 outage with real jitter: every wait within its ceiling, delivered', async () => {
    fhir.fault({ kind: 'status', status: 503, times: 4, match: { method: 'POST' } });
    const noteId = 'outage-jitter';
    await intake.ingest(new TextEncoder().encode(await smallNote(key, noteId)), 'sqs');
    expect(await deliverUntilSettled(noteId, Math.random)).toBe('delivered');
    const rows = await attemptsOf(noteId);
    expect(rows.map((r) => r.outcome)).toEqual(['retry', 'retry', 'retry', 'retry', 'delivered']);
    // A gap is the jittered wait (≤ its ceiling) plus the claim loop's latency (generous on a busy machine).
    rows.slice(1).forEach((r, k) => {
      expect(r.at.getTime() - rows[k]!.at.getTime()).toBeLessThanOrEqual(backoffCeilingMs(k, RETRY) + 1_500);
    });
  }, 90_000);

  it('429 with Retry-After: the next attempt is not sent before it', async () => {
    fhir.fault({ kind: 'status', status: 429, retryAfter: '2', match: { method: 'POST' } });
    const noteId = 'throttled-429';
    await intake.ingest(new TextEncoder().encode(await smallNote(key, noteId)), 'sqs');
    // Backoff drawn as 0: only Retry-After can hold the retry back.
    const before = fhir.requests.length;
    expect(await deliverUntilSettled(noteId, () => 0)).toBe('delivered');
    const rows = await attemptsOf(noteId);
    expect(rows.map((r) => [r.outcome, r.http_status])).toEqual([
      ['retry', 429],
      ['delivered', 201],
    ]);
    expect(rows[1]!.at.getTime() - rows[0]!.at.getTime()).toBeGreaterThanOrEqual(2_000);
    // At the server: one throttled POST, then the one that was accepted.
    const posts = fhir.requests.slice(before).filter((r) => r.method === 'POST');
    expect(posts.map((p) => p.status)).toEqual([429, 201]);
  }, 60_000);
});
