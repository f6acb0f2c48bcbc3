/**
 * Dead-letter inspection and replay for operators, end to end on both stores (PGlite and PostgreSQL) with the
 * real service, a real FHIR server (fhir-router) and an SQS/S3 server (fauxqs):
 *
 * - a delivery the EHR rejects (422), one whose retry budget runs out (503 ×2), a revision that waits too long
 *   for its predecessor, a tampered message and a claim-check pointer to a missing object (both SQS poison);
 * - `GET /v1/dead-letters` lists each with its code and no note content; only the operator role may call it;
 * - `POST /v1/dead-letters/replay` refuses bad requests and live items with stable codes (nothing replayed),
 *   then replays the ledger items and the pointer message: each is delivered exactly once, with a replay audit
 *   record; what cannot be fixed (the tampered message) stays;
 * - `scribe-bridge dead-letters list|replay --config` on the stopped service's ledger and queue.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { buildApp } from 'fauxqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.ts';
import { hashToken, loadConfig } from '../src/config/index.ts';
import { readAudit } from '../src/ledger/audit.ts';
import { createService, type Service } from '../src/service/service.ts';
import { type FhirTestServer, startFhirServer } from './support/fhir-server.ts';
import { PG_BASE, pgAdmin } from './support/ledger-inputs.ts';
import { queueableFixture } from './support/notes.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
const TOKENS = {
  intake: randomBytes(24).toString('base64url'),
  operator: randomBytes(24).toString('base64url'),
  auditor: randomBytes(24).toString('base64url'),
};

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const code = async (res: Response) => {
  const oo = (await res.json()) as {
    resourceType: string;
    issue: Array<{ details: { coding: Array<{ system: string; code: string }> } }>;
  };
  expect(oo.resourceType).toBe('OperationOutcome');
  return oo.issue[0]!.details.coding[0]!.code;
};

interface Listing {
  ledger: {
    deliveries: Array<{
      deliveryId: number;
      noteId: string;
      revision: number;
      destination: string;
      state: string;
      attempts: number;
      lastErrorCode: string | null;
    }>;
    revisions: Array<{
      revisionId: number;
      noteId: string;
      revision: number;
      reason: string;
      replayable: boolean;
    }>;
  };
  sqs?: {
    queueUrl: string;
    messages: Array<{ messageId: string; code: string; kind: string; bodySha256: string }>;
  };
}

let fauxqs: ReturnType<typeof buildApp>;
let endpoint: string;

beforeAll(async () => {
  fauxqs = buildApp({ logger: false });
  endpoint = await fauxqs.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await fauxqs.close();
});

describe.each(['pglite', 'postgres'] as const)('dead letters on %s', (kind) => {
  let dir: string;
  let dbName = '';
  let fhir: FhirTestServer;
  let sqs: SQSClient;
  let s3: S3Client;
  let queueUrl: string;
  let dlqUrl: string;
  let configFile: string;
  let service: Service | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-dead-letters-'));
    let store = `pglite://${join(dir, 'ledger')}`;
    if (kind === 'postgres') {
      dbName = `sb_dead_letters_${randomBytes(6).toString('hex')}`;
      await pgAdmin(`create database ${dbName}`);
      store = `${PG_BASE}/${dbName}`;
    }
    fhir = await startFhirServer();
    sqs = new SQSClient({ endpoint, region: 'us-east-1', credentials });
    s3 = new S3Client({ endpoint, region: 'us-east-1', credentials, forcePathStyle: true });
    queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `notes-${kind}` }))).QueueUrl!;
    dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `notes-${kind}-dlq` }))).QueueUrl!;
    await s3.send(new CreateBucketCommand({ Bucket: `claims-${kind}` }));
    configFile = join(dir, 'config.yaml');
    writeFileSync(
      configFile,
      `store: ${store}
http: { host: 127.0.0.1, port: 0 }
auth:
  tokens:
    - { role: intake, sha256: "${hashToken(TOKENS.intake)}" }
    - { role: operator, sha256: "${hashToken(TOKENS.operator)}" }
    - { role: auditor, sha256: "${hashToken(TOKENS.auditor)}" }
intake:
  sqs:
    queueUrl: ${queueUrl}
    region: us-east-1
    endpoint: ${endpoint}
    deadLetterQueueUrl: ${dlqUrl}
    visibilityTimeoutSeconds: 10
    waitTimeSeconds: 1
  holdSeconds: 1
s3: { region: us-east-1, endpoint: ${endpoint}, forcePathStyle: true }
tenants:
  - id: riverside-clinic
    reviewKeys: ${fixtures}keys/riverside-clinic.jwks.json
    destinations: [ehr-fhir]
destinations:
  - id: ehr-fhir
    type: fhir
    baseUrl: ${fhir.baseUrl}
    mapping: us-core-docref
    auth: { type: none }
    retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 20 }
`,
    );
    // The CLI part reads AWS credentials from the standard chain.
    process.env['AWS_ACCESS_KEY_ID'] = credentials.accessKeyId;
    process.env['AWS_SECRET_ACCESS_KEY'] = credentials.secretAccessKey;
  }, 60_000);

  afterAll(async () => {
    await service?.stop();
    await fhir?.close();
    sqs?.destroy();
    s3?.destroy();
    rmSync(dir, { recursive: true, force: true });
    if (dbName) await pgAdmin(`drop database if exists ${dbName} with (force)`);
  });

  it('lists every kind of dead letter, replays them once each with an audit record, and refuses what it must', async () => {
    const svc = await createService(await loadConfig(configFile, {}), {
      awsCredentials: credentials,
      housekeepingMs: 200,
    });
    service = svc;
    const base = svc.url;
    const post = (body: string) =>
      fetch(`${base}/v1/notes`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKENS.intake}` },
      });
    const ops = (path: string, init: RequestInit = {}, token = TOKENS.operator) =>
      fetch(`${base}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
      });
    const noteIdOf = (body: string) => (JSON.parse(body) as { noteId: string }).noteId;
    const deliveryState = async (noteId: string, revision = 1) => {
      const st = await svc.ledger.revisionStatus('riverside-clinic', noteId);
      return st?.revisions.find((r) => r.revision === revision)?.deliveries[0]?.state;
    };

    // 1. Rejected: the EHR answers 422 to the create.
    fhir.fault({ kind: 'status', status: 422, issueCode: 'business-rule', match: { method: 'POST' } });
    const girpp = await queueableFixture('girpp-anxiety.json');
    expect((await post(girpp)).status).toBe(202);
    await until('girpp rejected', async () => (await deliveryState(noteIdOf(girpp))) === 'rejected');
    // 2. Failed: 503 twice with a budget of two attempts.
    fhir.fault({ kind: 'status', status: 503, times: 2 });
    const birp = await queueableFixture('birp-substance-use.json');
    expect((await post(birp)).status).toBe(202);
    await until('birp failed', async () => (await deliveryState(noteIdOf(birp))) === 'failed');
    // 3. A revision 2 whose revision 1 does not come within holdSeconds.
    const hp1 = await queueableFixture('hp-typical.json');
    const hp2 = await queueableFixture('hp-typical.r2-amended.json');
    const hpId = noteIdOf(hp1);
    expect((await post(hp2)).status).toBe(202);
    await until('r2 dead-lettered', async () => {
      const st = await svc.ledger.revisionStatus('riverside-clinic', hpId);
      return st?.revisions[0]?.state === 'dead-lettered';
    });
    // 4. SQS poison: a note altered after signing, and a pointer to an object not (yet) in S3.
    const tampered = JSON.parse(await queueableFixture('dap-depression.json')) as {
      note: { sections: Array<{ sentences: Array<{ text: string }> }> };
    };
    tampered.note.sections[0]!.sentences[0]!.text += ' (changed)';
    const pointed = await queueableFixture('dap-depression.json');
    const pointer = JSON.stringify({
      kind: 'signed-note-pointer',
      uri: `s3://claims-${kind}/late/dap.json`,
      sha256: createHash('sha256').update(pointed).digest('hex'),
    });
    for (const body of [JSON.stringify(tampered), pointer])
      await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));

    // The listing: operator only; ids, codes and times, no note content.
    expect((await fetch(`${base}/v1/dead-letters`)).status).toBe(401);
    const asAuditor = await ops('/v1/dead-letters', {}, TOKENS.auditor);
    expect([asAuditor.status, await code(asAuditor)]).toEqual([403, 'FORBIDDEN']);
    const listing = await until('both SQS messages in the DLQ', async () => {
      const res = await ops('/v1/dead-letters');
      expect(res.status).toBe(200);
      const text = await res.text();
      const l = JSON.parse(text) as Listing;
      return (l.sqs?.messages.length ?? 0) >= 2 ? { l, text } : undefined;
    });
    const l = listing.l;
    expect(l.ledger.deliveries.map((d) => [d.noteId, d.state, d.attempts, d.lastErrorCode])).toEqual([
      [noteIdOf(girpp), 'rejected', 1, 'business-rule'],
      [noteIdOf(birp), 'failed', 2, expect.any(String)],
    ]);
    expect(l.ledger.revisions.map((r) => [r.noteId, r.revision, r.reason, r.replayable])).toEqual([
      [hpId, 2, 'HOLD_EXPIRED', true],
    ]);
    expect(l.sqs!.messages.map((m) => m.code).sort()).toEqual(['ARTIFACT_MISSING', 'SIGNATURE_INVALID']);
    expect(l.sqs!.messages.map((m) => m.kind).sort()).toEqual(['envelope', 'pointer']);
    for (const env of [girpp, birp, hp1, pointed]) {
      const e = JSON.parse(env) as {
        patient: { name: { family: string } };
        note: { sections: Array<{ sentences: Array<{ text: string }> }> };
      };
      expect(listing.text).not.toContain(e.patient.name.family);
      expect(listing.text).not.toContain(e.note.sections[0]!.sentences[0]!.text);
    }
    // Listing again leaves the DLQ as it was (nothing consumed).
    const again = (await (await ops('/v1/dead-letters')).json()) as Listing;
    expect(again.sqs!.messages.map((m) => m.messageId).sort()).toEqual(
      l.sqs!.messages.map((m) => m.messageId).sort(),
    );

    // Refusals, each with a stable code, and nothing replayed by any of them.
    const replay = (body: string, token = TOKENS.operator) =>
      ops(
        '/v1/dead-letters/replay',
        { method: 'POST', body, headers: { 'content-type': 'application/json' } },
        token,
      );
    // Live items: revision 2's delivery (blocked behind the dead-lettered revision), girpp's revision (accepted).
    const [blocked] = await svc.ledger.db.query<{ id: number; state: string }>(
      `select id, state from deliveries where note_id = $1 and revision = 2`,
      [hpId],
    );
    expect(blocked!.state).toBe('blocked');
    const [live] = await svc.ledger.db.query<{ id: number }>(
      `select id from note_revisions where note_id = $1 and state = 'accepted'`,
      [noteIdOf(girpp)],
    );
    const [rejected, failed] = l.ledger.deliveries;
    const refusals: Array<[string, number, string]> = [
      ['not json', 400, 'DEAD_LETTER_REQUEST_INVALID'],
      ['{}', 400, 'DEAD_LETTER_REQUEST_INVALID'],
      ['{"deliveryIds": ["1"]}', 400, 'DEAD_LETTER_REQUEST_INVALID'],
      ['{"deliveryIds": [1], "extra": true}', 400, 'DEAD_LETTER_REQUEST_INVALID'],
      [`{"deliveryIds": [${rejected!.deliveryId}, 987654]}`, 404, 'NOT_FOUND'],
      [`{"deliveryIds": [${failed!.deliveryId}, ${blocked!.id}]}`, 409, 'REPLAY_REFUSED'],
      [`{"deliveryIds": [${failed!.deliveryId}], "revisionIds": [${live!.id}]}`, 409, 'REPLAY_REFUSED'],
    ];
    for (const [body, status, c] of refusals) {
      const res = await replay(body);
      expect([body, res.status, await code(res)]).toEqual([body, status, c]);
    }
    const byAuditor = await replay(`{"deliveryIds": [${rejected!.deliveryId}]}`, TOKENS.auditor);
    expect(byAuditor.status).toBe(403);
    expect(await deliveryState(noteIdOf(girpp))).toBe('rejected');
    expect(await deliveryState(noteIdOf(birp))).toBe('failed');

    // Fix what can be fixed (the EHR recovers; revision 1 arrives; the pointed-to object appears), then replay.
    await s3.send(new PutObjectCommand({ Bucket: `claims-${kind}`, Key: 'late/dap.json', Body: pointed }));
    expect((await post(hp1)).status).toBe(202);
    const pointerMessage = l.sqs!.messages.find((m) => m.code === 'ARTIFACT_MISSING')!;
    const res = await replay(
      JSON.stringify({
        deliveryIds: [rejected!.deliveryId, failed!.deliveryId],
        revisionIds: [l.ledger.revisions[0]!.revisionId],
        sqsMessageIds: [pointerMessage.messageId],
      }),
    );
    expect(res.status).toBe(200);
    const replayed = (await res.json()) as {
      deliveries: Array<{ deliveryId: number; previousState: string; state: string }>;
      revisions: Array<{ revisionId: number; state: string }>;
      sqs: { replayed: Array<{ messageId: string; code: string }>; notFound: string[] };
    };
    expect(replayed.deliveries.map((d) => [d.previousState, d.state])).toEqual([
      ['rejected', 'pending'],
      ['failed', 'pending'],
    ]);
    expect(replayed.revisions.map((r) => r.state)).toEqual(['accepted']);
    expect(replayed.sqs).toMatchObject({
      replayed: [{ messageId: pointerMessage.messageId, code: 'ARTIFACT_MISSING' }],
      notFound: [],
    });

    // Everything replayed is delivered, exactly once at the EHR.
    const dapId = noteIdOf(pointed);
    let pending = '';
    await until('all delivered', async () => {
      for (const [id, rev] of [
        [noteIdOf(girpp), 1],
        [noteIdOf(birp), 1],
        [hpId, 1],
        [hpId, 2],
        [dapId, 1],
      ] as const)
        if ((await deliveryState(id, rev)) !== 'delivered') {
          pending = `${id} r${rev}: ${await deliveryState(id, rev)}`;
          return false;
        }
      return true;
    }).catch((e: Error) => {
      throw new Error(`${e.message}; ${pending}`);
    });
    for (const [id, rev] of [
      [noteIdOf(girpp), 1],
      [noteIdOf(birp), 1],
      [hpId, 1],
      [hpId, 2],
      [dapId, 1],
    ] as const)
      expect(
        await fhir.search(
          'DocumentReference',
          `identifier=urn:scribe-bridge:riverside-clinic:note|${id}-r${rev}`,
        ),
      ).toHaveLength(1);
    // A fresh attempt budget (the round after the replay counts one attempt), and attempt numbers that go on
    // from the ones before the replay, in the ledger and in the audit records that report each attempt.
    const birpAttempts = await svc.ledger.db.query<{ attempt: number; outcome: string }>(
      `select a.attempt, a.outcome from delivery_attempts a where a.delivery_id = $1 order by a.id`,
      [failed!.deliveryId],
    );
    expect(birpAttempts.map((a) => [a.attempt, a.outcome])).toEqual([
      [1, 'retry'],
      [2, 'failed'],
      [3, 'delivered'],
    ]);
    const [budget] = await svc.ledger.db.query<{ attempts: number }>(
      'select attempts from deliveries where id = $1',
      [failed!.deliveryId],
    );
    expect(budget!.attempts).toBe(1);
    const attemptAudit = (await readAudit(svc.ledger.db)).filter(
      (r) =>
        r.details['deliveryId'] === failed!.deliveryId &&
        /^delivery\.(retry|failed|delivered)$/.test(r.action),
    );
    expect(attemptAudit.map((r) => [r.action, r.details['attempt'], r.details['attempts']])).toEqual([
      ['delivery.retry', 1, 1],
      ['delivery.failed', 2, 2],
      ['delivery.delivered', 3, 1],
    ]);
    // Each replay is in the audit log, with who asked.
    const audit = await readAudit(svc.ledger.db);
    const replays = audit.filter((r) => /replayed$/.test(r.action));
    expect(replays.map((r) => r.action).sort()).toEqual([
      'dead-letter.sqs-replayed',
      'delivery.replayed',
      'delivery.replayed',
      'revision.replayed',
    ]);
    const opBy = `operator:${hashToken(TOKENS.operator).slice(0, 12)}`;
    for (const r of replays) expect(r.details['by']).toBe(opBy);
    expect(
      replays.find((r) => r.action === 'delivery.replayed' && r.details['previousState'] === 'failed'),
    ).toMatchObject({
      destination: 'ehr-fhir',
      details: { deliveryId: failed!.deliveryId, previousAttempts: 2 },
    });

    // Left: only the tampered message, which no replay can fix.
    const after = (await (await ops('/v1/dead-letters')).json()) as Listing;
    expect(after.ledger).toEqual({ deliveries: [], revisions: [] });
    expect(after.sqs!.messages.map((m) => m.code)).toEqual(['SIGNATURE_INVALID']);
    await svc.stop();
    service = undefined;

    // The command line, on the stopped service's ledger and queues.
    const out: string[] = [];
    const err: string[] = [];
    const io = {
      out: (s: string) => out.push(s),
      err: (s: string) => err.push(s),
      interactive: false,
      progressStream: process.stderr,
    };
    expect(await main(['dead-letters', 'list', '--config', configFile, '--json'], io)).toBe(0);
    const cliListing = JSON.parse(out.join('')) as Listing;
    expect(cliListing.ledger).toEqual({ deliveries: [], revisions: [] });
    expect(cliListing.sqs!.messages.map((m) => m.code)).toEqual(['SIGNATURE_INVALID']);
    out.length = 0;
    expect(await main(['dead-letters', 'list', '--config', configFile], io)).toBe(0);
    expect(out.join('')).toMatch(
      /SQS dead-letter queue .*: 1 message\(s\)\n {2}message \S+ {2}SIGNATURE_INVALID/,
    );
    out.length = 0;
    expect(await main(['dead-letters', 'replay', '--config', configFile, '--delivery', 'x'], io)).toBe(2); // USAGE: exit 2
    expect(err.join('')).toContain('USAGE');
    expect(
      await main(['dead-letters', 'replay', '--config', configFile, '--sqs-code', 'SIGNATURE_INVALID'], io),
    ).toBe(0);
    expect(out.join('')).toMatch(/SQS message \S+ \(SIGNATURE_INVALID\): back on the intake queue as \S+/);
    // It is back on the intake queue, byte for byte, marked as a replay.
    const back = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MessageAttributeNames: ['All'], WaitTimeSeconds: 1 }),
    );
    expect(back.Messages).toHaveLength(1);
    expect(back.Messages![0]!.Body).toBe(JSON.stringify(tampered));
    expect(back.Messages![0]!.MessageAttributes?.['scribe-bridge-replay-of']?.StringValue).toBeTruthy();
  }, 240_000);
});
