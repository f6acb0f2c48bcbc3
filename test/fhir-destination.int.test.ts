/**
 * FHIR REST delivery against a real FHIR server on 127.0.0.1 (test/support/fhir-server.ts: @medplum/fhir-router
 * over a MemoryRepository), with payloads rendered by the shipped mappings from the checked-in fixtures.
 *
 * Promises checked:
 * - exactly once per revision: a conditional create, a PUT by id, a 51-entry transaction and a document
 *   Bundle each sent twice leave one copy; an amendment then a retraction leaves the retracted revision
 *   entered-in-error with its content unchanged;
 * - the bytes sent are exactly `rendering.body` (and its sha256), except with `references: resolve`, where the
 *   resolved bytes and their sha256 come back; an unresolvable reference is rejected naming its system only;
 * - every answer ends as standards.md §10 says: 503 → retry (then delivered), 429/503 + Retry-After →
 *   `retryAfterMs`, 422 OperationOutcome → rejected after one send with its issue code, refused connection →
 *   retry, a dropped connection or a timeout after sending → ambiguous, settled by `readBack`;
 * - auth: bearer, OAuth2 client credentials and SMART Backend Services (RS384 and ES384, JWK and PEM): one token
 *   request for many sends, and a 401 answered by exactly one refresh; mutual TLS;
 * - logs carry no identifier values, tokens or bodies.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { exportJWK, exportPKCS8, generateKeyPair } from 'jose';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type VerifiedNote, verifyEnvelope } from '../src/contract/verify.ts';
import { FhirDestination, type FhirDestinationConfig, type FhirLogEntry } from '../src/deliver/fhir.ts';
import { deliverFhir } from '../src/deliver/fhir-deliver.ts';
import { type Rendering, render } from '../src/map/engine.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { type FhirTestServer, type FhirTestServerOptions, startFhirServer } from './support/fhir-server.ts';
import { selfSignedCert } from './support/mllp-server.ts';

const ENVELOPES = new URL('../fixtures/envelopes/valid/', import.meta.url).pathname;
const registry = new MappingRegistry();
const notes = new Map<string, VerifiedNote>();

async function note(name: string): Promise<VerifiedNote> {
  let n = notes.get(name);
  if (!n) {
    n = await verifyEnvelope(readFileSync(`${ENVELOPES}${name}.json`), {
      keys: 'skip-signature',
      envelopeDir: ENVELOPES,
    });
    notes.set(name, n);
  }
  return n;
}

const R1 = 'hp-typical';
const R2 = 'hp-typical.r2-amended';
const R3 = 'hp-typical.r3-entered-in-error';

/** Renders a fixture with a shipped mapping (a retraction gets the revision it retracts). */
async function rendering(mapping: string, name = R1): Promise<Rendering> {
  const n = await note(name);
  return render(registry.get(mapping), { note: n, ...(name === R3 ? { prior: await note(R2) } : {}) });
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const logs: FhirLogEntry[] = [];

async function setup(
  dest: Partial<FhirDestinationConfig> = {},
  serverOptions: FhirTestServerOptions = {},
): Promise<{ server: FhirTestServer; fhir: FhirDestination }> {
  const server = await startFhirServer(serverOptions);
  const fhir = new FhirDestination(
    { id: 'ehr-fhir', baseUrl: server.baseUrl, auth: { type: 'none' }, timeoutMs: 5000, ...dest },
    { logger: (e) => logs.push(e) },
  );
  cleanups.push(
    () => server.close(),
    () => fhir.close(),
  );
  return { server, fhir };
}

// biome-ignore lint/suspicious/noExplicitAny: FHIR JSON read by deep paths in assertions
type Json = any;

const stored = async (server: FhirTestServer, type: string, query?: string) =>
  (await server.search(type, query)) as Json[];

const noSleep = { maxAttempts: 5, initialDelayMs: 10, maxDelayMs: 100 };

beforeAll(async () => {
  // Verify the fixtures once (artifact hashes, evidence) so tests measure delivery, not parsing.
  await Promise.all([R1, R2, R3].map(note));
});

describe('exactly once per revision', () => {
  it('us-core-docref: conditional create twice → one DocumentReference; the bytes sent are the rendering', async () => {
    const { server, fhir } = await setup();
    const r = await rendering('us-core-docref');
    const first = await fhir.send(r);
    const second = await fhir.send(r);
    expect(first).toMatchObject({ outcome: 'delivered', httpStatus: 201, written: true });
    expect(first.receipt).toMatchObject({ status: 201, resourceType: 'DocumentReference', created: true });
    expect(first.receipt?.versionId).toBeTruthy();
    expect(first.receipt?.etag).toBe(`W/"${first.receipt?.versionId}"`);
    expect(second).toMatchObject({ outcome: 'delivered', httpStatus: 200, receipt: { created: false } });
    expect(second.receipt?.id).toBe(first.receipt?.id);
    expect(first.sentBody).toBe(r.body);
    expect(first.sentSha256).toBe(r.sha256);
    expect(await stored(server, 'DocumentReference')).toHaveLength(1);
    const post = server.requests.find((q) => q.method === 'POST')!;
    expect(post.path).toBe('DocumentReference');
    expect(post.ifNoneExist).toBe('identifier=urn:scribe-bridge:riverside-clinic:note|enc-4471-hp-r1');
    expect(post.bodySha256).toBe(r.sha256);
  });

  it('write: put twice → one DocumentReference with the deterministic id', async () => {
    const { server, fhir } = await setup({ write: 'put' });
    const r = await rendering('us-core-docref');
    const id = (r.value as { id: string }).id;
    const a = await fhir.send(r);
    const b = await fhir.send(r);
    expect([a.outcome, b.outcome]).toEqual(['delivered', 'delivered']);
    expect(a.receipt).toMatchObject({ resourceType: 'DocumentReference', id });
    expect(server.requests.filter((q) => q.method === 'PUT').map((q) => q.path)).toEqual([
      `DocumentReference/${id}`,
      `DocumentReference/${id}`,
    ]);
    expect((await stored(server, 'DocumentReference')).map((d) => d['id'])).toEqual([id]);
  });

  it('fhir-transaction (hp-typical, 51 entries): accepted, and a replay duplicates nothing', async () => {
    const { server, fhir } = await setup();
    const r = await rendering('fhir-transaction');
    const entries = (r.value as { entry: Array<{ resource: { resourceType: string } }> }).entry;
    const provenances = entries.filter((e) => e.resource.resourceType === 'Provenance').length;
    expect(entries.length).toBeGreaterThan(8);
    const first = await fhir.send(r);
    expect(first).toMatchObject({ outcome: 'delivered', httpStatus: 200 });
    expect(first.receipt).toMatchObject({ resourceType: 'DocumentReference', created: true });
    expect(first.receipt?.entries).toHaveLength(entries.length);
    const replay = await fhir.send(r);
    expect(replay.outcome).toBe('delivered');
    expect(replay.receipt).toMatchObject({ id: first.receipt?.id, created: false });
    expect(await stored(server, 'DocumentReference')).toHaveLength(1);
    expect(await stored(server, 'Composition')).toHaveLength(1);
    expect(await stored(server, 'Device')).toHaveLength(1);
    expect(await stored(server, 'Provenance')).toHaveLength(provenances);
    expect(server.count('POST', '')).toBe(2);
  });

  it('fhir-document: POST Bundle conditional on its identifier, twice → one Bundle', async () => {
    const { server, fhir } = await setup();
    const r = await rendering('fhir-document');
    const a = await fhir.send(r);
    const b = await fhir.send(r);
    expect([a.httpStatus, b.httpStatus]).toEqual([201, 200]);
    expect(a.receipt).toMatchObject({ resourceType: 'Bundle', created: true });
    expect(b.receipt?.id).toBe(a.receipt?.id);
    expect(await stored(server, 'Bundle')).toHaveLength(1);
    expect(a.sentBody).toBe(r.body);
  });

  it.each(['us-core-docref', 'fhir-transaction'])(
    '%s: amendment then retraction → r2 entered-in-error, content unchanged; r1 untouched',
    async (mapping) => {
      const { server, fhir } = await setup();
      const [r1, r2, r3] = await Promise.all([
        rendering(mapping, R1),
        rendering(mapping, R2),
        rendering(mapping, R3),
      ]);
      for (const r of [r1, r2, r3]) expect((await fhir.send(r)).outcome).toBe('delivered');
      const docs = await stored(server, 'DocumentReference');
      expect(docs).toHaveLength(2);
      const byRevision = (v: string) => docs.find((d) => d['identifier'][0].value === `enc-4471-hp-${v}`)!;
      const sentR2 = docRefOf(r2);
      expect(byRevision('r2')['status']).toBe('entered-in-error');
      expect(byRevision('r2')['content']).toEqual(sentR2['content']);
      expect(byRevision('r2')['relatesTo']).toEqual(sentR2['relatesTo']);
      expect(byRevision('r1')['status']).toBe('current');
      // The retraction is a conditional update on r2's identifier, URL-encoded, found again by read-back.
      const rb = await fhir.readBack(r3);
      expect(rb).toMatchObject({ outcome: 'delivered', receipt: { id: byRevision('r2')['id'], matches: 1 } });
    },
  );
});

/** The DocumentReference a rendering carries (itself, or its transaction entry). */
function docRefOf(r: Rendering): Json {
  const v = r.value as Json;
  if (v['resourceType'] === 'DocumentReference') return v;
  return v['entry'].find((e: Json) => e.resource.resourceType === 'DocumentReference').resource;
}

describe('answers classified (standards.md §10)', () => {
  it('503 ×3 then success: three retries, then delivered, with backoff between', async () => {
    const { server, fhir } = await setup();
    server.fault({ kind: 'status', status: 503, times: 3 });
    const waits: number[] = [];
    const d = await deliverFhir(fhir, await rendering('us-core-docref'), {
      ...noSleep,
      random: () => 1,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    expect(d.state).toBe('delivered');
    expect(d.attempts.map((a) => a.outcome)).toEqual(['retry', 'retry', 'retry', 'delivered']);
    expect(d.attempts.map((a) => a.httpStatus)).toEqual([503, 503, 503, 201]);
    expect(waits).toEqual([10, 20, 40]);
    expect(await stored(server, 'DocumentReference')).toHaveLength(1);
  });

  it('429 and 503 with Retry-After (seconds or HTTP-date): retry no earlier than that', async () => {
    const { server, fhir } = await setup();
    const r = await rendering('us-core-docref');
    server.fault({ kind: 'status', status: 429, retryAfter: '7' });
    const a = await fhir.send(r);
    expect(a).toMatchObject({
      outcome: 'retry',
      httpStatus: 429,
      retryAfterMs: 7000,
      issueCodes: ['throttled'],
    });
    server.fault({ kind: 'status', status: 503, retryAfter: new Date(Date.now() + 60_000).toUTCString() });
    const b = await fhir.send(r);
    expect(b.outcome).toBe('retry');
    expect(b.retryAfterMs).toBeGreaterThan(55_000);
    expect(b.retryAfterMs).toBeLessThanOrEqual(60_000);
    // deliverFhir waits the longer of its backoff and Retry-After.
    server.fault({ kind: 'status', status: 429, retryAfter: '3' });
    const waits: number[] = [];
    const d = await deliverFhir(fhir, r, { ...noSleep, sleep: async (ms) => void waits.push(ms) });
    expect(d.state).toBe('delivered');
    expect(waits).toEqual([3000]);
    expect(await stored(server, 'DocumentReference')).toHaveLength(1);
  });

  it('422 with an OperationOutcome → rejected after exactly one send, with its issue code', async () => {
    const { server, fhir } = await setup();
    server.fault({ kind: 'status', status: 422, issueCode: 'business-rule' });
    const d = await deliverFhir(fhir, await rendering('us-core-docref'), noSleep);
    expect(d.state).toBe('rejected');
    expect(d.attempts).toHaveLength(1);
    expect(d.last).toMatchObject({ outcome: 'rejected', httpStatus: 422, issueCodes: ['business-rule'] });
    expect(server.count('POST')).toBe(1);
  });

  it('409/412 → ambiguous (reconcile); 400 invalid → rejected; 408 → retry', async () => {
    const { server, fhir } = await setup();
    const r = await rendering('us-core-docref');
    const outcomes: string[] = [];
    for (const status of [409, 412, 400, 408]) {
      server.fault({ kind: 'status', status, ...(status === 400 ? { issueCode: 'invalid' } : {}) });
      outcomes.push((await fhir.send(r)).outcome);
    }
    expect(outcomes).toEqual(['ambiguous', 'ambiguous', 'rejected', 'retry']);
  });

  it('connection refused before sending → retry, nothing written', async () => {
    const port = await closedPort();
    const fhir = new FhirDestination({
      id: 'x',
      baseUrl: `http://127.0.0.1:${port}/fhir/R4`,
      auth: { type: 'none' },
    });
    cleanups.push(() => fhir.close());
    const res = await fhir.send(await rendering('us-core-docref'));
    expect(res).toMatchObject({
      outcome: 'retry',
      reason: 'connect-failed',
      written: false,
      errorCode: 'ECONNREFUSED',
    });
  });

  it('connection dropped after the request was read → ambiguous; read-back: not there, then safe to resend', async () => {
    const { server, fhir } = await setup();
    const r = await rendering('us-core-docref');
    server.fault({ kind: 'drop', after: 'read' });
    const res = await fhir.send(r);
    expect(res).toMatchObject({ outcome: 'ambiguous', reason: 'no-answer', written: true });
    expect(await fhir.readBack(r)).toBeUndefined();
    // deliverFhir: ambiguous → read-back (not found) → resend → delivered. Dropped twice: this send goes out on
    // a reused keep-alive connection, and a conditional create reset there before any answer is sent once more
    // on a new connection by the transport (src/deliver/fhir-http.ts) — dropped too, so it stays ambiguous.
    server.fault({ kind: 'drop', after: 'read', times: 2 });
    const d = await deliverFhir(fhir, r, { ...noSleep, sleep: async () => {} });
    expect(d.state).toBe('delivered');
    expect(d.attempts.map((a) => `${a.kind}:${a.outcome}`)).toEqual([
      'send:ambiguous',
      'read-back:not-found',
      'send:delivered',
    ]);
    expect(await stored(server, 'DocumentReference')).toHaveLength(1);
  });

  it('stored, then the connection dropped → ambiguous; read-back finds it (delivered) and nothing is resent', async () => {
    const { server, fhir } = await setup();
    const r = await rendering('fhir-transaction');
    server.fault({ kind: 'drop', after: 'process' });
    const d = await deliverFhir(fhir, r, { ...noSleep, sleep: async () => {} });
    expect(d.state).toBe('delivered');
    expect(d.attempts.map((a) => `${a.kind}:${a.outcome}`)).toEqual([
      'send:ambiguous',
      'read-back:delivered',
    ]);
    const [doc] = await stored(server, 'DocumentReference');
    expect(d.last.receipt).toMatchObject({ resourceType: 'DocumentReference', id: doc!['id'], matches: 1 });
    expect(d.last.sentSha256).toBe(r.sha256);
    expect(server.count('POST', '')).toBe(1);
  });

  it('a timeout after sending → ambiguous; read-back finds what the slow server stored', async () => {
    const { server, fhir } = await setup({ timeoutMs: 300 });
    const r = await rendering('us-core-docref');
    server.fault({ kind: 'delay', ms: 600 });
    const res = await fhir.send(r);
    expect(res).toMatchObject({ outcome: 'ambiguous', reason: 'no-answer', errorCode: 'ETIMEDOUT' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await fhir.readBack(r)).toMatchObject({ outcome: 'delivered', reason: 'read-back' });
  });
});

describe('auth', () => {
  it('bearer: the token is sent; a refused static token is rejected without a refresh', async () => {
    const { server, fhir } = await setup(
      { auth: { type: 'bearer', token: 'tok-static-1' } },
      { requireToken: true, staticTokens: ['tok-static-1'] },
    );
    const r = await rendering('us-core-docref');
    expect((await fhir.send(r)).outcome).toBe('delivered');
    expect(server.requests[0]?.authorization).toBe('Bearer tok-static-1');
    const wrong = new FhirDestination({
      id: 'w',
      baseUrl: server.baseUrl,
      auth: { type: 'bearer', token: 'nope' },
    });
    cleanups.push(() => wrong.close());
    const res = await wrong.send(r);
    expect(res).toMatchObject({ outcome: 'rejected', httpStatus: 401, issueCodes: ['login'] });
    expect(res.authRefreshed).toBeUndefined();
    expect(server.count('POST')).toBe(2);
  });

  it.each(['basic', 'post'] as const)(
    'client credentials (%s): one token for many sends; a 401 → exactly one refresh',
    async (clientAuth) => {
      const opts = { requireToken: true, clients: [{ clientId: 'scribe', secret: 's3cr&t:x' }] };
      const { server: s0 } = await setup({}, opts);
      const fhir = new FhirDestination({
        id: 'cc',
        baseUrl: s0.baseUrl,
        auth: {
          type: 'client-credentials',
          tokenUrl: s0.tokenUrl,
          clientId: 'scribe',
          clientSecret: 's3cr&t:x',
          scope: 'system/DocumentReference.c',
          clientAuth,
        },
      });
      cleanups.push(() => fhir.close());
      const [r1, r2] = await Promise.all([rendering('us-core-docref', R1), rendering('us-core-docref', R2)]);
      const results = await Promise.all([fhir.send(r1), fhir.send(r2), fhir.send(r1)]);
      expect(results.map((x) => x.outcome)).toEqual(['delivered', 'delivered', 'delivered']);
      expect(s0.tokenRequests).toEqual([
        { clientId: 'scribe', clientAuth, scope: 'system/DocumentReference.c' },
      ]);
      s0.revokeTokens();
      const again = await fhir.send(r1);
      expect(again).toMatchObject({ outcome: 'delivered', authRefreshed: true });
      expect(s0.tokenRequests).toHaveLength(2);
      // Still refused after the refresh: permanent, and no third token request.
      s0.fault({ kind: 'status', status: 401, times: 2 });
      const refused = await fhir.send(r1);
      expect(refused).toMatchObject({ outcome: 'rejected', httpStatus: 401, authRefreshed: true });
      expect(s0.tokenRequests).toHaveLength(3);
    },
  );

  it('client credentials with a wrong secret → rejected (auth-failed), nothing sent to the FHIR server', async () => {
    const { server } = await setup(
      {},
      { requireToken: true, clients: [{ clientId: 'scribe', secret: 'right' }] },
    );
    const fhir = new FhirDestination({
      id: 'cc',
      baseUrl: server.baseUrl,
      auth: {
        type: 'client-credentials',
        tokenUrl: server.tokenUrl,
        clientId: 'scribe',
        clientSecret: 'wrong',
      },
    });
    cleanups.push(() => fhir.close());
    const res = await fhir.send(await rendering('us-core-docref'));
    expect(res).toMatchObject({
      outcome: 'rejected',
      reason: 'auth-failed',
      httpStatus: 401,
      written: false,
    });
    expect(res.detail).toBe('token endpoint: invalid_client');
    expect(server.count('POST', 'DocumentReference')).toBe(0);
  });

  it.each([
    ['ES384', 'jwk'],
    ['RS384', 'pem'],
  ] as const)(
    'SMART Backend Services %s (%s key): assertion accepted, token cached, 401 → one refresh',
    async (alg, form) => {
      const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
      const kid = `scribe-${alg}`;
      const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
      const { server } = await setup(
        {},
        { requireToken: true, clients: [{ clientId: 'scribe-bridge', jwks: { keys: [publicJwk] } }] },
      );
      const key = form === 'jwk' ? { ...(await exportJWK(privateKey)), kid } : await exportPKCS8(privateKey);
      const fhir = new FhirDestination(
        {
          id: 'smart',
          baseUrl: server.baseUrl,
          auth: {
            type: 'smart-backend',
            tokenUrl: server.tokenUrl,
            clientId: 'scribe-bridge',
            privateKey: key,
            ...(form === 'pem' ? { kid } : {}),
            alg,
            scope: 'system/DocumentReference.c',
          },
        },
        { logger: (e) => logs.push(e) },
      );
      cleanups.push(() => fhir.close());
      const r = await rendering('us-core-docref');
      expect((await fhir.send(r)).outcome).toBe('delivered');
      expect((await fhir.send(r)).outcome).toBe('delivered');
      expect(server.tokenRequests).toEqual([
        { clientId: 'scribe-bridge', clientAuth: 'jwt', scope: 'system/DocumentReference.c' },
      ]);
      server.revokeTokens();
      // A second assertion must carry a new jti, or the server refuses it as a replay.
      expect(await fhir.send(r)).toMatchObject({ outcome: 'delivered', authRefreshed: true });
      expect(server.tokenRequests).toHaveLength(2);
    },
  );

  it('mutual TLS: the client certificate and the EHR CA from the TLS options', async (ctx) => {
    const serverCert = selfSignedCert();
    const clientCert = selfSignedCert();
    if (!serverCert || !clientCert) return ctx.skip();
    const { server, fhir } = await setup(
      { tls: { ca: serverCert.cert, cert: clientCert.cert, key: clientCert.key }, auth: { type: 'mtls' } },
      { tls: { ...serverCert, ca: clientCert.cert, requireClientCert: true } },
    );
    expect(server.baseUrl).toMatch(/^https:\/\/localhost:/);
    expect((await fhir.send(await rendering('us-core-docref'))).outcome).toBe('delivered');
    const noCert = new FhirDestination({
      id: 'n',
      baseUrl: server.baseUrl,
      auth: { type: 'none' },
      tls: { ca: serverCert.cert },
    });
    cleanups.push(() => noCert.close());
    // TLS 1.3 refuses the missing certificate after our request was written; it still cannot have arrived.
    expect(await noCert.send(await rendering('us-core-docref'))).toMatchObject({
      outcome: 'retry',
      reason: 'connect-failed',
      written: false,
      errorCode: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
    });
    expect(await stored(server, 'DocumentReference')).toHaveLength(1);
  });
});

describe('references: resolve', () => {
  /** Registers the fixture's patient, encounter, clinician and organization in the EHR. */
  async function seedParties(server: FhirTestServer): Promise<Record<string, string>> {
    const e = (await note(R1)).envelope;
    const ident = (i: { system: string; value: string }[]) => [{ system: i[0]!.system, value: i[0]!.value }];
    const patient = await server.seed({ resourceType: 'Patient', identifier: ident(e.patient.identifier) });
    const practitioner = await server.seed({
      resourceType: 'Practitioner',
      identifier: ident(e.author.identifier),
    });
    const org = await server.seed({
      resourceType: 'Organization',
      identifier: ident(e.organization.identifier),
    });
    const encounter = await server.seed({
      resourceType: 'Encounter',
      status: 'finished',
      class: { code: 'AMB' },
      identifier: ident(e.encounter.identifier),
    });
    return {
      Patient: patient.id,
      Practitioner: practitioner.id,
      Organization: org.id,
      Encounter: encounter.id,
    };
  }

  it('logical references become the EHR ids; the resolved bytes and their sha256 are returned; searches cached', async () => {
    const { server, fhir } = await setup({ references: 'resolve' });
    const ids = await seedParties(server);
    const r = await rendering('us-core-docref');
    const res = await fhir.send(r);
    expect(res.outcome).toBe('delivered');
    expect(res.sentBody).not.toBe(r.body);
    expect(res.sentSha256).toBe(sha256(res.sentBody));
    expect(server.requests.find((q) => q.method === 'POST')?.bodySha256).toBe(res.sentSha256);
    const [doc] = await stored(server, 'DocumentReference');
    expect(doc!['subject'].reference).toBe(`Patient/${ids['Patient']}`);
    expect(doc!['author'][0].reference).toBe(`Practitioner/${ids['Practitioner']}`);
    expect(doc!['authenticator'].reference).toBe(`Practitioner/${ids['Practitioner']}`);
    expect(doc!['custodian'].reference).toBe(`Organization/${ids['Organization']}`);
    expect(doc!['context'].encounter[0].reference).toBe(`Encounter/${ids['Encounter']}`);
    expect(doc!['subject'].identifier).toEqual(docRefOf(r)['subject'].identifier);
    const searches = server.count('GET');
    expect(searches).toBe(4);
    // The same references again: from the cache, and the same bytes.
    const again = await fhir.send(r);
    expect(again.sentSha256).toBe(res.sentSha256);
    expect(server.count('GET')).toBe(searches);
  });

  it('a transaction with resolved references is accepted (Provenance agents too)', async () => {
    const { server, fhir } = await setup({ references: 'resolve' });
    const ids = await seedParties(server);
    const res = await fhir.send(await rendering('fhir-transaction'));
    expect(res.outcome).toBe('delivered');
    const provenance = await stored(server, 'Provenance');
    const verifier = provenance[0]!['agent'].find((a: Json) => a.who.identifier);
    expect(verifier.who.reference).toBe(`Practitioner/${ids['Practitioner']}`);
  });

  it('an unresolvable reference → rejected naming the identifier system, never the value; nothing sent', async () => {
    const { server, fhir } = await setup({ references: 'resolve' });
    const r = await rendering('us-core-docref');
    const res = await fhir.send(r);
    const mrn = (await note(R1)).envelope.patient.identifier[0]!;
    expect(res).toMatchObject({ outcome: 'rejected', reason: 'reference-unresolved', written: false });
    expect(res.detail).toContain(mrn.system);
    expect(res.detail).not.toContain(mrn.value);
    expect(server.count('POST')).toBe(0);
  });
});

describe('logs', () => {
  it('carry no identifier values, tokens or note text', () => {
    const text = JSON.stringify(logs);
    expect(logs.length).toBeGreaterThan(10);
    const n = notes.get(R1)!;
    for (const secret of [
      n.envelope.patient.identifier[0]!.value,
      'enc-4471-hp',
      'tok-static-1',
      's3cr',
      n.envelope.note.sections[0]!.sentences[0]!.text,
    ])
      expect(text).not.toContain(secret);
  });
});

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
