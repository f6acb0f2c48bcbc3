/**
 * The envelope signature (spec/signed-note-envelope.md § Signature): a detached-payload JWS (RFC 7515
 * Appendix F) over the RFC 8785 canonical form of the envelope without `signature.jws`.
 *
 * Canonical JSON comes from `canonicalize` (the RFC 8785 author's implementation); JWS from `jose`.
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import canonicalize from 'canonicalize';
import {
  base64url,
  calculateJwkThumbprint,
  FlattenedSign,
  flattenedVerify,
  importJWK,
  type JWK,
  type JWSHeaderParameters,
} from 'jose';
import { ScribeError } from '../errors.ts';
import type { JsonValue } from './json.ts';

/** The only algorithms a review application may sign with. `none` and HMAC are refused by construction. */
export const ALLOWED_ALGS = ['ES256', 'ES384', 'RS256', 'RS384', 'PS256', 'EdDSA'] as const;
export type SignatureAlg = (typeof ALLOWED_ALGS)[number];

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const;

/** RFC 8785 canonical JSON as a string. Throws for values JSON cannot carry (lone surrogates, NaN). */
export function canonicalJson(value: unknown): string {
  const s = canonicalize(value);
  if (s === undefined) throw new ScribeError('INTERNAL', 'canonicalize() returned nothing for a JSON value');
  return s;
}

/** The exact bytes that are signed: the envelope minus `signature.jws`, canonicalised, UTF-8. */
export function signedContent(raw: { [k: string]: JsonValue }): Uint8Array {
  const sig = raw['signature'];
  const signature =
    sig && typeof sig === 'object' && !Array.isArray(sig)
      ? Object.fromEntries(Object.entries(sig).filter(([k]) => k !== 'jws'))
      : sig;
  return new TextEncoder().encode(canonicalJson({ ...raw, signature }));
}

/** A tenant's review keys. */
export interface Jwks {
  readonly keys: readonly JWK[];
}

/** Validates a JWKS document; private members are dropped so only public keys are ever held. */
export function parseJwks(json: unknown, source = 'JWKS'): Jwks {
  const keys = (json as { keys?: unknown } | null)?.keys;
  if (!json || typeof json !== 'object' || !Array.isArray(keys)) {
    throw new ScribeError('KEYS_INVALID', `${source} is not a JWK Set: it needs a "keys" array`);
  }
  const out: JWK[] = [];
  let withoutKid = 0;
  keys.forEach((k: unknown, i) => {
    if (!k || typeof k !== 'object' || typeof (k as JWK).kty !== 'string') {
      throw new ScribeError('KEYS_INVALID', `key ${i} of ${source} is not a JWK (no "kty")`, {
        where: `$.keys[${i}]`,
      });
    }
    const jwk = { ...(k as JWK) } as Record<string, unknown>;
    // A signature names its key by kid (required in the header), so a key without one can never be chosen; a
    // published set may hold such keys (kid is optional in RFC 7517, e.g. an encryption key): they are left out.
    if (typeof jwk['kid'] !== 'string' || jwk['kid'] === '') {
      withoutKid++;
      return;
    }
    if (jwk['kty'] === 'oct') return; // symmetric keys can only serve HMAC, which is forbidden
    for (const m of PRIVATE_MEMBERS) delete jwk[m];
    // A public key may only verify: "sign" beside "verify" in key_ops (a key pair's ops copied to its public half)
    // would make WebCrypto refuse to import it. Only "verify" is kept; without it the key is refused at use.
    const ops = jwk['key_ops'];
    if (Array.isArray(ops) && ops.includes('verify')) jwk['key_ops'] = ['verify'];
    out.push(jwk as JWK);
  });
  if (keys.length > 0 && withoutKid === keys.length) {
    throw new ScribeError('KEYS_INVALID', `no key of ${source} has a "kid"`, { where: '$.keys' });
  }
  return { keys: out };
}

export async function loadJwksFile(path: string): Promise<Jwks> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ScribeError(
      'FILE_UNREADABLE',
      `cannot read the JWKS file (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      {
        where: path,
      },
    );
  }
  return parseJwksText(text, path);
}

/** A JWKS file's text, checked as parseJwks does (KEYS_INVALID when it is not JSON or not a JWK Set). */
export function parseJwksText(text: string, path: string, source: string = path): Jwks {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ScribeError('KEYS_INVALID', 'the JWKS file is not JSON', { where: path });
  }
  return parseJwks(json, source);
}

/** What is recorded about a signature. */
export interface SignatureCheck {
  readonly kid: string;
  readonly alg: string;
  /** RFC 7638 SHA-256 thumbprint (base64url) of the key that verified (absent when not verified). */
  readonly thumbprint?: string;
  readonly signedAt: string;
  /** False only for `scribe-bridge map` without keys: a dry run that never delivers. */
  readonly verified: boolean;
}

/** Reads kid and alg from the protected header without verifying (for dry runs). Never throws. */
export function peekJwsHeader(jws: string): { kid: string; alg: string } {
  try {
    const h = JSON.parse(new TextDecoder().decode(base64url.decode(jws.split('.')[0] ?? ''))) as Record<
      string,
      unknown
    >;
    return {
      kid: typeof h['kid'] === 'string' ? h['kid'] : '',
      alg: typeof h['alg'] === 'string' ? h['alg'] : '',
    };
  } catch {
    return { kid: '', alg: '' };
  }
}

const thumbprints = new WeakMap<JWK, Promise<string>>();

/** The key's RFC 7638 thumbprint, once per key object (a tenant's keys are parsed once per JWKS read). */
function thumbprintOf(jwk: JWK): Promise<string> {
  let t = thumbprints.get(jwk);
  if (!t) {
    t = calculateJwkThumbprint(jwk, 'sha256');
    thumbprints.set(jwk, t);
    t.catch(() => thumbprints.delete(jwk));
  }
  return t;
}

const importedKeys = new WeakMap<JWK, Map<string, Promise<CryptoKey | Uint8Array>>>();

function importPublic(jwk: JWK, alg: string): Promise<CryptoKey | Uint8Array> {
  let byAlg = importedKeys.get(jwk);
  if (!byAlg) {
    byAlg = new Map();
    importedKeys.set(jwk, byAlg);
  }
  let key = byAlg.get(alg);
  if (!key) {
    key = importJWK(jwk, alg);
    byAlg.set(alg, key);
    key.catch(() => byAlg.delete(alg));
  }
  return key;
}

const JWS_HEADER_KNOWN = new Set(['alg', 'kid', 'typ', 'cty', 'crit']);

/**
 * Verifies `signature.jws` over `content` with the tenant's keys. Throws ScribeError with
 * ALG_FORBIDDEN, JWS_CRIT_UNSUPPORTED, KEY_UNKNOWN or SIGNATURE_INVALID; never anything else.
 */
export async function verifyDetachedJws(
  jws: string,
  content: Uint8Array,
  jwks: Jwks,
  signedAt: string,
): Promise<SignatureCheck> {
  const where = '$.signature.jws';
  const parts = jws.split('.');
  if (parts.length !== 3) {
    throw new ScribeError(
      'SIGNATURE_INVALID',
      'signature.jws is not a JWS compact serialization (three dot-separated parts)',
      { where },
    );
  }
  const [headerB64, payloadB64, sigB64] = parts as [string, string, string];
  if (payloadB64 !== '') {
    throw new ScribeError(
      'SIGNATURE_INVALID',
      'signature.jws must have a detached payload (an empty middle part)',
      { where },
    );
  }
  let header: JWSHeaderParameters;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(base64url.decode(headerB64)));
  } catch {
    throw new ScribeError('SIGNATURE_INVALID', 'the JWS protected header is not base64url-encoded JSON', {
      where,
    });
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) {
    throw new ScribeError('SIGNATURE_INVALID', 'the JWS protected header is not a JSON object', { where });
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || !(ALLOWED_ALGS as readonly string[]).includes(alg)) {
    throw new ScribeError('ALG_FORBIDDEN', `JWS algorithm ${JSON.stringify(alg ?? null)} is not allowed`, {
      where: `${where} (header.alg)`,
    });
  }
  if (header.crit !== undefined) {
    throw new ScribeError(
      'JWS_CRIT_UNSUPPORTED',
      'the JWS header has a "crit" parameter, and no extension is supported',
      {
        where: `${where} (header.crit)`,
      },
    );
  }
  if (
    header.b64 !== undefined ||
    header.jwk !== undefined ||
    header.jku !== undefined ||
    header.x5u !== undefined
  ) {
    // Keys come only from the tenant's configured JWKS, never from the message itself.
    const extra = Object.keys(header).filter((k) => !JWS_HEADER_KNOWN.has(k));
    throw new ScribeError(
      'SIGNATURE_INVALID',
      `the JWS header carries parameters that are not accepted: ${extra.join(', ')}`,
      { where },
    );
  }
  const kid = header.kid;
  if (typeof kid !== 'string' || kid === '') {
    throw new ScribeError(
      'KEY_UNKNOWN',
      kid === undefined
        ? 'the JWS header has no "kid"'
        : 'the JWS header\'s "kid" must be a non-empty string',
      { where: `${where} (header.kid)` },
    );
  }
  const candidates = jwks.keys.filter((k) => k.kid === kid);
  if (candidates.length === 0) {
    throw new ScribeError('KEY_UNKNOWN', `key id "${kid}" is not in this tenant's review keys`, {
      where: `${where} (header.kid)`,
    });
  }
  // The signing input's payload part. Node's native base64url (jose's portable encoder builds it from char codes:
  // ~0.2 ms and ~100 KB of garbage for a typical note's 20 KB of content).
  const payload = Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('base64url');
  // Why each key with this kid did not verify it: a mismatch, or a reason the key cannot verify this algorithm.
  const unusable: string[] = [];
  let mismatched = false;
  for (const jwk of candidates) {
    if (jwk.alg !== undefined && jwk.alg !== alg) {
      unusable.push(`it is published for ${jwk.alg}`);
      continue;
    }
    if (jwk.use !== undefined && jwk.use !== 'sig') {
      unusable.push(`it is published for use "${jwk.use}", not "sig"`);
      continue;
    }
    if (jwk.key_ops !== undefined && !jwk.key_ops.includes('verify')) {
      unusable.push('its key_ops do not include "verify"');
      continue;
    }
    let ok: boolean;
    try {
      ok = await verifyWithKey(jwk, alg, headerB64, payload, sigB64);
    } catch (e) {
      // jose's and Node's messages name the key's shape (type, curve, size), never content.
      unusable.push((e instanceof Error ? e.message : 'it cannot be used').split('\n')[0]!.slice(0, 160));
      continue;
    }
    if (!ok) {
      mismatched = true;
      continue;
    }
    return {
      kid,
      alg: alg as SignatureAlg,
      thumbprint: await thumbprintOf(jwk),
      signedAt,
      verified: true,
    };
  }
  if (mismatched || unusable.length === 0)
    throw new ScribeError('SIGNATURE_INVALID', `the signature does not verify with key "${kid}"`, { where });
  throw new ScribeError(
    'SIGNATURE_INVALID',
    `key "${kid}" of this tenant's review keys cannot verify this ${alg} signature: ${unusable.join('; ')}`,
    {
      where: `${where} (header.kid)`,
      hint: `Publish the review application's ${alg} public key under this kid (use "sig"), or sign with the algorithm the key is for.`,
    },
  );
}

/**
 * True when the key verifies the signature, false when it does not; throws when the key cannot verify this
 * algorithm at all (wrong key type or curve, an RSA key under 2048 bits, …). EdDSA over Ed448 (RFC 8037, which
 * jose's WebCrypto build does not import) is verified with node:crypto; everything else with jose.
 */
async function verifyWithKey(
  jwk: JWK,
  alg: string,
  headerB64: string,
  payload: string,
  sigB64: string,
): Promise<boolean> {
  if (alg === 'EdDSA' && jwk.kty === 'OKP' && jwk.crv === 'Ed448') {
    const key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, format: 'jwk' });
    return cryptoVerify(null, Buffer.from(`${headerB64}.${payload}`), key, base64url.decode(sigB64));
  }
  const key = await importPublic(jwk, alg);
  try {
    await flattenedVerify({ protected: headerB64, payload, signature: sigB64 }, key, { algorithms: [alg] });
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') return false;
    throw e;
  }
}

/**
 * Signs an envelope (test fixtures and the demo's stand-in review application only: production signing
 * happens in the review application). Returns the envelope with `signature.jws` set.
 */
export async function signEnvelope<T extends { [k: string]: JsonValue }>(
  envelope: T,
  privateJwk: JWK,
  opts: { kid: string; alg: SignatureAlg },
): Promise<T> {
  const content = signedContent(envelope);
  const key = await importJWK(privateJwk, opts.alg);
  const jws = await new FlattenedSign(content).setProtectedHeader({ alg: opts.alg, kid: opts.kid }).sign(key);
  const signature = { ...(envelope['signature'] as object), jws: `${jws.protected}..${jws.signature}` };
  return { ...envelope, signature };
}
