/**
 * What the service-level reliability tests share: a fauxqs SQS/S3 server in the test process with a queue and
 * its dead-letter queue, a fresh PostgreSQL database per test file, `scribe-bridge serve` as a real child
 * process (its stderr kept for the PHI checks), small signed notes made in bulk, and the sink-side counts that
 * "exactly once" is judged by: DocumentReferences per identifier at the FHIR server, messages per TXA-12 and
 * distinct MSH-10 at the MLLP receiver.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { buildApp } from 'fauxqs';
import pg from 'pg';
import { expect } from 'vitest';
import { hashToken } from '../../src/config/index.ts';
import type { JsonValue } from '../../src/contract/json.ts';
import { type FhirTestServer, startFhirServer } from './fhir-server.ts';
import { type MllpTestServer, startMllpServer } from './mllp-server.ts';
import { envelopeJson, signed, type TestKey, testKey } from './notes.ts';

const root = new URL('../../', import.meta.url).pathname;
const bin = join(root, 'bin/scribe-bridge.js');
export const OPERATOR_TOKEN = 'op-token-reliability';
export const INTAKE_TOKEN = 'in-token-reliability';
export const AWS_ENV = {
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
  AWS_REGION: 'us-east-1',
} as const;
/** The credentials fauxqs takes (any will do), for the SDK clients the tests make themselves. */
export const AWS_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

export async function until<T>(
  f: () => Promise<T | undefined | false>,
  ms = 60_000,
  what = 'condition',
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface Queue {
  readonly endpoint: string;
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  readonly dlqUrl: string;
  readonly bucket: string;
  readonly s3: S3Client;
  /** Sends bodies in batches of 10. */
  send(bodies: readonly string[]): Promise<void>;
  /** Visible + in flight + delayed messages of the main queue (fauxqs attributes). */
  depth(url?: string): Promise<number>;
  /** Every message of the dead-letter queue with its attributes (received and left invisible). */
  drainDlq(): Promise<Message[]>;
  close(): Promise<void>;
}

/**
 * A fauxqs server with the queue `name` (created with `attributes`, if any), its dead-letter queue `<name>-dlq`
 * (`<name>-dlq.fifo` for a FIFO `<name>.fifo`) and the claim-check bucket, on `port` (any free one by default).
 */
export async function startQueue(
  name = 'signed-notes',
  attributes?: Record<string, string>,
  port = 0,
): Promise<Queue> {
  const app = buildApp({ logger: false });
  const endpoint = await app.listen({ port, host: '127.0.0.1' });
  const sqs = new SQSClient({ endpoint, region: 'us-east-1', credentials: AWS_CREDENTIALS });
  // A `.fifo` name makes FIFO queues (the DLQ too, as SQS requires): `<name>-dlq.fifo`.
  const fifo = name.endsWith('.fifo');
  const fifoAttributes = fifo ? { FifoQueue: 'true' } : undefined;
  const queueUrl = (
    await sqs.send(
      new CreateQueueCommand({ QueueName: name, Attributes: { ...fifoAttributes, ...attributes } }),
    )
  ).QueueUrl!;
  const dlqName = fifo ? `${name.slice(0, -'.fifo'.length)}-dlq.fifo` : `${name}-dlq`;
  const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: dlqName, Attributes: fifoAttributes })))
    .QueueUrl!;
  const s3 = new S3Client({
    endpoint,
    region: 'us-east-1',
    credentials: AWS_CREDENTIALS,
    forcePathStyle: true,
  });
  const bucket = 'claims';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const depth = async (url = queueUrl) => {
    const a = await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: url,
        AttributeNames: [
          'ApproximateNumberOfMessages',
          'ApproximateNumberOfMessagesNotVisible',
          'ApproximateNumberOfMessagesDelayed',
        ],
      }),
    );
    const at = a.Attributes ?? {};
    return (
      Number(at['ApproximateNumberOfMessages'] ?? 0) +
      Number(at['ApproximateNumberOfMessagesNotVisible'] ?? 0) +
      Number(at['ApproximateNumberOfMessagesDelayed'] ?? 0)
    );
  };
  return {
    endpoint,
    sqs,
    queueUrl,
    dlqUrl,
    bucket,
    s3,
    depth,
    async send(bodies) {
      for (let i = 0; i < bodies.length; i += 10) {
        const out = await sqs.send(
          new SendMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: bodies.slice(i, i + 10).map((b, k) => ({ Id: `m${i + k}`, MessageBody: b })),
          }),
        );
        if (out.Failed?.length) throw new Error(`send failed: ${JSON.stringify(out.Failed)}`);
      }
    },
    async drainDlq() {
      const out: Message[] = [];
      for (let empty = 0; empty < 2; ) {
        const r = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: dlqUrl,
            MaxNumberOfMessages: 10,
            MessageAttributeNames: ['All'],
            MessageSystemAttributeNames: ['All'],
            VisibilityTimeout: 300,
            WaitTimeSeconds: 0,
          }),
        );
        const ms = r.Messages ?? [];
        out.push(...ms);
        empty = ms.length === 0 ? empty + 1 : 0;
      }
      return out;
    },
    async close() {
      sqs.destroy();
      s3.destroy();
      await app.close();
    },
  };
}

export type Database = Awaited<ReturnType<typeof freshDatabase>>;

/** A fresh, uniquely named PostgreSQL database on 127.0.0.1:5432, dropped by `drop()`. */
export async function freshDatabase(
  prefix: string,
): Promise<{ url: string; query: pg.Pool['query']; pool: pg.Pool; drop(): Promise<void> }> {
  const name = `sb_${prefix}_${process.pid}_${Date.now().toString(36)}`.toLowerCase();
  const admin = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = `postgres://postgres@127.0.0.1:5432/${name}`;
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  // A client still ending when drop() terminates the database's connections must not throw from its socket.
  pool.on('error', () => undefined);
  pool.on('connect', (c) => c.on('error', () => undefined));
  return {
    url,
    pool,
    query: pool.query.bind(pool) as pg.Pool['query'],
    async drop() {
      await pool.end();
      const a = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
      await a.connect();
      await a.query(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}

/** What `serve` runs against in the service tests: its database, its queue, a FHIR server and an MLLP receiver. */
export interface ServiceStack<D extends Database | undefined = Database> {
  /** The fresh PostgreSQL database (undefined when the test runs the service on PGlite). */
  readonly db: D;
  readonly queue: Queue;
  readonly fhir: FhirTestServer;
  readonly mllp: MllpTestServer;
  /**
   * Writes `serve`'s config to `dir` (writeServiceConfig) for this stack: its database (PGlite in `dir` without
   * one), its queue, and the FHIR and MLLP destinations at its servers.
   */
  writeConfig(dir: string, keysFile: string, options?: StackConfigOptions): string;
  /** Closes the FHIR server, the MLLP receiver and the queue, then drops the database. */
  close(): Promise<void>;
}

/** The config options a stack does not fix. */
export type StackConfigOptions = Omit<
  ServiceConfigOptions,
  'store' | 'queue' | 'keysFile' | 'fhirBaseUrl' | 'mllpPort'
>;

export interface ServiceStackOptions {
  /** The queue's name (startQueue's default otherwise). */
  readonly queue?: string;
  /** How the MLLP receiver answers (AA to everything otherwise). */
  readonly mllp?: Parameters<typeof startMllpServer>[0];
}

/**
 * Starts, in this order, a fresh database named after `database` (none when undefined), a queue, a FHIR server
 * and an MLLP receiver. When one fails to start, those already started are closed again.
 */
export async function startServiceStack(
  database: string,
  options?: ServiceStackOptions,
): Promise<ServiceStack>;
export async function startServiceStack(
  database: string | undefined,
  options?: ServiceStackOptions,
): Promise<ServiceStack<Database | undefined>>;
export async function startServiceStack(
  database: string | undefined,
  options: ServiceStackOptions = {},
): Promise<ServiceStack<Database | undefined>> {
  let db: Database | undefined;
  let queue: Queue | undefined;
  let fhir: FhirTestServer | undefined;
  let mllp: MllpTestServer | undefined;
  const close = async () => {
    await fhir?.close();
    await mllp?.close();
    await queue?.close();
    await db?.drop();
  };
  try {
    db = database === undefined ? undefined : await freshDatabase(database);
    queue = await startQueue(options.queue);
    fhir = await startFhirServer();
    mllp = await startMllpServer(options.mllp);
  } catch (e) {
    await close().catch(() => undefined);
    throw e;
  }
  return {
    db,
    queue,
    fhir,
    mllp,
    writeConfig: (dir, keysFile, o = {}) =>
      writeServiceConfig(dir, {
        store: db?.url ?? 'pglite://./data',
        queue,
        keysFile,
        fhirBaseUrl: fhir.baseUrl,
        mllpPort: mllp.port,
        ...o,
      }),
    close,
  };
}

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly url: Promise<string>;
  stderr(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then wait for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `node bin/scribe-bridge.js serve --config <file>` with AWS test credentials and `env`. */
export function startServe(configPath: string, env: Record<string, string> = {}): ServeProcess {
  const child = spawn(process.execPath, [bin, 'serve', '--config', configPath], {
    cwd: root,
    env: { ...process.env, ...AWS_ENV, SCRIBE_BRIDGE_FAULT: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  const url = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code, signal) =>
      reject(new Error(`serve exited (${code ?? signal}) before listening: ${err.slice(-2000)}`)),
    );
  });
  url.catch(() => undefined);
  return {
    child,
    url,
    stderr: () => err,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

export interface ServiceConfigOptions {
  readonly store: string;
  readonly queue: Queue;
  readonly keysFile: string;
  readonly fhirBaseUrl?: string;
  readonly mllpPort?: number;
  readonly fhirMapping?: string;
  readonly visibilityTimeoutSeconds?: number;
  readonly retry?: string;
  readonly fhirTimeoutMs?: number;
  readonly mllpAckTimeoutMs?: number;
  readonly concurrency?: number;
  /** FHIR write mode (default conditional-create). */
  readonly fhirWrite?: 'conditional-create' | 'put';
}

/** Writes a config for `serve`: SQS intake from `queue`, a FHIR and/or an MLLP destination. */
export function writeServiceConfig(dir: string, o: ServiceConfigOptions): string {
  const dests: string[] = [];
  const ids: string[] = [];
  const retry = o.retry ?? '{ maxAttempts: 20, initialDelayMs: 100, maxDelayMs: 1000 }';
  if (o.fhirBaseUrl) {
    ids.push('ehr-fhir');
    dests.push(`  - id: ehr-fhir
    type: fhir
    baseUrl: ${o.fhirBaseUrl}
    mapping: ${o.fhirMapping ?? 'us-core-docref'}
    auth: { type: none }
    timeoutMs: ${o.fhirTimeoutMs ?? 2000}
    write: ${o.fhirWrite ?? 'conditional-create'}
    retry: ${retry}${o.concurrency ? `\n    concurrency: ${o.concurrency}` : ''}`);
  }
  if (o.mllpPort) {
    ids.push('ehr-mdm');
    dests.push(`  - id: ehr-mdm
    type: mllp
    host: 127.0.0.1
    port: ${o.mllpPort}
    mapping: mdm
    ackTimeoutMs: ${o.mllpAckTimeoutMs ?? 2000}
    retry: ${retry}`);
  }
  const vis = o.visibilityTimeoutSeconds ?? 4;
  const path = join(dir, 'config.yaml');
  writeFileSync(
    path,
    `store: ${o.store}
http: { host: 127.0.0.1, port: 0 }
auth:
  tokens:
    - { role: operator, sha256: "${hashToken(OPERATOR_TOKEN)}" }
    - { role: intake, sha256: "${hashToken(INTAKE_TOKEN)}" }
intake:
  sqs:
    queueUrl: ${o.queue.queueUrl}
    region: us-east-1
    endpoint: ${o.queue.endpoint}
    deadLetterQueueUrl: ${o.queue.dlqUrl}
    visibilityTimeoutSeconds: ${vis}
    waitTimeSeconds: 1
    heartbeatSeconds: ${Math.max(1, Math.floor(vis / 3))}
s3: { region: us-east-1, endpoint: ${o.queue.endpoint}, forcePathStyle: true }
tenants:
  - id: riverside-clinic
    reviewKeys: ${o.keysFile}
    destinations: [${ids.join(', ')}]
destinations:
${dests.join('\n')}
`,
  );
  return path;
}

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A test key and the JWKS file the service reads it from. */
export async function noteKey(dir: string): Promise<{ key: TestKey; keysFile: string }> {
  const key = await testKey('ES256', 'reliability-key');
  const keysFile = join(dir, 'keys.jwks.json');
  writeFileSync(keysFile, JSON.stringify({ keys: [key.publicJwk] }));
  return { key, keysFile };
}

/** A small signed note (inline artifacts, a few KB): revision 1 final, or revision 2 amending it. */
export async function smallNote(
  key: TestKey,
  noteId: string,
  revision: 1 | 2 = 1,
  patch: (e: { [k: string]: JsonValue }) => void = () => undefined,
): Promise<string> {
  const env = envelopeJson({
    noteId,
    revision,
    status: revision === 1 ? 'final' : 'amended',
    replaces: revision === 1 ? null : 1,
    encounter: {
      identifier: [{ system: 'urn:oid:2.16.840.1.113883.3.7418.2.7', value: `ENC-${noteId}` }],
      period: { start: '2026-11-20T14:02:00-05:00', end: '2026-11-20T14:31:00-05:00' },
      class: 'AMB',
    },
  });
  if (revision === 2) {
    const s = (env['note'] as { sections: Array<{ sentences: Array<{ [k: string]: JsonValue }> }> })
      .sections[1]!.sentences;
    s[0]!['text'] = 'Order an EKG and a lipid panel today.';
    delete s[0]!['draft'];
  }
  patch(env);
  return JSON.stringify(await signed(env, key));
}

export const NOTE_SYSTEM = 'urn:scribe-bridge:riverside-clinic:note';

/** DocumentReferences stored at the FHIR server per identifier value of our note system (every one, unpaged). */
export async function fhirCounts(fhir: FhirTestServer): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const all = await fhir.repo.searchResources({ resourceType: 'DocumentReference' });
  for (const r of all as Array<{ identifier?: Array<{ system?: string; value?: string }> }>) {
    for (const i of r.identifier ?? [])
      if (i.system === NOTE_SYSTEM && i.value) counts.set(i.value, (counts.get(i.value) ?? 0) + 1);
  }
  return counts;
}

/**
 * The MLLP receiver's view: per TXA-12.1, the messages received and the distinct MSH-10s among them. A
 * receiver that de-duplicates by MSH-10 (as PRODUCT.md assumes) stores one document per distinct MSH-10.
 */
export function mllpByDocument(
  m: MllpTestServer,
): Map<string, { messages: number; controlIds: Set<string> }> {
  const out = new Map<string, { messages: number; controlIds: Set<string> }>();
  for (const r of m.received) {
    const txa =
      r.raw
        .split('\r')
        .find((s) => s.startsWith('TXA|'))
        ?.split('|') ?? [];
    const doc = txa[12]?.split('^')[0] ?? '?';
    const e = out.get(doc) ?? { messages: 0, controlIds: new Set<string>() };
    e.messages++;
    e.controlIds.add(r.controlId);
    out.set(doc, e);
  }
  return out;
}

/**
 * MLLP exactly once: the receiver got every TXA-12 the ledger rendered for `ehr-mdm` and nothing else, each under
 * one MSH-10 only, and messages beyond one per document (resends, same MSH-10) only after lost answers.
 */
export async function expectMllpOncePerDocument(
  m: MllpTestServer,
  db: Pick<Database, 'query'>,
): Promise<void> {
  const docs = await db.query<{ doc: string }>(
    `select identifiers->0->>'documentNumber' as doc from renderings where destination = 'ehr-mdm'`,
  );
  const byDoc = mllpByDocument(m);
  expect([...byDoc.keys()].sort()).toEqual(docs.rows.map((r) => r.doc).sort());
  expect([...byDoc.values()].filter((v) => v.controlIds.size !== 1)).toEqual([]);
  expect(m.received.length - byDoc.size).toBeLessThanOrEqual(await lostAnswers(db, 'ehr-mdm'));
}

/**
 * Deliveries in state `delivered` for these notes of riverside-clinic, read through a running service's operator
 * API (a PGlite ledger is held by the service until it stops). A note not recorded yet counts 0; -1 when the
 * service does not answer 200 or 404.
 */
export async function deliveredOverHttp(url: string, noteIds: readonly string[]): Promise<number> {
  let n = 0;
  for (const id of noteIds) {
    const r = await fetch(`${url}/v1/notes/riverside-clinic/${id}`, {
      headers: { authorization: `Bearer ${OPERATOR_TOKEN}` },
    });
    if (r.status === 404) continue;
    if (r.status !== 200) return -1; // not ready to answer yet: the caller polls again
    const b = (await r.json()) as { revisions: Array<{ deliveries: Array<{ state: string }> }> };
    for (const v of b.revisions) n += v.deliveries.filter((d) => d.state === 'delivered').length;
  }
  return n;
}

/** Attempts at a destination whose answer was lost (ambiguous, or the lease ran out mid-send). */
export async function lostAnswers(db: Pick<Database, 'query'>, destination: string): Promise<number> {
  const r = await db.query<{ n: number }>(
    `select count(*)::int as n from delivery_attempts a join deliveries d on d.id = a.delivery_id
     where d.destination = $1 and a.outcome in ('ambiguous', 'lease-expired')`,
    [destination],
  );
  return r.rows[0]!.n;
}

/**
 * FHIR exactly once by conditional create: one If-None-Exist POST per (note, revision), plus at most one resend
 * (the same conditional POST, which writes nothing when the first landed) per lost answer the ledger recorded;
 * no PUT; exactly one DocumentReference per expected identifier value.
 */
export async function expectFhirCreatedOnce(
  fhir: FhirTestServer,
  db: Pick<Database, 'query'>,
  expected: readonly string[],
): Promise<void> {
  const counts = await fhirCounts(fhir);
  const creates = fhir.requests.filter(
    (r) => r.method === 'POST' && r.path === 'DocumentReference' && r.ifNoneExist?.startsWith('identifier='),
  ).length;
  expect(creates).toBeGreaterThanOrEqual(expected.length);
  expect(creates - expected.length).toBeLessThanOrEqual(await lostAnswers(db, 'ehr-fhir'));
  expect(fhir.count('POST', 'DocumentReference')).toBe(creates);
  expect(fhir.count('PUT', 'DocumentReference')).toBe(0);
  expect(counts.size).toBe(expected.length);
  expect([...counts.keys()].sort()).toEqual([...expected].sort());
  expect([...counts.entries()].filter(([, n]) => n !== 1)).toEqual([]);
}
