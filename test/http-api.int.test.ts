/**
 * The HTTP API over real HTTP: POST /v1/notes answers 202 accepted | 200 duplicate | 409 conflict | 400/422 with
 * an OperationOutcome carrying the stable code; roles and tenant limits of bearer tokens are enforced (401/403);
 * note status shows per-destination deliveries; /healthz and /readyz answer.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken } from '../src/config/index.ts';
import { sha256Hex } from '../src/contract/artifacts.ts';
import { canonicalJson, peekJwsHeader, type SignatureAlg, signEnvelope } from '../src/contract/signature.ts';
import { type ApiServer, startApi } from './support/intake.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const TOKENS = {
  intake: 'intake-token-1',
  operator: 'operator-token-1',
  auditor: 'auditor-token-1',
  harbor: 'harbor-intake-1',
};
let api: ApiServer;

beforeAll(async () => {
  api = await startApi(
    mkdtempSync(join(tmpdir(), 'sb-http-')),
    `store: pglite://./data
auth:
  tokens:
    - { role: intake, sha256: "${hashToken(TOKENS.intake)}" }
    - { role: operator, sha256: "${hashToken(TOKENS.operator)}" }
    - { role: auditor, sha256: "${hashToken(TOKENS.auditor)}" }
    - { role: intake, sha256: "${hashToken(TOKENS.harbor)}", tenants: [harbor-health] }
tenants:
  - id: riverside-clinic
    reviewKeys: ${fixtures}keys/riverside-clinic.jwks.json
    destinations: [archive]
  - id: harbor-health
    reviewKeys: ${fixtures}keys/harbor-health.jwks.json
    destinations: [archive]
destinations:
  - id: archive
    type: file
    directory: ./out
    mapping: us-core-docref
`,
  );
}, 120_000);

afterAll(async () => {
  await api.close();
});

const post = (body: string, token?: string) =>
  fetch(`${api.base}/v1/notes`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
const code = async (res: Response) => {
  const oo = (await res.json()) as {
    resourceType: string;
    issue: Array<{ details: { coding: Array<{ system: string; code: string }> } }>;
  };
  expect(oo.resourceType).toBe('OperationOutcome');
  expect(oo.issue[0]!.details.coding[0]!.system).toBe('urn:scribe-bridge:error');
  return oo.issue[0]!.details.coding[0]!.code;
};

describe('HTTP API', () => {
  it('accepts, acknowledges duplicates, refuses conflicts and bad input with OperationOutcomes', async () => {
    // dap-depression carries its artifacts inline, as anything but the command line must.
    const dap = readFileSync(`${fixtures}envelopes/valid/dap-depression.json`, 'utf8');
    const first = await post(dap, TOKENS.intake);
    expect(first.status).toBe(202);
    expect(await first.json()).toEqual({
      outcome: 'accepted',
      deliveries: [{ destination: 'archive', state: 'pending' }],
    });
    expect((await post(dap, TOKENS.intake)).status).toBe(200);

    const changed = JSON.parse(dap);
    changed.note.sections[0].sentences[0].text += ' (changed, not re-signed)';
    const tampered = await post(JSON.stringify(changed), TOKENS.intake);
    expect(tampered.status).toBe(422);
    expect(await code(tampered)).toBe('SIGNATURE_INVALID');

    const privateKeys = JSON.parse(
      readFileSync(`${fixtures}keys/riverside-clinic.private.jwks.json`, 'utf8'),
    ) as { keys: JWK[] };
    const { kid } = peekJwsHeader(changed.signature.jws);
    const key = privateKeys.keys.find((k) => k.kid === kid)!;
    const resigned = await signEnvelope(changed, key, { kid, alg: key.alg as SignatureAlg });
    const conflict = await post(JSON.stringify(resigned), TOKENS.intake);
    expect(conflict.status).toBe(409);
    expect(await code(conflict)).toBe('NOTE_CONFLICT');

    const junk = await post('{"kind": ', TOKENS.intake);
    expect(junk.status).toBe(400);
    expect(await code(junk)).toBe('ENVELOPE_JSON');

    const fileUris = await post(
      readFileSync(`${fixtures}envelopes/valid/hp-typical.json`, 'utf8'),
      TOKENS.intake,
    );
    expect(fileUris.status).toBe(400);
    expect(await code(fileUris)).toBe('ARTIFACT_URI_INVALID');

    // Over the 32 MB body limit: 413 with its own code, and the service goes on taking notes.
    const huge = await post(`{"pad": "${'x'.repeat(32 * 1024 * 1024)}"}`, TOKENS.intake);
    expect(huge.status).toBe(413);
    expect(await code(huge)).toBe('ENVELOPE_TOO_LARGE');
    expect((await post(dap, TOKENS.intake)).status).toBe(200);
  }, 60_000);

  it('records an early retraction (its revision not arrived yet) as waiting: 202, not a final 422', async () => {
    const env = JSON.parse(readFileSync(`${fixtures}envelopes/valid/dap-depression.json`, 'utf8'));
    env.noteId = 'enc-early-retraction';
    const privateKeys = JSON.parse(
      readFileSync(`${fixtures}keys/riverside-clinic.private.jwks.json`, 'utf8'),
    ) as { keys: JWK[] };
    const { kid } = peekJwsHeader(env.signature.jws);
    const key = privateKeys.keys.find((k) => k.kid === kid)!;
    const sign = async (e: object) =>
      JSON.stringify(await signEnvelope(e as typeof env, key, { kid, alg: key.alg as SignatureAlg }));
    expect((await post(await sign(env), TOKENS.intake)).status).toBe(202);
    const r3 = { ...env, revision: 3, replaces: 2, status: 'entered-in-error' };
    const early = await post(await sign(r3), TOKENS.intake);
    expect(early.status).toBe(202);
    expect(await early.json()).toEqual({ outcome: 'waiting', deliveries: [] });
  }, 60_000);

  it('answers a body it cannot read (unknown or corrupt Content-Encoding) 400 REQUEST_BODY_UNREADABLE, and takes gzip', async () => {
    const dap = readFileSync(`${fixtures}envelopes/valid/dap-depression.json`);
    const send = (body: Buffer, encoding: string) =>
      fetch(`${api.base}/v1/notes`, {
        method: 'POST',
        body: new Uint8Array(body),
        headers: {
          'content-type': 'application/json',
          'content-encoding': encoding,
          authorization: `Bearer ${TOKENS.intake}`,
        },
      });
    for (const [body, encoding] of [
      [dap, 'foo'],
      [Buffer.from('not gzip at all'), 'gzip'],
    ] as const) {
      const res = await send(body, encoding);
      expect(res.status).toBe(400);
      expect(await code(res)).toBe('REQUEST_BODY_UNREADABLE');
    }
    expect([200, 202]).toContain((await send(gzipSync(dap), 'gzip')).status);
  }, 60_000);

  it('refuses a HealthScribe file carrying a control character with 422 HEALTHSCRIBE_SCHEMA at its path, not a 500', async () => {
    // The envelope's own strings are checked at parse; HealthScribe's files are parsed tolerantly, and a NUL there
    // used to reach the ledger's jsonb (which cannot hold it) and answer 500 INTERNAL.
    const env = JSON.parse(readFileSync(`${fixtures}envelopes/valid/dap-depression.json`, 'utf8'));
    env.noteId = 'enc-control-char-in-draft';
    const doc = env.healthscribe.clinicalDocument;
    doc.inline.ClinicalDocumentation.Sections[0].Summary[0].SummarizedSegment += '\u0000';
    doc.sha256 = sha256Hex(canonicalJson(doc.inline));
    const privateKeys = JSON.parse(
      readFileSync(`${fixtures}keys/riverside-clinic.private.jwks.json`, 'utf8'),
    ) as { keys: JWK[] };
    const { kid } = peekJwsHeader(env.signature.jws);
    const key = privateKeys.keys.find((k) => k.kid === kid)!;
    const res = await post(
      JSON.stringify(await signEnvelope(env, key, { kid, alg: key.alg as SignatureAlg })),
      TOKENS.intake,
    );
    expect(res.status).toBe(422);
    const oo = (await res.json()) as { issue: Array<{ details: { coding: Array<{ code: string }> } }> };
    expect(oo.issue[0]!.details.coding[0]!.code).toBe('HEALTHSCRIBE_SCHEMA');
    const text = JSON.stringify(oo);
    expect(text).toContain('ClinicalDocumentation.Sections[0].Summary[0].SummarizedSegment');
    expect(text).toContain('control character');
  }, 60_000);

  it('enforces roles and tenant limits', async () => {
    const dap = readFileSync(`${fixtures}envelopes/valid/dap-depression.json`, 'utf8');
    const none = await post(dap);
    expect(none.status).toBe(401);
    expect(await code(none)).toBe('AUTH_REQUIRED');
    const wrongRole = await post(dap, TOKENS.auditor);
    expect(wrongRole.status).toBe(403);
    expect(await code(wrongRole)).toBe('FORBIDDEN');
    const otherTenant = await post(dap, TOKENS.harbor);
    expect(otherTenant.status).toBe(403);
    const status = await fetch(`${api.base}/v1/notes/riverside-clinic/${JSON.parse(dap).noteId}`, {
      headers: { authorization: `Bearer ${TOKENS.operator}` },
    });
    expect(status.status).toBe(200);
    const body = (await status.json()) as {
      revisions: Array<{
        deliveries: Array<{ destination: string; state: string }>;
        signature: { signedAt: string };
      }>;
    };
    expect(body.revisions[0]!.deliveries[0]).toMatchObject({ destination: 'archive', state: 'pending' });
    // signedAt exactly as the envelope signed it (not the stored timestamp re-formatted).
    expect(body.revisions[0]!.signature.signedAt).toBe(JSON.parse(dap).signature.signedAt);
    const missing = await fetch(`${api.base}/v1/notes/riverside-clinic/nope`, {
      headers: { authorization: `Bearer ${TOKENS.operator}` },
    });
    expect(missing.status).toBe(404);
    const intakeReads = await fetch(`${api.base}/v1/notes/riverside-clinic/nope`, {
      headers: { authorization: `Bearer ${TOKENS.intake}` },
    });
    expect(intakeReads.status).toBe(403);
  }, 60_000);

  it('answers health and readiness', async () => {
    expect((await fetch(`${api.base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${api.base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { ledger: true } });
  });

  it('answers a known endpoint asked with another method 405 with Allow, and an unknown one 404', async () => {
    for (const [method, path, allow] of [
      ['PUT', '/v1/notes', 'POST'],
      ['GET', '/v1/notes', 'POST'],
      ['DELETE', '/v1/notes/riverside-clinic/n-1', 'GET, HEAD'],
      ['POST', '/v1/trace', 'GET, HEAD'],
      ['POST', '/healthz', 'GET, HEAD'],
      ['GET', '/v1/dead-letters/replay', 'POST'],
    ] as const) {
      const res = await fetch(`${api.base}${path}`, {
        method,
        headers: { authorization: `Bearer ${TOKENS.operator}` },
      });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect(await code(res)).toBe('METHOD_NOT_ALLOWED');
    }
    const missing = await fetch(`${api.base}/v1/nothing-here`);
    expect(missing.status).toBe(404);
    expect(await code(missing)).toBe('NOT_FOUND');
  });
});
