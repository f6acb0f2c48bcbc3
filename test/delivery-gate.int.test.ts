/**
 * The delivery workers as a destination sees them, from a config file to real receivers (an outside audit found
 * each of these broken; reliability-scenarios R12, R13, R17, R19, S9):
 * - `tls:` of an MLLP destination makes the connection TLS, never plaintext; a FHIR destination's `tls:` and
 *   `auth: mtls` reach its transport;
 * - an MDM whose mapping chose another field separator is sent and acknowledged (MSH-10 read with MSH-1);
 * - an ACK for another MSH-10 is logged as a warning, with the destination and no content;
 * - an ambiguous send (no ACK) is resent later, with backoff, and within the retry budget — never in a loop;
 * - one send that hangs holds up only its own note (no head-of-line blocking);
 * - a Retry-After holds back every send to that endpoint, not only the delivery it came with;
 * - after three failures in a row an endpoint gets one send at a time, at most one a second, and deliveries not
 *   sent meanwhile spend none of their retry budget.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/index.ts';
import type { Ledger } from '../src/ledger/ledger.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import type { Intake } from '../src/service/intake.ts';
import { DeliveryWorker, PROBE_AFTER_FAILURES } from '../src/service/worker.ts';
import { type FhirTestServer, startFhirServer } from './support/fhir-server.ts';
import { startIntake } from './support/intake.ts';
import { type MllpTestServer, selfSignedCert, startMllpServer } from './support/mllp-server.ts';
import type { TestKey } from './support/notes.ts';
import { noteKey, smallNote, tempDir, until } from './support/service-harness.ts';

const tmp = tempDir('sb-gate-');
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => tmp.remove());

interface Stack {
  readonly config: Config;
  readonly ledger: Ledger;
  readonly intake: Intake;
  readonly key: TestKey;
  readonly log: Array<Record<string, unknown>>;
  /** Takes in notes `ids` (small, inline artifacts). */
  ingest(...ids: string[]): Promise<void>;
  /** Starts a worker (random pinned to `random`; a short lease when given). */
  work(random?: () => number, leaseMs?: number): DeliveryWorker;
  state(noteId: string, destination?: string): Promise<string | undefined>;
  attempts(destination: string): Promise<Array<{ note: string; at: number; outcome: string }>>;
}

let n = 0;
async function stack(destinations: string, files: Record<string, string> = {}): Promise<Stack> {
  const dir = join(tmp.dir, `s${++n}`);
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const { key, keysFile } = await noteKey(dir);
  const ids = [...destinations.matchAll(/^ {2}- id: (\S+)$/gm)].map((m) => m[1]!);
  const s = await startIntake(
    dir,
    `store: pglite://./data
tenants:
  - id: riverside-clinic
    reviewKeys: ${keysFile}
    destinations: [${ids.join(', ')}]
destinations:
${destinations}`,
  );
  const log: Array<Record<string, unknown>> = [];
  cleanups.push(() => s.ledger.close());
  return {
    ...s,
    key,
    log,
    async ingest(...noteIds) {
      for (const id of noteIds)
        expect(
          (await s.intake.ingest(new TextEncoder().encode(await smallNote(key, id)), 'sqs')).outcome,
        ).toBe('accepted');
    },
    work(random, leaseMs) {
      const w = new DeliveryWorker({
        ledger: s.ledger,
        config: s.config,
        pollMs: 20,
        ...(random ? { random } : {}),
        ...(leaseMs ? { leaseMs } : {}),
        senderLog: (e) => log.push(e),
      });
      w.start();
      cleanups.push(() => w.stop());
      return w;
    },
    async state(noteId, destination) {
      const st = await s.ledger.revisionStatus('riverside-clinic', noteId);
      const ds = st?.revisions[0]?.deliveries ?? [];
      return (destination ? ds.find((d) => d.destination === destination) : ds[0])?.state;
    },
    async attempts(destination) {
      const rows = await s.ledger.db.query<{ note_id: string; at: Date; outcome: string }>(
        `select d.note_id, a.at, a.outcome from delivery_attempts a join deliveries d on d.id = a.delivery_id
         where d.destination = $1 order by a.at, a.id`,
        [destination],
      );
      return rows.map((r) => ({ note: r.note_id, at: r.at.getTime(), outcome: r.outcome }));
    },
  };
}

const settled = (s: Stack, noteId: string, destination?: string) =>
  until(
    async () => {
      const st = await s.state(noteId, destination);
      return st && !['pending', 'sending', 'ambiguous'].includes(st) ? st : undefined;
    },
    60_000,
    `${noteId} settled`,
  );

/** The FHIR destination most tests use (us-core-docref, no auth) at `ehr`, with `extra` lines of YAML. */
const fhirDestination = (ehr: FhirTestServer, extra = '') =>
  `  - id: ehr-fhir\n    type: fhir\n    baseUrl: ${ehr.baseUrl}\n    mapping: us-core-docref\n    auth: { type: none }\n${extra}`;

async function mllpServer(options: Parameters<typeof startMllpServer>[0] = {}): Promise<MllpTestServer> {
  const server = await startMllpServer(options);
  cleanups.push(() => server.close());
  return server;
}

async function fhirServer(options: Parameters<typeof startFhirServer>[0] = {}): Promise<FhirTestServer> {
  const server = await startFhirServer(options);
  cleanups.push(() => server.close());
  return server;
}

describe('transport settings from the config reach the senders', () => {
  it('MLLP with tls: a TLS receiver gets the message; a plaintext one never sees it', async (ctx) => {
    const cert = selfSignedCert();
    if (!cert) return ctx.skip();
    const secure = await mllpServer({ tls: cert });
    const plain = await mllpServer();
    const s = await stack(
      `  - id: mdm-tls
    type: mllp
    host: 127.0.0.1
    port: ${secure.port}
    mapping: mdm
    ackTimeoutMs: 2000
    tls: { ca: ./ca.pem, servername: localhost }
  - id: mdm-plain
    type: mllp
    host: 127.0.0.1
    port: ${plain.port}
    mapping: mdm
    ackTimeoutMs: 1000
    tls: { ca: ./ca.pem, servername: localhost }
    retry: { maxAttempts: 1 }
`,
      { 'ca.pem': cert.cert },
    );
    await s.ingest('tls-1');
    s.work();
    expect(await settled(s, 'tls-1', 'mdm-tls')).toBe('delivered');
    expect(secure.received).toHaveLength(1);
    expect(await settled(s, 'tls-1', 'mdm-plain')).toBe('failed');
    // The plaintext receiver got connections (TLS handshakes it could not answer), never an MDM message.
    expect(plain.connections()).toBeGreaterThan(0);
    expect(plain.received).toEqual([]);
  }, 60_000);

  it('FHIR with auth: mtls and tls: the client certificate and the EHR CA are used', async (ctx) => {
    const serverCert = selfSignedCert();
    const clientCert = selfSignedCert();
    if (!serverCert || !clientCert) return ctx.skip();
    const ehr = await fhirServer({ tls: { ...serverCert, ca: clientCert.cert, requireClientCert: true } });
    const s = await stack(
      `  - id: ehr-mtls
    type: fhir
    baseUrl: ${ehr.baseUrl}
    mapping: us-core-docref
    auth: { type: mtls }
    tls: { ca: ./ca.pem, cert: ./client.pem, key: ./client.key }
`,
      { 'ca.pem': serverCert.cert, 'client.pem': clientCert.cert, 'client.key': clientCert.key },
    );
    await s.ingest('mtls-1');
    s.work();
    expect(await settled(s, 'mtls-1')).toBe('delivered');
    expect(ehr.requests.filter((r) => r.method === 'POST')).toHaveLength(1);
  }, 60_000);
});

describe('MLLP details', () => {
  it('an MDM with another field separator is sent and acknowledged', async () => {
    const receiver = await mllpServer();
    const shipped = new MappingRegistry().get('mdm');
    const text = readFileSync(shipped.file, 'utf8')
      .replace('id: mdm\n', 'id: mdm-hash\n')
      .replace('delimiters: "|^~\\\\&"', 'delimiters: "#^~\\\\&"')
      .replace(
        'imports: [common/fhir-common.yaml]',
        `imports: [${join(shipped.file, '../common/fhir-common.yaml')}]`,
      );
    expect(text).toContain('delimiters: "#^~\\\\&"');
    const s = await stack(
      `  - id: mdm-hash
    type: mllp
    host: 127.0.0.1
    port: ${receiver.port}
    mapping: ./mdm-hash.yaml
    ackTimeoutMs: 2000
`,
      { 'mdm-hash.yaml': text },
    );
    await s.ingest('hash-1');
    s.work();
    expect(await settled(s, 'hash-1')).toBe('delivered');
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]!.raw.startsWith('MSH#^~\\&#')).toBe(true);
  }, 60_000);

  it('an ACK for another MSH-10 is logged as a warning event, with ids only', async () => {
    const receiver = await mllpServer({
      script: () => [{ ack: 'AA', controlId: 'SOMEONE-ELSE' }, { ack: 'AA' }],
    });
    const s = await stack(`  - id: ehr-mdm
    type: mllp
    host: 127.0.0.1
    port: ${receiver.port}
    mapping: mdm
    ackTimeoutMs: 2000
`);
    await s.ingest('unmatched-1');
    s.work();
    expect(await settled(s, 'unmatched-1')).toBe('delivered');
    const warned = s.log.filter((e) => e['event'] === 'mllp.ack.unmatched');
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ destination: 'ehr-mdm' });
    expect(JSON.stringify(s.log)).not.toMatch(/PID|OBX|Lindqvist/);
  }, 60_000);

  it('no ACK: resent later with backoff and the same MSH-10, within the retry budget, then failed', async () => {
    // The receiver reads each message and hangs up without answering.
    const receiver = await mllpServer({ script: () => [{ close: true }] });
    const s = await stack(`  - id: ehr-mdm
    type: mllp
    host: 127.0.0.1
    port: ${receiver.port}
    mapping: mdm
    ackTimeoutMs: 1000
    retry: { maxAttempts: 3, initialDelayMs: 400, maxDelayMs: 5000 }
`);
    await s.ingest('noack-1');
    s.work(() => 1); // every wait at its ceiling: 400 ms, then 800 ms
    expect(await settled(s, 'noack-1')).toBe('failed');
    // Let a runaway loop show itself, were there one.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(receiver.received).toHaveLength(3);
    expect(new Set(receiver.received.map((m) => m.controlId)).size).toBe(1);
    const gaps = receiver.received.slice(1).map((m, i) => m.receivedAt - receiver.received[i]!.receivedAt);
    expect(gaps[0]!).toBeGreaterThanOrEqual(400);
    expect(gaps[1]!).toBeGreaterThanOrEqual(800);
    expect((await s.attempts('ehr-mdm')).map((a) => a.outcome)).toEqual(['ambiguous', 'ambiguous', 'failed']);
  }, 60_000);
});

describe('sparing a destination, and not being held up by one send', () => {
  it('one send that hangs holds up only its own note', async () => {
    const ehr = await fhirServer();
    const s = await stack(
      fhirDestination(
        ehr,
        `    concurrency: 4
    timeoutMs: 20000
`,
      ),
    );
    ehr.fault({ kind: 'delay', ms: 6_000, match: { method: 'POST' } });
    await s.ingest('slow-1');
    s.work();
    await until(
      async () => (ehr.requests.some((r) => r.method === 'POST') ? true : undefined),
      10_000,
      'the slow POST',
    );
    const t0 = Date.now();
    await s.ingest('quick-1', 'quick-2', 'quick-3', 'quick-4', 'quick-5');
    for (const id of ['quick-1', 'quick-2', 'quick-3', 'quick-4', 'quick-5'])
      expect(await settled(s, id)).toBe('delivered');
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(await s.state('slow-1')).toBe('sending');
    expect(await settled(s, 'slow-1')).toBe('delivered');
  }, 60_000);

  it('a send longer than its lease keeps the lease (renewed), so nobody settles it as ambiguous meanwhile', async () => {
    const ehr = await fhirServer();
    const s = await stack(fhirDestination(ehr));
    ehr.fault({ kind: 'delay', ms: 3_000, match: { method: 'POST' } });
    await s.ingest('long-1');
    s.work(undefined, 600);
    // Housekeeping as the service runs it, often: a lease not renewed would run out 5 times over.
    let expired = 0;
    const housekeeping = setInterval(() => {
      s.ledger.releaseExpiredLeases().then(
        (l) => (expired += l.length),
        () => undefined,
      );
    }, 100);
    cleanups.push(() => clearInterval(housekeeping));
    expect(await settled(s, 'long-1')).toBe('delivered');
    expect(expired).toBe(0);
    expect((await s.attempts('ehr-fhir')).map((a) => a.outcome)).toEqual(['delivered']);
    // A lease already lost is not taken back.
    const [row] = await s.ledger.db.query<{ id: number }>('select id from deliveries');
    expect(await s.ledger.extendLeases([row!.id], 'someone', 60_000)).toEqual([]);
  }, 60_000);

  it('a Retry-After holds back every send to that endpoint until it has passed', async () => {
    const ehr = await fhirServer();
    const s = await stack(
      fhirDestination(
        ehr,
        `    concurrency: 1
    retry: { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 5 }
`,
      ),
    );
    ehr.fault({ kind: 'status', status: 429, retryAfter: '2', match: { method: 'POST' } });
    await s.ingest('ra-1', 'ra-2', 'ra-3', 'ra-4');
    s.work(() => 0);
    for (const id of ['ra-1', 'ra-2', 'ra-3', 'ra-4']) expect(await settled(s, id)).toBe('delivered');
    const attempts = await s.attempts('ehr-fhir');
    expect(attempts.map((a) => a.outcome)).toEqual([
      'retry',
      'delivered',
      'delivered',
      'delivered',
      'delivered',
    ]);
    // Nothing at all was sent within the 2 s the EHR asked for.
    for (const a of attempts.slice(1)) expect(a.at - attempts[0]!.at).toBeGreaterThanOrEqual(2_000);
  }, 60_000);

  it('after three failures in a row: one send at a time, at most one a second; nothing fails for waiting', async () => {
    const ehr = await fhirServer();
    const s = await stack(
      fhirDestination(
        ehr,
        `    concurrency: 4
    retry: { maxAttempts: 6, initialDelayMs: 20, maxDelayMs: 50 }
`,
      ),
    );
    ehr.fault({ kind: 'status', status: 503, times: 9, match: { method: 'POST' } });
    const ids = Array.from({ length: 8 }, (_, i) => `burst-${i}`);
    await s.ingest(...ids);
    s.work();
    for (const id of ids) expect(await settled(s, id)).toBe('delivered');
    const attempts = await s.attempts('ehr-fhir');
    expect(attempts.filter((a) => a.outcome === 'retry')).toHaveLength(9);
    // The first round fills the 4 slots; the first two failures each free a slot that is refilled; once the third
    // failure is seen, every next send waits ≥ 1 s after the one before, until one succeeds.
    const engaged = 4 + PROBE_AFTER_FAILURES - 1;
    const probes = attempts.slice(engaged - 1);
    expect(probes.length).toBeGreaterThan(3);
    for (let i = 1; i < probes.length && probes[i - 1]!.outcome === 'retry'; i++)
      expect(probes[i]!.at - probes[i - 1]!.at).toBeGreaterThanOrEqual(950);
    // With a budget of 6 attempts and 9 failures spread over 8 notes, no note failed.
    expect((await s.ledger.db.query(`select 1 from deliveries where state = 'failed'`)).length).toBe(0);
  }, 90_000);
});
