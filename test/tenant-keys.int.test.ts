/**
 * A tenant's review keys from an https URL (PRODUCT.md: "JWKS file or https URL"), against a real TLS server:
 * fetched once and cached, then the keys verify; a server error, a non-JSON answer, a document that is not a
 * JWK Set and a refused connection each fail with a stable code (and a failed fetch is tried again next time).
 * Key rotation, through the intake on a real ledger: a note signed with a new key is accepted once the keys are
 * read again (an unknown key id reads them again, at most every 30 s), and a removed key stops verifying once
 * the cached keys are 10 minutes old.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TenantConfig } from '../src/config/index.ts';
import { HttpTransport } from '../src/deliver/fhir-http.ts';
import type { ScribeError } from '../src/errors.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { Intake, TenantKeys } from '../src/service/intake.ts';
import { selfSignedCert } from './support/mllp-server.ts';
import { bytesOf, envelopeJson, fileDropConfig, jwksOf, signed, testKey } from './support/notes.ts';
import { testConformance } from './support/profiles.ts';

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

/**
 * An intake on a fresh in-memory ledger for tenant riverside-clinic (one file destination), its review keys from
 * `reviewKeys` (a file path or URL), with a clock the test steps; `outcome` gives the outcome or `CODE/disposition`.
 */
async function rotationIntake(dir: string, reviewKeys: string, ledger: Ledger, start: number) {
  const clock = { now: start };
  const intake = new Intake({
    config: await fileDropConfig(dir, { reviewKeys }),
    ledger,
    mappings: new MappingRegistry(),
    conformance: await testConformance(),
    now: () => clock.now,
    keysTransport: () => new HttpTransport({ ca: pair!.cert }),
  });
  const ingest = async (noteId: string, key: Awaited<ReturnType<typeof testKey>>, envelope = {}) =>
    intake.ingest(bytesOf(await signed(envelopeJson({ noteId, ...envelope }), key)), 'http').then(
      (r) => r.outcome,
      (e: ScribeError) => `${e.code}/${e.disposition}`,
    );
  return { clock, ingest };
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

describe('review key rotation, through the intake', () => {
  it('accepts a new key after an unknown kid (30 s cooldown), drops a removed key after 10 minutes, retracts across a rotation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-rotation-'));
    const ledger = await Ledger.open('pglite://memory');
    try {
      const [oldKey, newKey] = [await testKey('ES256', 'review-2025'), await testKey('ES256', 'review-2026')];
      const jwksFile = join(dir, 'keys.jwks.json');
      writeFileSync(jwksFile, JSON.stringify(jwksOf(oldKey)));
      const { clock, ingest } = await rotationIntake(dir, './keys.jwks.json', ledger, 1_000_000);
      expect(await ingest('n-1', oldKey)).toBe('accepted');
      // The review application rotates: the JWKS now holds only the new key. A file is read again at once when a
      // signature names a key id the cached keys lack (a URL only every 30 s: the next test).
      writeFileSync(jwksFile, JSON.stringify(jwksOf(newKey)));
      clock.now += 5_000;
      expect(await ingest('n-2', newKey)).toBe('accepted');
      // The cached keys (read at the last refresh) still hold only the new key: the old one is refused.
      expect(await ingest('n-3', oldKey)).toBe('KEY_UNKNOWN/reject');

      // Revocation without an unknown kid: the file goes back to the old key only; the new key verifies until
      // the cached keys are 10 minutes old, then the keys are read again and it no longer does.
      writeFileSync(jwksFile, JSON.stringify(jwksOf(oldKey)));
      clock.now += 60_000;
      expect(await ingest('n-4', newKey)).toBe('accepted');
      clock.now += 10 * 60_000;
      expect(await ingest('n-5', newKey)).toBe('KEY_UNKNOWN/reject');

      // Retracting n-2, whose signing key is gone from the JWKS now: the retraction (signed with a current key)
      // renders the recorded revision it retracts, which was verified when it was recorded.
      expect(await ingest('n-2', oldKey, { revision: 2, status: 'entered-in-error', replaces: 1 })).toBe(
        'accepted',
      );
    } finally {
      await ledger.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('from a JWKS URL, a key rotated in within 30 s of the last read is not refused for good: KEYS_REFRESH_PENDING (retry), then accepted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-rotation-url-'));
    const ledger = await Ledger.open('pglite://memory');
    const [oldKey, newKey] = [await testKey('ES256', 'url-2025'), await testKey('ES256', 'url-2026')];
    const saved = publicJwks;
    publicJwks = JSON.stringify(jwksOf(oldKey));
    try {
      const { clock, ingest } = await rotationIntake(dir, `${base}/jwks.json`, ledger, 2_000_000);
      const reads = () => hits.get('/jwks.json') ?? 0;
      const before = reads();
      expect(await ingest('u-1', oldKey)).toBe('accepted');
      publicJwks = JSON.stringify(jwksOf(oldKey, newKey));
      clock.now += 5_000; // within 30 s of the read: the URL is not read again, and the new kid is not refused for good
      expect(await ingest('u-2', newKey)).toBe('KEYS_REFRESH_PENDING/retry');
      expect(await ingest('u-2', newKey)).toBe('KEYS_REFRESH_PENDING/retry');
      expect(reads() - before).toBe(1);
      clock.now += 30_000; // past it: the unknown kid reads the keys again, and the note (sent again) is taken
      expect(await ingest('u-2', newKey)).toBe('accepted');
      expect(reads() - before).toBe(2);
      // A kid that is still not published after the read is refused for good.
      clock.now += 31_000;
      const stranger = await testKey('ES256', 'never-published');
      expect(await ingest('u-3', stranger)).toBe('KEY_UNKNOWN/reject');
    } finally {
      publicJwks = saved;
      await ledger.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
