/**
 * The review-queue consumer against a real SQS-compatible server (fauxqs on 127.0.0.1) with the real verifier:
 * a valid note is recorded then deleted; poison (bad JSON, a bad signature, a bad pointer) goes to the DLQ on its
 * first receive with the error code as an attribute and no PHI, then is deleted; a claim-check pointer is
 * resolved from S3; a transient failure leaves the message to come back; one bad message never blocks the others.
 */
import { readFileSync } from 'node:fs';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../src/contract/artifacts.ts';
import { loadJwksFile } from '../src/contract/signature.ts';
import { verifyEnvelope } from '../src/contract/verify.ts';
import { ScribeError } from '../src/errors.ts';
import { S3ObjectStore } from '../src/ingest/s3.ts';
import { REASON_ATTRIBUTE, SqsConsumer, type SqsLogEvent } from '../src/ingest/sqs.ts';
import { AWS_CREDENTIALS, type Queue, startQueue } from './support/service-harness.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
let queue: Queue;
let store: S3ObjectStore;

/** dap-depression carries its artifacts inline, as the queue must (file: URIs are refused from the queue). */
function inlineEnvelope(name: string): string {
  return readFileSync(`${fixtures}envelopes/valid/${name}`, 'utf8');
}

beforeAll(async () => {
  queue = await startQueue('signed-notes', { VisibilityTimeout: '30' });
  const pointed = inlineEnvelope('dap-depression.json');
  await queue.s3.send(new PutObjectCommand({ Bucket: 'claims', Key: 'n/dap.json', Body: pointed }));
  store = new S3ObjectStore({
    region: 'us-east-1',
    endpoint: queue.endpoint,
    forcePathStyle: true,
    credentials: AWS_CREDENTIALS,
  });
});

afterAll(async () => {
  store.destroy();
  await queue.close();
});

/** The consumer against this file's queues and S3, retrying after 1 s. */
const consumerOptions = () => ({
  queueUrl: queue.queueUrl,
  region: 'us-east-1',
  endpoint: queue.endpoint,
  deadLetterQueueUrl: queue.dlqUrl,
  visibilityTimeoutSeconds: 10,
  waitTimeSeconds: 1,
  objectStore: store,
  credentials: AWS_CREDENTIALS,
  retryDelaySeconds: () => 1,
});

describe('SQS intake (fauxqs)', () => {
  it('records valid notes, dead-letters poison on first receive with its code, resolves pointers, retries transient failures', async () => {
    const keys = await loadJwksFile(`${fixtures}keys/riverside-clinic.jwks.json`);
    const dap = readFileSync(`${fixtures}envelopes/valid/dap-depression.json`, 'utf8');
    const bodies = {
      valid: inlineEnvelope('dap-depression.json'),
      json: '{"kind": "signed-note", oops',
      signature: readFileSync(`${fixtures}envelopes/invalid/signature-text-changed.json`, 'utf8'),
      pointer: JSON.stringify({
        kind: 'signed-note-pointer',
        uri: 's3://claims/n/dap.json',
        sha256: sha256Hex(dap),
      }),
      badPointer: JSON.stringify({
        kind: 'signed-note-pointer',
        uri: 's3://claims/n/dap.json',
        sha256: 'bad',
      }),
      transient: '{"transient": true}',
    };
    for (const body of Object.values(bodies))
      await queue.sqs.send(new SendMessageCommand({ QueueUrl: queue.queueUrl, MessageBody: body }));

    const recorded: string[] = [];
    let transientSeen = 0;
    const events: SqsLogEvent[] = [];
    const refused: { code: string; bodySha256: string }[] = [];
    const consumer = new SqsConsumer(
      {
        ...consumerOptions(),
        log: (e) => events.push(e),
        onRefused: async (r) => void refused.push(r),
      },
      async (body) => {
        const text = new TextDecoder().decode(body);
        if (text.includes('"transient"')) {
          transientSeen++;
          if (transientSeen === 1) throw new ScribeError('ARTIFACT_UNAVAILABLE', 'store down');
          recorded.push('transient');
          return { outcome: 'accepted' };
        }
        const v = await verifyEnvelope(body, { keys });
        recorded.push(`${v.envelope.noteId}`);
        return { outcome: 'accepted' };
      },
    );
    let rounds = 0;
    while ((recorded.length < 3 || transientSeen < 2) && rounds++ < 10) await consumer.pollOnce();
    await consumer.stop();

    // The inline envelope and the pointed-to copy were both recorded; the transient one came back and was too.
    const dapId = JSON.parse(dap).noteId as string;
    expect(recorded.filter((r) => r === dapId)).toHaveLength(2);
    expect(recorded).toContain('transient');
    expect(transientSeen).toBe(2);
    const dlq = await queue.drainDlq();
    const reasons = dlq.map((m) => m.MessageAttributes?.[REASON_ATTRIBUTE]?.StringValue).sort();
    expect(reasons).toContain('ENVELOPE_JSON');
    expect(reasons).toContain('SIGNATURE_INVALID');
    expect(reasons).toContain('POINTER_INVALID');
    // Attributes carry codes only.
    for (const m of dlq) {
      for (const a of Object.values(m.MessageAttributes ?? {}))
        expect(a.StringValue).toMatch(/^[A-Z_]+$|^[0-9a-f-]+$/);
    }
    // The main queue is drained.
    const left = await queue.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queue.queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
    );
    expect(left.Messages ?? []).toEqual([]);
    expect(events.filter((e) => e.event === 'sqs.retry-later')).toHaveLength(1);
    // The refusal made before the handler (the bad pointer) was handed over for the audit log: code and body hash.
    // The handler's own refusals (bad JSON, bad signature) are recorded by the handler (the service's intake).
    expect(refused).toEqual([{ code: 'POINTER_INVALID', bodySha256: sha256Hex(bodies.badPointer) }]);
  }, 60_000);

  it('a pointer to an object not there yet is retried (R23): recorded once it appears, dead-lettered if it never does', async () => {
    const dap = inlineEnvelope('dap-depression.json');
    const pointer = (key: string) =>
      JSON.stringify({ kind: 'signed-note-pointer', uri: `s3://claims/${key}`, sha256: sha256Hex(dap) });
    const [late, never] = [pointer('late/dap.json'), pointer('never/dap.json')];
    for (const body of [late, never])
      await queue.sqs.send(new SendMessageCommand({ QueueUrl: queue.queueUrl, MessageBody: body }));
    const recorded: string[] = [];
    const refused: string[] = [];
    const events: SqsLogEvent[] = [];
    const consumer = new SqsConsumer(
      { ...consumerOptions(), log: (e) => events.push(e), onRefused: async (r) => void refused.push(r.code) },
      async (body) => {
        recorded.push(new TextDecoder().decode(body));
        return { outcome: 'accepted' };
      },
    );
    // First receive: both missing, both kept (not dead-lettered, nothing refused yet).
    await consumer.pollOnce();
    expect(events.filter((e) => e.event === 'sqs.retry-later' && e.code === 'ARTIFACT_MISSING')).toHaveLength(
      2,
    );
    expect(await queue.drainDlq()).toEqual([]);
    expect(refused).toEqual([]);
    // The late upload lands; the next receives record it and, on the third receive, dead-letter the other.
    await queue.s3.send(new PutObjectCommand({ Bucket: 'claims', Key: 'late/dap.json', Body: dap }));
    let rounds = 0;
    const dlq: Awaited<ReturnType<typeof queue.drainDlq>> = [];
    while ((recorded.length < 1 || dlq.length < 1) && rounds++ < 15) {
      await consumer.pollOnce();
      dlq.push(...(await queue.drainDlq()));
    }
    await consumer.stop();
    expect(recorded).toEqual([dap]);
    expect(dlq.map((m) => [m.Body, m.MessageAttributes?.[REASON_ATTRIBUTE]?.StringValue])).toEqual([
      [never, 'ARTIFACT_MISSING'],
    ]);
    expect(refused).toEqual(['ARTIFACT_MISSING']);
  }, 60_000);

  it('does not dead-letter a refused message whose refusal cannot be recorded: it comes back later', async () => {
    const body = JSON.stringify({
      kind: 'signed-note-pointer',
      uri: 's3://claims/n/dap.json',
      sha256: 'a'.repeat(64),
      extra: true,
    });
    await queue.sqs.send(new SendMessageCommand({ QueueUrl: queue.queueUrl, MessageBody: body }));
    let attempts = 0;
    const consumer = new SqsConsumer(
      {
        ...consumerOptions(),
        onRefused: async () => {
          if (++attempts === 1) throw new Error('ledger down');
        },
      },
      async () => ({ outcome: 'accepted' }),
    );
    let rounds = 0;
    while (attempts < 2 && rounds++ < 10) await consumer.pollOnce();
    await consumer.stop();
    expect(attempts).toBe(2);
    const mine = (await queue.drainDlq()).filter((m) => m.Body === body);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.MessageAttributes?.[REASON_ATTRIBUTE]?.StringValue).toBe('POINTER_INVALID');
  }, 60_000);
});
