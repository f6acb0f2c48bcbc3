/**
 * The intake step end to end on real components: a config file, the SQS consumer on fauxqs, the verifier, the
 * three kinds of destination's mappings proven conformant (US Core 8), and the ledger on PGlite. Promise checked:
 * a message is deleted only after its revision, renderings and deliveries are recorded; a duplicate is
 * acknowledged without new deliveries; a conflict is recorded and never delivered; an amendment then a
 * retraction are rendered (the retraction re-sends the retracted revision, read back from the ledger).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqsConsumer } from '../src/ingest/sqs.ts';
import type { Ledger } from '../src/ledger/ledger.ts';
import type { Intake } from '../src/service/intake.ts';
import { startIntake } from './support/intake.ts';
import { queueableFixture } from './support/notes.ts';
import { AWS_CREDENTIALS, type Queue, startQueue } from './support/service-harness.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;

let queue: Queue;
let ledger: Ledger;
let intake: Intake;

beforeAll(async () => {
  queue = await startQueue('notes');
  ({ ledger, intake } = await startIntake(
    mkdtempSync(join(tmpdir(), 'sb-intake-')),
    `store: pglite://./data
http: { host: 127.0.0.1, port: 8080 }
auth:
  tokens:
    - { role: intake, sha256: "${'a'.repeat(64)}" }
tenants:
  - id: riverside-clinic
    reviewKeys: ${fixtures}keys/riverside-clinic.jwks.json
    destinations: [ehr-fhir, ehr-mdm, archive]
destinations:
  - id: ehr-fhir
    type: fhir
    baseUrl: http://127.0.0.1:8103/fhir/R4
    mapping: fhir-transaction
    auth: { type: none }
  - id: ehr-mdm
    type: mllp
    host: 127.0.0.1
    port: 2575
    mapping: mdm
    sendingFacility: RIVERSIDE
  - id: archive
    type: file
    directory: ./out
    mapping: fhir-document
`,
  ));
}, 120_000);

afterAll(async () => {
  await ledger.close();
  await queue.close();
});

describe('intake: queue → verify → render → ledger', () => {
  it('records a note from SQS in one transaction, then deletes the message; duplicates and conflicts are acknowledged', async () => {
    const { sqs, queueUrl, dlqUrl, endpoint } = queue;
    const body = await queueableFixture('girpp-anxiety.json');
    const conflicting = await queueableFixture('girpp-anxiety.json', (e) => {
      const s = (e['note'] as { sections: Array<{ sentences: Array<{ text: string }> }> }).sections[0]!
        .sentences[0]!;
      s.text = `${s.text} (changed)`;
    });
    for (const b of [body, body, conflicting])
      await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: b }));

    const outcomes: string[] = [];
    const consumer = new SqsConsumer(
      {
        queueUrl,
        region: 'us-east-1',
        endpoint,
        deadLetterQueueUrl: dlqUrl,
        visibilityTimeoutSeconds: 60,
        waitTimeSeconds: 1,
        maxMessages: 1,
        credentials: AWS_CREDENTIALS,
      },
      async (bytes) => {
        const r = await intake.ingest(bytes, 'sqs');
        outcomes.push(r.outcome);
        return { outcome: r.outcome };
      },
    );
    for (let i = 0; i < 6 && outcomes.length < 3; i++) await consumer.pollOnce();
    await consumer.stop();
    expect(outcomes).toEqual(['accepted', 'duplicate', 'conflict']);

    const left = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
    );
    expect(left.Messages ?? []).toEqual([]);

    const status = await ledger.revisionStatus('riverside-clinic', JSON.parse(body).noteId);
    expect(status!.revisions).toHaveLength(1);
    expect(status!.revisions[0]!.deliveries.map((d) => [d.destination, d.state]).sort()).toEqual([
      ['archive', 'pending'],
      ['ehr-fhir', 'pending'],
      ['ehr-mdm', 'pending'],
    ]);
    const rows = await ledger.db.query<{ destination: string; identifiers: unknown; mapping_id: string }>(
      'select destination, identifiers, mapping_id from renderings order by destination',
    );
    expect(rows.map((r) => r.mapping_id)).toEqual(['fhir-document', 'fhir-transaction', 'mdm']);
    expect(JSON.stringify(rows[1]!.identifiers)).toContain('urn:scribe-bridge:riverside-clinic:note');
    const mdmIds = rows[2]!.identifiers as Array<{ documentNumber: string; controlId: string }>;
    expect(mdmIds[0]!.documentNumber).toMatch(/^.{1,30}$/);
    expect(mdmIds[0]!.controlId).toMatch(/^[A-Z2-7]{20}$/);
  }, 120_000);

  it('renders an amendment and a retraction (the retracted revision read back from the ledger)', async () => {
    const results = [];
    for (const f of [
      'hp-typical.json',
      'hp-typical.r2-amended.json',
      'hp-typical.r3-entered-in-error.json',
    ]) {
      results.push(await intake.ingest(new TextEncoder().encode(await queueableFixture(f)), 'http'));
    }
    expect(results.map((r) => r.outcome)).toEqual(['accepted', 'accepted', 'accepted']);
    const payloads = await ledger.db.query<{ revision: number; destination: string; payload: string }>(
      `select r.revision, g.destination, g.payload from renderings g join note_revisions r on r.id = g.revision_id
       where r.note_id = 'enc-4471-hp' order by r.revision, g.destination`,
    );
    const retractionFhir = payloads.find((p) => p.revision === 3 && p.destination === 'ehr-fhir')!;
    expect(JSON.parse(retractionFhir.payload).entry[0].request.url).toBe(
      'DocumentReference?identifier=urn:scribe-bridge:riverside-clinic:note|enc-4471-hp-r2',
    );
    expect(payloads.find((p) => p.revision === 3 && p.destination === 'ehr-mdm')!.payload).toMatch(
      /\|MDM\^T03\^MDM_T01\|/,
    );
  }, 120_000);

  it('records a retraction that arrives before the revision it retracts as waiting, and renders it once that is here', async () => {
    const noteId = 'enc-4471-early';
    const send = async (f: string) =>
      intake.ingest(
        new TextEncoder().encode(
          await queueableFixture(f, (e) => {
            e['noteId'] = noteId;
          }),
        ),
        'http',
      );
    const state = async () =>
      (
        await ledger.db.query<{ revision: number; state: string; render_pending: boolean; n: number }>(
          `select v.revision, v.state, v.render_pending, (select count(*)::int from deliveries d where d.revision_id = v.id) as n
           from note_revisions v where v.note_id = $1 order by v.revision`,
          [noteId],
        )
      ).map((r) => [r.revision, r.state, r.render_pending, r.n]);

    // The retraction first: recorded (not refused, not left to be retried) as waiting, with nothing to deliver yet.
    expect(await send('hp-typical.r3-entered-in-error.json')).toMatchObject({
      outcome: 'waiting',
      deliveries: [],
    });
    expect(await send('hp-typical.r3-entered-in-error.json')).toMatchObject({ outcome: 'duplicate' });
    expect(await intake.renderPending()).toBe(0); // revision 2 is not here
    expect((await send('hp-typical.json')).outcome).toBe('accepted');
    expect(await intake.renderPending()).toBe(0);
    expect((await send('hp-typical.r2-amended.json')).outcome).toBe('accepted');
    // Revision 2 did not release the unrendered retraction: it waits for its renderings.
    expect(await state()).toEqual([
      [1, 'accepted', false, 3],
      [2, 'accepted', false, 3],
      [3, 'waiting', true, 0],
    ]);
    expect(await intake.renderPending()).toBe(1);
    expect(await intake.renderPending()).toBe(0); // once
    expect(await state()).toEqual([
      [1, 'accepted', false, 3],
      [2, 'accepted', false, 3],
      [3, 'accepted', false, 3],
    ]);
    // Rendered as an in-order retraction is: revision 2 re-sent entered-in-error, MDM T03; each delivery blocked
    // until revision 2's is delivered at its destination.
    const rows = await ledger.db.query<{ destination: string; payload: string; state: string }>(
      `select g.destination, g.payload, d.state from renderings g join note_revisions v on v.id = g.revision_id
       join deliveries d on d.rendering_id = g.id where v.note_id = $1 and v.revision = 3 order by g.destination`,
      [noteId],
    );
    expect(rows.map((r) => r.state)).toEqual(['blocked', 'blocked', 'blocked']);
    expect(JSON.parse(rows.find((r) => r.destination === 'ehr-fhir')!.payload).entry[0].request.url).toBe(
      `DocumentReference?identifier=urn:scribe-bridge:riverside-clinic:note|${noteId}-r2`,
    );
    expect(rows.find((r) => r.destination === 'ehr-mdm')!.payload).toMatch(/\|MDM\^T03\^MDM_T01\|/);
    const actions = await ledger.db.query<{ action: string }>(
      `select action from audit_log where note_id = $1 and revision = 3 order by seq`,
      [noteId],
    );
    expect(actions.map((a) => a.action)).toEqual([
      'revision.waiting',
      'revision.duplicate-suppressed',
      'revision.accepted',
      'rendering.recorded',
      'rendering.recorded',
      'rendering.recorded',
    ]);
  }, 120_000);
});
