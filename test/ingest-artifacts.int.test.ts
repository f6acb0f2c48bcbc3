/**
 * Artifact resolution against real servers: S3 through fauxqs (an S3-compatible server on 127.0.0.1) and
 * Transcribe GetMedicalScribeJob through the real AWS SDK against a local HTTP server speaking its JSON 1.1
 * protocol. The envelope's signed sha256 is checked over the exact bytes S3 returns.
 */

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { buildApp } from 'fauxqs';
import type { JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../src/contract/artifacts.ts';
import type { JsonValue } from '../src/contract/json.ts';
import { signEnvelope } from '../src/contract/signature.ts';
import { verifyEnvelope } from '../src/contract/verify.ts';
import type { ScribeError } from '../src/errors.ts';
import { S3ObjectStore } from '../src/ingest/s3.ts';
import { TranscribeJobLocator } from '../src/ingest/transcribe.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
const transcript = readFileSync(`${fixtures}healthscribe/hp-typical/transcript.json`);
const summary = readFileSync(`${fixtures}healthscribe/hp-typical/summary.json`);
const priv = JSON.parse(readFileSync(`${fixtures}keys/riverside-clinic.private.jwks.json`, 'utf8')) as {
  keys: JWK[];
};
const key = priv.keys.find((k) => k.alg === 'EdDSA')!;
const jwks = JSON.parse(readFileSync(`${fixtures}keys/riverside-clinic.jwks.json`, 'utf8'));

let app: ReturnType<typeof buildApp>;
let endpoint: string;
let store: S3ObjectStore;
let transcribe: Server;
let transcribeUrl: string;
const jobs = new Map<string, unknown>();

async function envelope(healthscribe: JsonValue): Promise<string> {
  const env = JSON.parse(readFileSync(`${fixtures}envelopes/valid/hp-typical.json`, 'utf8')) as Record<
    string,
    JsonValue
  >;
  return JSON.stringify(await signEnvelope({ ...env, healthscribe }, key, { kid: key.kid!, alg: 'EdDSA' }));
}

beforeAll(async () => {
  app = buildApp({ logger: false });
  endpoint = await app.listen({ port: 0, host: '127.0.0.1' });
  const s3 = new S3Client({ endpoint, region: 'us-east-1', credentials, forcePathStyle: true });
  await s3.send(new CreateBucketCommand({ Bucket: 'hs-output' }));
  await s3.send(
    new PutObjectCommand({ Bucket: 'hs-output', Key: 'enc-4471/transcript.json', Body: transcript }),
  );
  await s3.send(new PutObjectCommand({ Bucket: 'hs-output', Key: 'enc-4471/summary.json', Body: summary }));
  s3.destroy();
  store = new S3ObjectStore({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });

  transcribe = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const target = req.headers['x-amz-target'];
      const name = (JSON.parse(body) as { MedicalScribeJobName: string }).MedicalScribeJobName;
      const job = jobs.get(name);
      res.setHeader('content-type', 'application/x-amz-json-1.1');
      if (target !== 'Transcribe.GetMedicalScribeJob') {
        res.statusCode = 400;
        res.end(JSON.stringify({ __type: 'UnknownOperationException' }));
      } else if (!job) {
        res.statusCode = 400;
        res.end(JSON.stringify({ __type: 'NotFoundException', Message: 'not found' }));
      } else res.end(JSON.stringify({ MedicalScribeJob: job }));
    });
  });
  await new Promise<void>((r) => transcribe.listen(0, '127.0.0.1', r));
  transcribeUrl = `http://127.0.0.1:${(transcribe.address() as AddressInfo).port}`;
});

afterAll(async () => {
  store.destroy();
  await app.close();
  await new Promise((r) => transcribe.close(r));
});

describe('S3 artifacts (fauxqs)', () => {
  it('verifies an envelope whose artifacts are s3:// and https S3 URIs, over the exact bytes', async () => {
    const env = await envelope({
      jobName: 'enc-4471-2026-11-20',
      transcript: { uri: 's3://hs-output/enc-4471/transcript.json', sha256: sha256Hex(transcript) },
      clinicalDocument: {
        uri: 'https://s3.us-east-1.amazonaws.com/hs-output/enc-4471/summary.json',
        sha256: sha256Hex(summary),
      },
    });
    const v = await verifyEnvelope(env, { keys: jwks, objectStore: store });
    expect(v.artifacts.transcript).toMatchObject({
      source: 'uri',
      hashSigned: true,
      sha256: sha256Hex(transcript),
    });
    expect(v.sentences.length).toBe(47);
  });

  it('refuses a different object (hash mismatch) and names a missing one', async () => {
    const wrong = await envelope({
      jobName: 'enc-4471-2026-11-20',
      transcript: { uri: 's3://hs-output/enc-4471/transcript.json', sha256: sha256Hex(summary) },
      clinicalDocument: { uri: 's3://hs-output/enc-4471/summary.json', sha256: sha256Hex(summary) },
    });
    const e1 = await verifyEnvelope(wrong, { keys: jwks, objectStore: store }).catch((e: ScribeError) => e);
    expect((e1 as ScribeError).code).toBe('ARTIFACT_HASH_MISMATCH');
    const missing = await envelope({
      jobName: 'enc-4471-2026-11-20',
      transcript: { uri: 's3://hs-output/nope/transcript.json', sha256: sha256Hex(transcript) },
      clinicalDocument: { uri: 's3://hs-output/enc-4471/summary.json', sha256: sha256Hex(summary) },
    });
    const e2 = await verifyEnvelope(missing, { keys: jwks, objectStore: store }).catch((e: ScribeError) => e);
    expect((e2 as ScribeError).code).toBe('ARTIFACT_MISSING');
  });

  it('reports an unreachable store as transient', async () => {
    const down = new S3ObjectStore({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9',
      forcePathStyle: true,
      credentials,
    });
    const e = await down.getObject({ bucket: 'hs-output', key: 'x' }).catch((x: ScribeError) => x);
    expect((e as ScribeError).code).toBe('ARTIFACT_UNAVAILABLE');
    expect((e as ScribeError).disposition).toBe('retry');
    down.destroy();
  });

  it('gives up on a store that takes the request and never answers (transient), after its timeout', async () => {
    // A TCP server that reads the request and says nothing, as a wedged proxy or store does.
    const sockets = new Set<import('node:net').Socket>();
    const silent = (await import('node:net')).createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.resume();
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const store = new S3ObjectStore({
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
      forcePathStyle: true,
      credentials,
      requestTimeoutMs: 500,
    });
    try {
      const t0 = performance.now();
      const e = await store.getObject({ bucket: 'hs-output', key: 'x' }).catch((x: ScribeError) => x);
      expect((e as ScribeError).code).toBe('ARTIFACT_UNAVAILABLE');
      expect((e as ScribeError).disposition).toBe('retry');
      // Given up on: not hung (the SDK retries a timed-out request a few times, each bounded).
      expect(performance.now() - t0).toBeLessThan(20_000);
      expect(sockets.size).toBeGreaterThan(0);
    } finally {
      store.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  }, 30_000);
});

describe('Transcribe GetMedicalScribeJob (real SDK, local JSON 1.1 server)', () => {
  it('locates the output files of a completed job; the hashes are recorded as not signed', async () => {
    jobs.set('enc-4471-2026-11-20', {
      MedicalScribeJobName: 'enc-4471-2026-11-20',
      MedicalScribeJobStatus: 'COMPLETED',
      MedicalScribeOutput: {
        TranscriptFileUri: 's3://hs-output/enc-4471/transcript.json',
        ClinicalDocumentUri: 'https://hs-output.s3.us-east-1.amazonaws.com/enc-4471/summary.json',
      },
    });
    const locator = new TranscribeJobLocator({ region: 'us-east-1', endpoint: transcribeUrl, credentials });
    const v = await verifyEnvelope(await envelope({ jobName: 'enc-4471-2026-11-20' }), {
      keys: jwks,
      objectStore: store,
      jobLocator: locator,
    });
    expect(v.artifacts.transcript).toMatchObject({
      source: 'job',
      hashSigned: false,
      uri: 's3://hs-output/enc-4471/transcript.json',
    });
    expect(v.artifacts.clinicalDocument.sha256).toBe(sha256Hex(summary));
    locator.destroy();
  });

  it('waits for a job in progress (retry), and refuses an unknown or failed one', async () => {
    const locator = new TranscribeJobLocator({ region: 'us-east-1', endpoint: transcribeUrl, credentials });
    jobs.set('busy', { MedicalScribeJobName: 'busy', MedicalScribeJobStatus: 'IN_PROGRESS' });
    jobs.set('broken', {
      MedicalScribeJobName: 'broken',
      MedicalScribeJobStatus: 'FAILED',
      FailureReason: 'x',
    });
    const codes = await Promise.all(
      ['busy', 'broken', 'unknown'].map((j) =>
        locator.locate(j).catch((e: ScribeError) => [e.code, e.disposition]),
      ),
    );
    expect(codes).toEqual([
      ['HEALTHSCRIBE_JOB_NOT_READY', 'retry'],
      ['ARTIFACT_MISSING', 'reject'],
      ['ARTIFACT_MISSING', 'reject'],
    ]);
    locator.destroy();
  });
});
