/**
 * A tenant's review keys from an https URL (PRODUCT.md: "JWKS file or https URL"), against a real TLS server:
 * fetched once and cached, then the keys verify; a server error, a non-JSON answer, a document that is not a
 * JWK Set and a refused connection each fail with a stable code (and a failed fetch is tried again next time).
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TenantConfig } from '../src/config/index.ts';
import { HttpTransport } from '../src/deliver/fhir-http.ts';
import type { ScribeError } from '../src/errors.ts';
import { TenantKeys } from '../src/service/intake.ts';
import { selfSignedCert } from './support/mllp-server.ts';
import { jwksOf, testKey } from './support/notes.ts';

const pair = selfSignedCert();
let server: https.Server;
let base: string;
const hits = new Map<string, number>();
let publicJwks = '';

beforeAll(async () => {
  if (!pair) throw new Error('openssl is needed to make the test certificate');
  publicJwks = JSON.stringify(jwksOf(await testKey()));
  server = https.createServer({ key: pair.key, cert: pair.cert }, (req, res) => {
    hits.set(req.url!, (hits.get(req.url!) ?? 0) + 1);
    if (req.url === '/jwks.json') res.writeHead(200, { 'content-type': 'application/json' }).end(publicJwks);
    else if (req.url === '/html') res.writeHead(200, { 'content-type': 'text/html' }).end('<html></html>');
    else if (req.url === '/not-a-set') res.writeHead(200).end('{"kty": "EC"}');
    else res.writeHead(500).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `https://localhost:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const tenant = (id: string, url: string): TenantConfig =>
  ({ id, reviewKeys: { kind: 'url', url }, destinations: [] }) as unknown as TenantConfig;

function keysFor(tenants: TenantConfig[]): TenantKeys {
  return new TenantKeys({ tenants }, () => new HttpTransport({ ca: pair!.cert }));
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    // The message is "<CODE>: <what> (at <where>). <what to do>"; keep the first two.
    const m = /^([A-Z_]+): (.*?)(?: \(at .*)?\. /.exec((e as Error).message);
    expect(m?.[1]).toBe((e as ScribeError).code);
    return `${m?.[1]}: ${m?.[2]}`;
  }
  return 'no error';
}

describe('tenant review keys from an https URL', () => {
  it('fetches the JWKS once per tenant and keeps only public keys', async () => {
    const keys = keysFor([tenant('riverside-clinic', `${base}/jwks.json`)]);
    const a = await keys.get('riverside-clinic');
    const b = await keys.get('riverside-clinic');
    expect(a).toBe(b);
    expect(a.keys).toHaveLength(1);
    expect(a.keys[0]).not.toHaveProperty('d');
    expect(hits.get('/jwks.json')).toBe(1);
  });

  it('refuses what is not a JWK Set and what does not answer, with stable codes; retries after a failure', async () => {
    const closed = `https://localhost:1/jwks.json`;
    const keys = keysFor([
      tenant('broken', `${base}/500`),
      tenant('html', `${base}/html`),
      tenant('not-a-set', `${base}/not-a-set`),
      tenant('closed', closed),
    ]);
    expect(await code(keys.get('broken'))).toBe('ARTIFACT_UNAVAILABLE: the tenant JWKS URL answered 500');
    expect(await code(keys.get('broken'))).toBe('ARTIFACT_UNAVAILABLE: the tenant JWKS URL answered 500');
    expect(hits.get('/500')).toBe(2);
    expect(await code(keys.get('html'))).toBe(
      'ARTIFACT_UNAVAILABLE: the tenant JWKS URL did not answer with JSON',
    );
    expect(await code(keys.get('not-a-set'))).toMatch(/^KEYS_INVALID: the tenant JWKS URL is not a JWK Set/);
    expect(await code(keys.get('closed'))).toBe(
      'ARTIFACT_UNAVAILABLE: the tenant JWKS URL did not answer (ECONNREFUSED)',
    );
    expect(await code(keys.get('nobody'))).toMatch(/^KEY_UNKNOWN/);
  });

  it('does not trust a certificate the system does not (no CA given)', async () => {
    const keys = new TenantKeys({ tenants: [tenant('riverside-clinic', `${base}/jwks.json`)] });
    expect(await code(keys.get('riverside-clinic'))).toMatch(
      /^ARTIFACT_UNAVAILABLE: the tenant JWKS URL did not answer \((DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)\)/,
    );
  });
});
