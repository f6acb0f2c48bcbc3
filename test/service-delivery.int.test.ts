/**
 * Intake → ledger → delivery workers → real destinations: a FHIR server (fhir-router behind express), an MLLP
 * receiver and a file drop. Promises checked: each (revision, destination) is delivered exactly once, in revision
 * order per note (T02, T10, T03 at the MLLP receiver; the r2 DocumentReference entered-in-error after the
 * retraction); a 503 then recovery is retried with backoff and nothing is lost; a 422 is rejected after one
 * attempt with its issue code and expression recorded; an answer lost after the EHR stored the write is settled by read-back,
 * not a second create; re-sending every envelope changes nothing; a note with blank sentences is delivered to all.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/index.ts';
import type { Ledger } from '../src/ledger/ledger.ts';
import type { Intake } from '../src/service/intake.ts';
import { DeliveryWorker } from '../src/service/worker.ts';
import { type FhirTestServer, startFhirServer } from './support/fhir-server.ts';
import { startIntake } from './support/intake.ts';
import { type MllpTestServer, startMllpServer } from './support/mllp-server.ts';
import { queueableFixture } from './support/notes.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;

let fhir: FhirTestServer;
let mllp: MllpTestServer;
let ledger: Ledger;
let config: Config;
let intake: Intake;
let outDir: string;

beforeAll(async () => {
  fhir = await startFhirServer();
  mllp = await startMllpServer();
  const dir = mkdtempSync(join(tmpdir(), 'sb-deliver-'));
  outDir = join(dir, 'out');
  ({ config, ledger, intake } = await startIntake(
    dir,
    `store: pglite://./data
tenants:
  - id: riverside-clinic
    reviewKeys: ${fixtures}keys/riverside-clinic.jwks.json
    destinations: [ehr-fhir, ehr-mdm, archive]
destinations:
  - id: ehr-fhir
    type: fhir
    baseUrl: ${fhir.baseUrl}
    mapping: us-core-docref
    auth: { type: none }
    retry: { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 5 }
  - id: ehr-mdm
    type: mllp
    host: 127.0.0.1
    port: ${mllp.port}
    mapping: mdm
    ackTimeoutMs: 2000
  - id: archive
    type: file
    directory: ./out
    mapping: fhir-document
`,
  ));
}, 120_000);

afterAll(async () => {
  await ledger.close();
  await fhir.close();
  await mllp.close();
});

/** Runs workers until a round finds nothing due (backoff waits are milliseconds in this config). */
async function drain(worker: DeliveryWorker): Promise<void> {
  for (let idle = 0, i = 0; idle < 3 && i < 200; i++) {
    const n = await worker.runOnce();
    idle = n === 0 ? idle + 1 : 0;
    if (n === 0) await new Promise((r) => setTimeout(r, 20));
  }
}

describe('delivery workers', () => {
  it('delivers every revision exactly once, in order, through faults, and a replay changes nothing', async () => {
    // The EHR fails twice with 503, then recovers; the MLLP receiver acknowledges everything.
    fhir.fault({ kind: 'status', status: 503, times: 2 });
    for (const f of [
      'hp-typical.json',
      'hp-typical.r2-amended.json',
      'hp-typical.r3-entered-in-error.json',
      'girpp-anxiety.json',
    ]) {
      expect((await intake.ingest(new TextEncoder().encode(await queueableFixture(f)), 'sqs')).outcome).toBe(
        'accepted',
      );
    }
    const worker = new DeliveryWorker({ ledger, config });
    await drain(worker);

    const hp = await ledger.revisionStatus('riverside-clinic', 'enc-4471-hp');
    for (const rev of hp!.revisions)
      expect(rev.deliveries.map((d) => d.state)).toEqual(['delivered', 'delivered', 'delivered']);
    // FHIR: r1 and r2 created once each; the retraction marked r2 entered-in-error in place.
    const docs = await fhir.search(
      'DocumentReference',
      'identifier=urn:scribe-bridge:riverside-clinic:note|enc-4471-hp-r2',
    );
    expect(docs).toHaveLength(1);
    expect((docs[0] as { status: string }).status).toBe('entered-in-error');
    expect(
      await fhir.search(
        'DocumentReference',
        'identifier=urn:scribe-bridge:riverside-clinic:note|enc-4471-hp-r1',
      ),
    ).toHaveLength(1);
    // MLLP: T02, T10, T03 for the H&P note, in that order; one message per revision.
    const events = mllp.received.filter((m) => m.raw.includes('enc-4471-hp')).map((m) => m.raw.split('|')[8]);
    expect(events).toEqual(['MDM^T02^MDM_T02', 'MDM^T10^MDM_T02', 'MDM^T03^MDM_T01']);
    // File drop: one file per revision.
    expect(readdirSync(join(outDir, 'riverside-clinic', 'enc-4471-hp')).sort()).toEqual([
      'r1.json',
      'r2.json',
      'r3.json',
    ]);
    // The 503s were retried: more FHIR requests than revisions, attempts recorded.
    const attempts = await ledger.db.query<{ outcome: string; http_status: number | null }>(
      `select a.outcome, a.http_status from delivery_attempts a join deliveries d on d.id = a.delivery_id where d.destination = 'ehr-fhir' order by a.id`,
    );
    expect(attempts.filter((a) => a.http_status === 503)).toHaveLength(2);

    // Replay: every envelope again → duplicates; nothing new is sent anywhere.
    const before = { fhir: fhir.requests.length, mllp: mllp.received.length };
    for (const f of [
      'hp-typical.json',
      'hp-typical.r2-amended.json',
      'hp-typical.r3-entered-in-error.json',
      'girpp-anxiety.json',
    ]) {
      expect((await intake.ingest(new TextEncoder().encode(await queueableFixture(f)), 'sqs')).outcome).toBe(
        'duplicate',
      );
    }
    await drain(worker);
    expect({ fhir: fhir.requests.length, mllp: mllp.received.length }).toEqual(before);
    await worker.stop();
  }, 120_000);

  it('rejects a 422 after one attempt with its issue code, and settles a lost answer by read-back', async () => {
    fhir.fault({
      kind: 'status',
      status: 422,
      issueCode: 'business-rule',
      // A plain element path is kept (R15); one quoting a value is not (it may carry PHI).
      expression: ['DocumentReference.subject', "Patient.name.where(family = 'Canary')"],
      match: { method: 'POST' },
    });
    expect(
      (
        await intake.ingest(
          new TextEncoder().encode(await queueableFixture('birp-substance-use.json')),
          'sqs',
        )
      ).outcome,
    ).toBe('accepted');
    const worker = new DeliveryWorker({ ledger, config });
    await drain(worker);
    const birpId = JSON.parse(await queueableFixture('birp-substance-use.json')).noteId as string;
    const birp = await ledger.revisionStatus('riverside-clinic', birpId);
    const fhirDelivery = birp!.revisions[0]!.deliveries.find((d) => d.destination === 'ehr-fhir')!;
    expect(fhirDelivery.state).toBe('rejected');
    const rows = await ledger.db.query<{ outcome: string; error_code: string | null }>(
      `select a.outcome, a.error_code from delivery_attempts a join deliveries d on d.id = a.delivery_id
       where d.destination = 'ehr-fhir' and d.note_id = $1`,
      [birpId],
    );
    expect(rows).toEqual([{ outcome: 'rejected', error_code: 'business-rule' }]);
    expect(fhirDelivery.receipt).toEqual({
      issues: [{ code: 'business-rule', expression: ['DocumentReference.subject'] }],
    });

    // The EHR stores the write but the answer is lost: ambiguous, then read back (found) → delivered, one resource.
    fhir.fault({ kind: 'drop', after: 'process', match: { method: 'POST' } });
    expect(
      (await intake.ingest(new TextEncoder().encode(await queueableFixture('dap-depression.json')), 'sqs'))
        .outcome,
    ).toBe('accepted');
    await drain(worker);
    const dapId = JSON.parse(await queueableFixture('dap-depression.json')).noteId as string;
    const dap = await ledger.revisionStatus('riverside-clinic', dapId);
    expect(dap!.revisions[0]!.deliveries.find((d) => d.destination === 'ehr-fhir')!.state).toBe('delivered');
    expect(
      await fhir.search(
        'DocumentReference',
        `identifier=urn:scribe-bridge:riverside-clinic:note|${dapId}-r1`,
      ),
    ).toHaveLength(1);
    await worker.stop();
  }, 120_000);

  it('delivers a note with blank sentences everywhere: left out of the FHIR Composition, kept in MDM', async () => {
    // The envelope allows a sentence with no non-whitespace text; FHIR narrative does not (txt-2).
    type Sentence = { id: string; text: string };
    const bytes = await queueableFixture('hp-typical.json', (env) => {
      env['noteId'] = 'enc-blank-sentences';
      const sections = (env['note'] as { sections: Array<{ sentences: Sentence[] }> }).sections;
      for (const s of sections[0]!.sentences) s.text = ' \t ';
      sections[1]!.sentences[0]!.text = '';
    });
    expect((await intake.ingest(new TextEncoder().encode(bytes), 'sqs')).outcome).toBe('accepted');
    const worker = new DeliveryWorker({ ledger, config });
    await drain(worker);
    const status = await ledger.revisionStatus('riverside-clinic', 'enc-blank-sentences');
    expect(status!.revisions[0]!.deliveries.map((d) => d.state)).toEqual([
      'delivered',
      'delivered',
      'delivered',
    ]);

    const env = JSON.parse(bytes) as { note: { sections: Array<{ sentences: Sentence[] }> } };
    const all = env.note.sections.flatMap((s) => s.sentences);
    const blank = new Set([
      ...env.note.sections[0]!.sentences.map((s) => s.id),
      env.note.sections[1]!.sentences[0]!.id,
    ]);
    // The FHIR document in the file drop: one element per sentence with text, none for the blank ones.
    const doc = JSON.parse(
      readFileSync(join(outDir, 'riverside-clinic', 'enc-blank-sentences', 'r1.json'), 'utf8'),
    ) as {
      entry: Array<{
        resource: { resourceType: string; section?: Array<{ id: string; section?: Array<{ id: string }> }> };
      }>;
    };
    const composition = doc.entry[0]!.resource;
    expect(composition.resourceType).toBe('Composition');
    expect(composition.section!.map((s) => s.id)).not.toContain('section-1');
    expect(composition.section!.flatMap((s) => (s.section ?? []).map((x) => x.id))).toEqual(
      all.filter((s) => !blank.has(s.id)).map((s) => `sentence-${s.id}`),
    );
    // MDM: the evidence index still names every sentence.
    const mdm = mllp.received.find((m) => m.raw.includes('enc-blank-sentences'))!.raw;
    const zse = mdm
      .split('\r')
      .filter((l) => l.startsWith('ZSE|'))
      .map((l) => l.split('|')[2]);
    expect(zse).toEqual(all.map((s) => s.id));
    await worker.stop();
  }, 120_000);
});
