/**
 * `scribe-bridge demo`, the machinery: everything on this machine, on 127.0.0.1 and ephemeral ports —
 *
 * - an SQS/S3-compatible server (fauxqs, in process) with the intake queue, its dead-letter queue and a bucket
 *   for the HealthScribe artifacts;
 * - a FHIR server (@medplum/fhir-router behind express, {@link startFhirServer}) and an MLLP receiver that
 *   acknowledges everything ({@link startMllpServer});
 * - the service itself ({@link createService}) on a generated configuration: a temporary PGlite ledger, the
 *   fixture tenants, one FHIR destination (`fhir-transaction`) and one MLLP destination (`mdm`).
 *
 * It then acts as the review application: each valid fixture, its artifacts uploaded to S3 and referenced by
 * `s3://` URI (or, for envelopes that carry them inline, the whole envelope put in S3 and sent as a claim-check
 * pointer), re-signed with the fixture's TEST key and sent to the queue; plus one poison message (a signed note
 * altered after signing) that must end in the DLQ with its reason code. It waits until every delivery is
 * terminal and reports where each revision went, from the ledger and from the sinks' own view.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { Hl7Message } from '@medplum/core';
import { buildApp } from 'fauxqs';
import { type Config, hashToken, loadConfig } from '../config/index.ts';
import { sha256Hex } from '../contract/artifacts.ts';
import { countEditClasses, type EditClass } from '../contract/edits.ts';
import type { JsonValue } from '../contract/json.ts';
import { loadJwksFile } from '../contract/signature.ts';
import { verifyEnvelope } from '../contract/verify.ts';
import { toScribeError } from '../errors.ts';
import { REASON_ATTRIBUTE } from '../ingest/sqs.ts';
import type { DeliveryState } from '../ledger/types.ts';
import { TERMINAL_STATES } from '../ledger/types.ts';
import { noteIdentifier } from '../map/ids.ts';
import { createService, type Service, type ServiceLog } from '../service/service.ts';
import { readTrace } from '../trace/trace.ts';
import type { TraceQuery } from '../trace/types.ts';
import { type FhirTestServer, startFhirServer } from './fhir-server.ts';
import {
  type FixtureEntry,
  KEYS_DIR,
  readFixture,
  s3Fixture,
  VALID_ENVELOPES_DIR,
  validFixtures,
} from './fixtures.ts';
import { type MllpTestServer, startMllpServer } from './mllp-receiver.ts';

export const DEMO_FHIR_DESTINATION = 'ehr-fhir';
export const DEMO_MLLP_DESTINATION = 'ehr-mdm';
const BUCKET = 'healthscribe-output';
const REGION = 'us-east-1';
/** Credentials for the embedded server only (it checks nothing); the AWS chain is never consulted. */
const DEMO_CREDENTIALS = { accessKeyId: 'demo', secretAccessKey: 'demo' } as const;
/** Envelopes larger than this travel as claim-check pointers (SQS messages are limited to 256 KiB). */
const POINTER_THRESHOLD = 64 * 1024;
/**
 * Characters above U+FFFF: SQS accepts them, but fauxqs refuses them (its body check stops at U+FFFD), so an
 * envelope carrying any (the torture fixture) travels as a claim-check pointer.
 */
const ASTRAL = /[\u{10000}-\u{10FFFF}]/u;

export interface DemoOptions {
  /** FHIR profile folders (US Core 8) for the mapping proofs; empty: base R4 and the product's own profiles. */
  readonly profiles: readonly string[];
  /** Keep the ledger (and a config to `serve` it) in this folder instead of a removed temporary one. */
  readonly keepDir?: string;
  /** How long to wait for every delivery to end, ms (default 120 s). */
  readonly timeoutMs?: number;
  readonly onProgress?: (phase: 'send' | 'deliver', done: number, total: number) => void;
  readonly log?: ServiceLog;
}

/** How a note travelled on the queue. */
export type SentAs = 's3-artifacts' | 'pointer' | 'inline';

/** What one destination's EHR holds for a revision: from the ledger, and as the sink itself saw it. */
export interface DemoDelivery {
  readonly destination: string;
  readonly type: 'fhir' | 'mllp';
  readonly mapping: { readonly id: string; readonly version: string };
  readonly state: DeliveryState;
  readonly attempts: number;
  readonly lastErrorCode: string | null;
  /** FHIR: the resource the server assigned. */
  readonly fhir?: {
    readonly resourceType: string;
    readonly id: string;
    readonly versionId: string;
    /** Its status on the server now (`current`, `superseded` after an amendment, `entered-in-error` after a retraction). */
    readonly status: string;
    /** Resources on the server carrying its note identifier (exactly once: 1). */
    readonly onServer: number;
  };
  /** MLLP: the ACK and what the receiver got. */
  readonly mllp?: {
    readonly ackCode: string | null;
    readonly controlId: string;
    readonly documentNumber: string;
    readonly event: string;
    /** Messages the receiver got with this MSH-10 (exactly once: 1). */
    readonly received: number;
  };
}

export interface DemoNote {
  readonly file: string;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  readonly status: string;
  readonly sentAs: SentAs;
  readonly revisionState: string | null;
  readonly provenance: {
    readonly sentences: Record<EditClass, number>;
    readonly evidenceLinks: number;
    readonly removedDraftSentences: number;
  };
  readonly deliveries: readonly DemoDelivery[];
  /** Its provenance trace: where it is served, and what the trace module returned for it. */
  readonly trace: DemoTrace;
}

/** The trace of one revision, as `readTrace` assembled it from the ledger (counts and checks only: no text). */
export interface DemoTrace {
  /** `GET` this with the auditor token while the service runs. */
  readonly url: string;
  /** `scribe-bridge trace` on the kept ledger (with `--keep`). */
  readonly command?: string;
  readonly sentences?: number;
  readonly evidenceSegments?: number;
  readonly signatureVerified?: boolean;
  /** Content, payload and artifact hashes re-checked by the trace: all equal. */
  readonly hashesOk?: boolean;
  /** The EHR-side ids the trace resolved back to this note (`DocumentReference/…`, `MSH-10 …`). */
  readonly resolvedFrom?: readonly string[];
  /** The error code when the trace could not be read. */
  readonly error?: string;
}

export interface DemoDeadLetter {
  readonly messageId: string;
  readonly code: string;
  /** What the demo did to make it poison. */
  readonly why: string;
}

export interface DemoResult {
  readonly ok: boolean;
  /** Why it is not ok: one line each, no PHI. */
  readonly problems: readonly string[];
  readonly notes: readonly DemoNote[];
  readonly deadLetters: readonly DemoDeadLetter[];
  /** Messages left on the intake queue (0 when drained). */
  readonly queueDepth: number;
  readonly profiles: readonly string[];
  readonly endpoints: {
    readonly service: string;
    readonly sqs: string;
    readonly queueUrl: string;
    readonly deadLetterQueueUrl: string;
    readonly fhir: string;
    readonly mllp: string;
  };
  /** The ledger's folder, when kept; and the config that serves it. */
  readonly kept?: { readonly dir: string; readonly config: string };
  readonly durationMs: number;
  /** Wall time of each phase, ms: starting everything, staging and sending, waiting for the deliveries. */
  readonly timings: { readonly startMs: number; readonly sendMs: number; readonly deliverMs: number };
}

/** The demo after its run: the result, and everything still running until `stop()`. */
export interface RunningDemo {
  readonly result: DemoResult;
  readonly service: Service;
  /** Bearer tokens for the service's roles (generated for this run; print them only to the terminal). */
  readonly tokens: Readonly<Record<'intake' | 'operator' | 'auditor', string>>;
  /** The generated configuration (points at the embedded servers while they run). */
  readonly configFile: string;
  stop(): Promise<void>;
}

export async function runDemo(options: DemoOptions): Promise<RunningDemo> {
  const started = performance.now();
  const cleanups: Array<() => Promise<void> | void> = [];
  const stop = async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // best effort: the rest must still stop
      }
    }
    cleanups.length = 0;
  };
  try {
    const workDir = mkdtempSync(join(tmpdir(), 'scribe-bridge-demo-'));
    cleanups.push(() => rmSync(workDir, { recursive: true, force: true }));
    const keepDir = options.keepDir ? resolve(options.keepDir) : undefined;
    const ledgerDir = join(keepDir ?? workDir, 'ledger');
    if (keepDir) mkdirSync(keepDir, { recursive: true });

    // The embedded SQS/S3 server, its queues and bucket.
    const fauxqs = buildApp({ logger: false });
    const endpoint = await fauxqs.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => fauxqs.close());
    const sqs = new SQSClient({ endpoint, region: REGION, credentials: DEMO_CREDENTIALS });
    cleanups.push(() => sqs.destroy());
    const s3 = new S3Client({
      endpoint,
      region: REGION,
      credentials: DEMO_CREDENTIALS,
      forcePathStyle: true,
    });
    cleanups.push(() => s3.destroy());
    const queueUrl = (
      await sqs.send(
        new CreateQueueCommand({ QueueName: 'signed-notes', Attributes: { VisibilityTimeout: '30' } }),
      )
    ).QueueUrl!;
    const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'signed-notes-dlq' }))).QueueUrl!;
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));

    // The EHR side.
    const fhir = await startFhirServer();
    cleanups.push(() => fhir.close());
    const mllp = await startMllpServer();
    cleanups.push(() => mllp.close());

    // The service, on a generated configuration.
    const tokens = {
      intake: randomBytes(32).toString('base64url'),
      operator: randomBytes(32).toString('base64url'),
      auditor: randomBytes(32).toString('base64url'),
    };
    const configFile = join(keepDir ?? workDir, 'demo.yaml');
    writeFileSync(configFile, demoConfigYaml({ ledgerDir, tokens, endpoint, queueUrl, dlqUrl, fhir, mllp }));
    const config: Config = await loadConfig(configFile, {});
    const service = await createService(config, {
      profiles: [...options.profiles],
      awsCredentials: DEMO_CREDENTIALS,
      housekeepingMs: 1_000,
      ...(options.log ? { log: options.log } : {}),
    });
    cleanups.push(() => service.stop());

    let kept: DemoResult['kept'];
    if (keepDir) {
      // A config to `serve` the kept ledger later: no queue, and the (then absent) demo EHRs as destinations.
      const serveFile = join(keepDir, 'serve.yaml');
      writeFileSync(serveFile, serveConfigYaml(configFile));
      kept = { dir: ledgerDir, config: serveFile };
    }

    const startMs = Math.round(performance.now() - started);
    // The review application: stage and send every fixture, then one poison message.
    const fixtures = validFixtures();
    const put = async (key: string, bytes: Uint8Array) => {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes }));
    };
    const total = fixtures.length + 1;
    const sent: Array<{ fixture: FixtureEntry; sentAs: SentAs }> = [];
    for (const fixture of fixtures) {
      const { body, sentAs } = await queueBody(fixture, put);
      await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));
      sent.push({ fixture, sentAs });
      options.onProgress?.('send', sent.length, total);
    }
    const poison = await poisonBody(put);
    await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: poison.body }));
    options.onProgress?.('send', total, total);

    const sendMs = Math.round(performance.now() - started) - startMs;
    // Wait until every (revision, destination) is terminal and the poison message is in the DLQ.
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    const expected = sent.length * config.destinations.length;
    const deadLetters: DemoDeadLetter[] = [];
    const problems: string[] = [];
    for (;;) {
      let terminal = 0;
      for (const { fixture } of sent) {
        const st = await service.ledger.revisionStatus(fixture.tenant, fixture.noteId);
        const rev = st?.revisions.find((r) => r.revision === fixture.revision);
        terminal += rev?.deliveries.filter((d) => TERMINAL_STATES.includes(d.state)).length ?? 0;
        if (rev?.state === 'dead-lettered')
          terminal += config.destinations.length - (rev.deliveries.length ?? 0);
      }
      if (deadLetters.length === 0) deadLetters.push(...(await peekDeadLetters(sqs, dlqUrl, poison.why)));
      options.onProgress?.('deliver', Math.min(terminal, expected), expected);
      if (terminal >= expected && deadLetters.length > 0) break;
      if (Date.now() > deadline) {
        problems.push(
          `timed out after ${Math.round((options.timeoutMs ?? 120_000) / 1000)} s: ${terminal}/${expected} deliveries ended` +
            (deadLetters.length ? '' : ', the poison message is not in the dead-letter queue'),
        );
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }

    const deliverMs = Math.round(performance.now() - started) - startMs - sendMs;
    // Where each revision went.
    const notes: DemoNote[] = [];
    for (const { fixture, sentAs } of sent) {
      const note = await describeNote(fixture, sentAs, service, config, fhir, mllp, kept?.config);
      notes.push(note);
      for (const d of note.deliveries) {
        if (d.state !== 'delivered')
          problems.push(
            `${fixture.tenant}/${fixture.noteId} r${fixture.revision} → ${d.destination}: ${d.state}${d.lastErrorCode ? ` (${d.lastErrorCode})` : ''}`,
          );
        else if (fixture.status === 'entered-in-error' && d.fhir && d.fhir.status !== 'entered-in-error')
          problems.push(
            `${fixture.tenant}/${fixture.noteId} r${fixture.revision} → ${d.destination}: the retracted resource is ${d.fhir.status}, not entered-in-error`,
          );
        else if ((d.fhir && d.fhir.onServer !== 1) || (d.mllp && d.mllp.received !== 1))
          problems.push(
            `${fixture.tenant}/${fixture.noteId} r${fixture.revision} → ${d.destination}: the EHR holds it ${d.fhir?.onServer ?? d.mllp?.received} times, not once`,
          );
      }
      if (note.trace.error)
        problems.push(
          `${fixture.tenant}/${fixture.noteId} r${fixture.revision}: the trace failed (${note.trace.error})`,
        );
      else if (!note.trace.signatureVerified || !note.trace.hashesOk)
        problems.push(`${fixture.tenant}/${fixture.noteId} r${fixture.revision}: the trace's checks failed`);
      if (note.deliveries.length !== config.destinations.length)
        problems.push(
          `${fixture.tenant}/${fixture.noteId} r${fixture.revision}: ${note.deliveries.length} of ${config.destinations.length} deliveries recorded (revision ${note.revisionState ?? 'not recorded'})`,
        );
    }
    const expectedCode = 'SIGNATURE_INVALID';
    if (deadLetters.length > 0 && deadLetters[0]!.code !== expectedCode)
      problems.push(`the poison message was dead-lettered with ${deadLetters[0]!.code}, not ${expectedCode}`);
    const queueDepth = await approximateDepth(sqs, queueUrl);
    if (queueDepth !== 0) problems.push(`${queueDepth} message(s) left on the intake queue`);

    const result: DemoResult = {
      ok: problems.length === 0,
      problems,
      notes,
      deadLetters,
      queueDepth,
      profiles: [...options.profiles],
      endpoints: {
        service: service.url,
        sqs: endpoint,
        queueUrl,
        deadLetterQueueUrl: dlqUrl,
        fhir: fhir.baseUrl,
        mllp: `${mllp.host}:${mllp.port}`,
      },
      ...(kept ? { kept } : {}),
      durationMs: Math.round(performance.now() - started),
      timings: { startMs, sendMs, deliverMs },
    };
    return { result, service, tokens, configFile, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

function demoConfigYaml(o: {
  ledgerDir: string;
  tokens: Record<'intake' | 'operator' | 'auditor', string>;
  endpoint: string;
  queueUrl: string;
  dlqUrl: string;
  fhir: FhirTestServer;
  mllp: MllpTestServer;
}): string {
  const q = (s: string) => JSON.stringify(s);
  return `# Generated by scribe-bridge demo: the embedded servers below live only while the demo runs.
store: ${q(`pglite://${o.ledgerDir}`)}
http: { host: 127.0.0.1, port: 0 }
auth:
  tokens:
    - { role: intake, sha256: ${q(hashToken(o.tokens.intake))} }
    - { role: operator, sha256: ${q(hashToken(o.tokens.operator))} }
    - { role: auditor, sha256: ${q(hashToken(o.tokens.auditor))} }
intake:
  sqs:
    queueUrl: ${q(o.queueUrl)}
    region: ${REGION}
    endpoint: ${q(o.endpoint)}
    deadLetterQueueUrl: ${q(o.dlqUrl)}
    visibilityTimeoutSeconds: 30
    waitTimeSeconds: 1
s3: { region: ${REGION}, endpoint: ${q(o.endpoint)}, forcePathStyle: true }
tenants:
  - id: riverside-clinic
    reviewKeys: ${q(join(KEYS_DIR, 'riverside-clinic.jwks.json'))}
    destinations: [${DEMO_FHIR_DESTINATION}, ${DEMO_MLLP_DESTINATION}]
  - id: harbor-health
    reviewKeys: ${q(join(KEYS_DIR, 'harbor-health.jwks.json'))}
    destinations: [${DEMO_FHIR_DESTINATION}, ${DEMO_MLLP_DESTINATION}]
destinations:
  - id: ${DEMO_FHIR_DESTINATION}
    type: fhir
    baseUrl: ${q(o.fhir.baseUrl)}
    mapping: fhir-transaction
    auth: { type: none }
    retry: { maxAttempts: 5, initialDelayMs: 200, maxDelayMs: 2000 }
  - id: ${DEMO_MLLP_DESTINATION}
    type: mllp
    host: 127.0.0.1
    port: ${o.mllp.port}
    mapping: mdm
    ackTimeoutMs: 5000
    retry: { maxAttempts: 5, initialDelayMs: 200, maxDelayMs: 2000 }
`;
}

/** The demo config without the queue and S3 sections: what `serve --config` runs on the kept ledger. */
function serveConfigYaml(demoConfig: string): string {
  const text = readFileSync(demoConfig, 'utf8');
  return text
    .replace(/^auth:\n(?: {2}.*\n)+/m, '')
    .replace(/^intake:\n(?: {2}.*\n)+/m, '')
    .replace(/^s3: .*\n/m, '')
    .replace(/^http: .*$/m, 'http: { host: 127.0.0.1, port: 8080 }')
    .replace(
      /^# Generated by scribe-bridge demo.*$/m,
      '# Generated by scribe-bridge demo --keep: serves the kept ledger (HTTP intake only; the demo EHRs are gone).\n' +
        '# Bearer tokens: set SCRIBE_BRIDGE_TOKEN_INTAKE, _OPERATOR and _AUDITOR before `serve --config` (or add auth.tokens).',
    );
}

/** The queue body for one fixture and how it travels. */
async function queueBody(
  fixture: FixtureEntry,
  put: (key: string, bytes: Uint8Array) => Promise<void>,
): Promise<{ body: string; sentAs: SentAs }> {
  let body: string;
  let sentAs: SentAs;
  if (fixture.artifacts === 'file') {
    body = await s3Fixture(fixture.file, BUCKET, put);
    sentAs = 's3-artifacts';
  } else {
    // Already queueable as signed (inline artifacts).
    body = JSON.stringify(readFixture(fixture.file));
    sentAs = 'inline';
  }
  if (Buffer.byteLength(body) > POINTER_THRESHOLD || ASTRAL.test(body)) {
    const key = `envelopes/${fixture.tenant}/${fixture.noteId}/r${fixture.revision}.json`;
    await put(key, Buffer.from(body));
    body = JSON.stringify({
      kind: 'signed-note-pointer',
      uri: `s3://${BUCKET}/${key}`,
      sha256: sha256Hex(body),
    });
    sentAs = 'pointer';
  }
  return { body, sentAs };
}

/** A signed note altered after signing (one sentence edited): the service must dead-letter it on first receive. */
async function poisonBody(
  put: (key: string, bytes: Uint8Array) => Promise<void>,
): Promise<{ body: string; why: string }> {
  const fixture = validFixtures().find((f) => f.artifacts === 'file' && f.revision === 1)!;
  const env = JSON.parse(await s3Fixture(fixture.file, BUCKET, put)) as { [k: string]: JsonValue };
  const note = env['note'] as { sections: Array<{ sentences: Array<{ text: string }> }> };
  note.sections[0]!.sentences[0]!.text += ' (altered after signing)';
  // A different note id, so the altered copy can never be confused with the real one in the ledger.
  env['noteId'] = `${env['noteId'] as string}-tampered`;
  return { body: JSON.stringify(env), why: 'a signed note altered after signing' };
}

/** Reads the DLQ without consuming it (visibility 0: the message stays for `dead-letters list`). */
async function peekDeadLetters(sqs: SQSClient, dlqUrl: string, why: string): Promise<DemoDeadLetter[]> {
  const r = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: dlqUrl,
      MaxNumberOfMessages: 10,
      VisibilityTimeout: 0,
      WaitTimeSeconds: 0,
      MessageAttributeNames: ['All'],
    }),
  );
  return (r.Messages ?? []).map((m) => ({
    messageId: m.MessageId ?? '?',
    code: m.MessageAttributes?.[REASON_ATTRIBUTE]?.StringValue ?? '?',
    why,
  }));
}

async function approximateDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const r = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return (
    Number(r.Attributes?.['ApproximateNumberOfMessages'] ?? 0) +
    Number(r.Attributes?.['ApproximateNumberOfMessagesNotVisible'] ?? 0)
  );
}

const keyCache = new Map<string, ReturnType<typeof loadJwksFile>>();

async function describeNote(
  fixture: FixtureEntry,
  sentAs: SentAs,
  service: Service,
  config: Config,
  fhir: FhirTestServer,
  mllp: MllpTestServer,
  serveConfig: string | undefined,
): Promise<DemoNote> {
  // The provenance summary, from the fixture as signed (the review application's view).
  let keys = keyCache.get(fixture.tenant);
  if (!keys) {
    keys = loadJwksFile(join(KEYS_DIR, `${fixture.tenant}.jwks.json`));
    keyCache.set(fixture.tenant, keys);
  }
  const v = await verifyEnvelope(await readFixtureBytes(fixture.file), {
    keys: await keys,
    envelopeDir: VALID_ENVELOPES_DIR,
    source: fixture.file,
  });
  const provenance = {
    sentences: countEditClasses(v.sentences),
    evidenceLinks: v.sentences.reduce((n, s) => n + s.evidence.length, 0),
    removedDraftSentences: v.removedDraftSentences.length,
  };

  const st = await service.ledger.revisionStatus(fixture.tenant, fixture.noteId);
  const rev = st?.revisions.find((r) => r.revision === fixture.revision);
  const deliveries: DemoDelivery[] = [];
  for (const d of rev?.deliveries ?? []) {
    const dest = config.destinations.find((x) => x.id === d.destination);
    const receipt = (d.receipt ?? {}) as { [k: string]: JsonValue };
    const base = {
      destination: d.destination,
      mapping: { id: d.mapping.id, version: d.mapping.version },
      state: d.state,
      attempts: d.attempts,
      lastErrorCode: d.lastErrorCode,
    };
    if (dest?.type === 'fhir') {
      // The server's own view: the resource the receipt names, and how many resources carry its identifier.
      const resourceType = String(receipt['resourceType'] ?? '');
      const id = String(receipt['id'] ?? '');
      let serverStatus = 'missing';
      let onServer = 0;
      try {
        const held = (await fhir.repo.readResource(resourceType, id)) as {
          status?: string;
          identifier?: Array<{ system?: string; value?: string }>;
        };
        serverStatus = held.status ?? '?';
        const ident = held.identifier?.find((i) => i.system === noteIdentifier(fixture).system);
        if (ident)
          onServer = (await fhir.search(resourceType, `identifier=${ident.system}|${ident.value}`)).length;
      } catch {
        // not on the server: reported as missing
      }
      deliveries.push({
        ...base,
        type: 'fhir',
        fhir: {
          resourceType: resourceType || '?',
          id: id || '?',
          versionId: String(receipt['versionId'] ?? '?'),
          status: serverStatus,
          onServer,
        },
      });
    } else if (dest?.type === 'mllp') {
      const controlId = String(receipt['controlId'] ?? '');
      const got = mllp.received.filter((m) => m.controlId === controlId);
      const msg = got[0] ? Hl7Message.parse(got[0].raw) : undefined;
      const [ack] = await service.ledger.db.query<{ ack_code: string | null }>(
        `select ack_code from delivery_attempts where delivery_id = $1 order by id desc limit 1`,
        [d.id],
      );
      deliveries.push({
        ...base,
        type: 'mllp',
        mllp: {
          ackCode: ack?.ack_code ?? null,
          controlId,
          documentNumber: msg?.getSegment('TXA')?.getField(12)?.getComponent(1) ?? '',
          event: msg?.getSegment('MSH')?.getField(9)?.toString() ?? '',
          received: got.length,
        },
      });
    }
  }
  const q = new URLSearchParams({
    tenant: fixture.tenant,
    noteId: fixture.noteId,
    revision: String(fixture.revision),
  });
  return {
    file: fixture.file,
    tenant: fixture.tenant,
    noteId: fixture.noteId,
    revision: fixture.revision,
    status: fixture.status,
    sentAs,
    revisionState: rev?.state ?? null,
    provenance,
    deliveries,
    trace: await traceOf(fixture, service, deliveries, `${service.url}/v1/trace?${q}`, serveConfig),
  };
}

function readFixtureBytes(file: string): Promise<Uint8Array> {
  return readFile(join(VALID_ENVELOPES_DIR, file));
}

const traceKeys = (tenant: string) => loadJwksFile(join(KEYS_DIR, `${tenant}.jwks.json`));

/**
 * The revision's trace from the trace module, and the same note found again from what each EHR holds (the
 * FHIR resource id, the MSH-10). Counts and checks only: the trace's text stays in the ledger.
 */
async function traceOf(
  fixture: FixtureEntry,
  service: Service,
  deliveries: readonly DemoDelivery[],
  url: string,
  serveConfig: string | undefined,
): Promise<DemoTrace> {
  const command = serveConfig
    ? `scribe-bridge trace --config ${serveConfig} --tenant ${fixture.tenant} --note ${fixture.noteId} --revision ${fixture.revision}`
    : undefined;
  try {
    const t = await readTrace(
      service.ledger.db,
      { kind: 'note', tenant: fixture.tenant, noteId: fixture.noteId, revision: fixture.revision },
      { keys: traceKeys },
    );
    const rev = t.revisions.find((r) => r.revision === fixture.revision);
    const resolvedFrom: string[] = [];
    for (const d of deliveries) {
      const query: TraceQuery | undefined = d.fhir
        ? { kind: 'resourceId', destination: d.destination, resourceType: d.fhir.resourceType, id: d.fhir.id }
        : d.mllp
          ? { kind: 'controlId', destination: d.destination, controlId: d.mllp.controlId }
          : undefined;
      if (!query) continue;
      const found = await readTrace(service.ledger.db, query);
      if (found.tenant === fixture.tenant && found.noteId === fixture.noteId)
        resolvedFrom.push(d.fhir ? `${d.fhir.resourceType}/${d.fhir.id}` : `MSH-10 ${d.mllp!.controlId}`);
    }
    const checks = rev?.checks;
    return {
      url,
      ...(command ? { command } : {}),
      sentences: rev?.sentences.length ?? 0,
      evidenceSegments: rev?.sentences.reduce((n, s) => n + s.evidence.length, 0) ?? 0,
      signatureVerified: Boolean(rev?.signature.verified && (checks?.signature?.ok ?? true)),
      hashesOk: Boolean(
        checks?.contentSha256.ok && checks.payloads.every((p) => p.ok) && checks.artifacts.every((a) => a.ok),
      ),
      resolvedFrom,
    };
  } catch (e) {
    return { url, ...(command ? { command } : {}), error: toScribeError(e).code };
  }
}
