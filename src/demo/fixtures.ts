/**
 * The checked-in fixture envelopes as a review application would put them on the queue. The fixtures carry
 * their HealthScribe artifacts as `file:` URIs (which the queue refuses), so each is made queueable by moving
 * the artifacts somewhere the service can read them — inline, or into S3 under `s3://` URIs — and signing it
 * again with the fixture's own TEST key (fixtures/keys holds the private JWKs; see its README: never trust them).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JWK } from 'jose';
import { sha256Hex } from '../contract/artifacts.ts';
import type { JsonValue } from '../contract/json.ts';
import { canonicalJson, peekJwsHeader, type SignatureAlg, signEnvelope } from '../contract/signature.ts';

/** The repository's fixtures folder (shipped with the checkout; the demo needs nothing outside it). */
export const FIXTURES_DIR = fileURLToPath(new URL('../../fixtures/', import.meta.url));
export const VALID_ENVELOPES_DIR = join(FIXTURES_DIR, 'envelopes', 'valid');
export const KEYS_DIR = join(FIXTURES_DIR, 'keys');

type JsonObject = { [k: string]: JsonValue };

/** One entry of fixtures/envelopes/valid.manifest.json (the members the demo uses). */
export interface FixtureEntry {
  readonly file: string;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  readonly status: string;
  readonly template: string;
  readonly artifacts: string;
}

/**
 * The valid fixtures in the order a review application would send them: every note's revisions in order
 * (r1 before r2 before r3), otherwise the manifest's order.
 */
export function validFixtures(): FixtureEntry[] {
  const manifest = JSON.parse(
    readFileSync(join(FIXTURES_DIR, 'envelopes', 'valid.manifest.json'), 'utf8'),
  ) as {
    envelopes: FixtureEntry[];
  };
  return manifest.envelopes
    .map((e, i) => ({ e, i }))
    .sort((a, b) => a.e.revision - b.e.revision || a.i - b.i)
    .map(({ e }) => e);
}

/** Reads a valid fixture envelope. */
export function readFixture(file: string): JsonObject {
  return JSON.parse(readFileSync(join(VALID_ENVELOPES_DIR, file), 'utf8')) as JsonObject;
}

/** Signs `env` again with the fixture TEST key its current signature names (by kid, from the tenant's private JWKS). */
export async function resignWithFixtureKey(env: JsonObject): Promise<JsonObject> {
  const { kid } = peekJwsHeader((env['signature'] as { jws: string }).jws);
  const tenant = env['tenant'] as string;
  const keys = JSON.parse(readFileSync(join(KEYS_DIR, `${tenant}.private.jwks.json`), 'utf8')) as {
    keys: JWK[];
  };
  const key = keys.keys.find((k) => k.kid === kid);
  if (!key) throw new Error(`no private TEST key ${kid} for tenant ${tenant} in fixtures/keys`);
  return signEnvelope(env, key, { kid, alg: key.alg as SignatureAlg });
}

/** The `file:` artifacts of a fixture: name, the bytes, and their sha256 (the signed one). */
export function fileArtifacts(
  file: string,
  env: JsonObject,
): Array<{ name: 'transcript' | 'clinicalDocument'; bytes: Buffer; sha256: string }> {
  const hs = env['healthscribe'] as Record<string, { uri?: string; sha256?: string } | undefined>;
  const out: Array<{ name: 'transcript' | 'clinicalDocument'; bytes: Buffer; sha256: string }> = [];
  for (const name of ['transcript', 'clinicalDocument'] as const) {
    const uri = hs[name]?.uri;
    if (!uri?.startsWith('file:')) continue;
    const bytes = readFileSync(join(dirname(join(VALID_ENVELOPES_DIR, file)), uri.slice('file:'.length)));
    out.push({ name, bytes, sha256: sha256Hex(bytes) });
  }
  return out;
}

/**
 * A valid fixture envelope as the queue or HTTP would carry it: its `file:` artifacts inlined (with the sha256
 * of their RFC 8785 form), optionally changed by `patch`, and signed again with the fixture's own test key.
 */
export async function queueableFixture(
  file: string,
  patch: (e: JsonObject) => void = () => undefined,
): Promise<string> {
  const env = readFixture(file);
  const hs = env['healthscribe'] as Record<string, JsonValue>;
  for (const a of fileArtifacts(file, env)) {
    const inline = JSON.parse(a.bytes.toString('utf8')) as JsonValue;
    hs[a.name] = { inline, sha256: sha256Hex(canonicalJson(inline)) };
  }
  patch(env);
  return JSON.stringify(await resignWithFixtureKey(env));
}

/**
 * A valid fixture envelope with its `file:` artifacts uploaded by `put` (the exact bytes, so the signed sha256
 * is unchanged) and referenced by `s3://bucket/key`, signed again. Returns the envelope's bytes.
 */
export async function s3Fixture(
  file: string,
  bucket: string,
  put: (key: string, bytes: Uint8Array) => Promise<void>,
): Promise<string> {
  const env = readFixture(file);
  const hs = env['healthscribe'] as Record<string, JsonValue>;
  const prefix = `${env['tenant'] as string}/${env['noteId'] as string}/r${env['revision'] as number}`;
  for (const a of fileArtifacts(file, env)) {
    const key = `${prefix}/${a.name === 'transcript' ? 'transcript' : 'summary'}.json`;
    await put(key, a.bytes);
    hs[a.name] = { uri: `s3://${bucket}/${key}`, sha256: a.sha256 };
  }
  return JSON.stringify(await resignWithFixtureKey(env));
}
