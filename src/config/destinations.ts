/**
 * Checking and normalising one destination: its mapping (exists, loads, has the format the destination
 * type needs), its retry policy, its TLS files, and — for FHIR — its auth, whose secrets are read from the
 * environment (or a key file) here, once, into {@link Secret}s.
 */
import { readFileSync } from 'node:fs';
import { importJWK, importPKCS8, type JWK } from 'jose';
import type { z } from 'zod';
import type { PathSegment } from '../contract/json.ts';
import type { AckTableOverrides } from '../deliver/ack.ts';
import type { RetryPolicy } from '../deliver/backoff.ts';
import { isScribeError } from '../errors.ts';
import { resolveMappingRef } from '../map/registry.ts';
import {
  type CheckContext,
  checkedPath,
  part,
  record,
  requireTlsForSecret,
  secretFromEnv,
} from './context.ts';
import {
  configErrorMap,
  type DestinationEntry,
  envName,
  type FhirAuthEntry,
  FhirAuthSchema,
  FhirDestinationSchema,
  FileDestinationSchema,
  MllpDestinationSchema,
  type RetryEntry,
  RetrySchema,
  type TlsEntry,
  TlsSchema,
} from './schema.ts';
import { Secret } from './secret.ts';
import type { DestinationConfig, FhirAuthConfig, MappingRefConfig, TlsConfig } from './types.ts';

type Path = readonly PathSegment[];

/** Which mapping formats each destination type can send. */
const FORMATS_FOR = { fhir: ['fhir'], mllp: ['hl7v2'], file: ['fhir', 'hl7v2'] } as const;

function checkMapping(
  ref: string,
  type: DestinationEntry['type'],
  at: Path,
  ctx: CheckContext,
  renderings?: { names: readonly string[]; at: Path },
): MappingRefConfig | undefined {
  try {
    const file = resolveMappingRef(ref, ctx.dir);
    const mapping = ctx.registry.get(file);
    const allowed: readonly string[] = FORMATS_FOR[type];
    if (!allowed.includes(mapping.format)) {
      ctx.problems.at(
        at,
        `a ${type} destination needs a mapping with format: ${allowed.join(' or ')}; ${ref} has format: ${mapping.format}`,
      );
      return undefined;
    }
    let ok = true;
    for (const [i, name] of (renderings?.names ?? []).entries()) {
      if (!mapping.renderings.has(name)) {
        ok = false;
        const known = [...mapping.renderings.keys()].join(', ') || 'none';
        ctx.problems.at([...renderings!.at, i], `mapping ${ref} has no rendering ${name} (it has: ${known})`);
      }
    }
    return ok ? { ref, file, format: mapping.format } : undefined;
  } catch (e) {
    if (!isScribeError(e)) throw e;
    const where = e.code === 'MAPPING_INVALID' && e.where ? ` (at ${e.where})` : '';
    const what = e.code === 'MAPPING_INVALID' ? `mapping ${ref} is invalid: ` : '';
    ctx.problems.at(at, `${what}${e.detail}${where}`);
    return undefined;
  }
}

function retryPolicy(r: RetryEntry, at: Path, ctx: CheckContext): RetryPolicy | undefined {
  if (r.initialDelayMs > r.maxDelayMs) {
    ctx.problems.at(
      [...at, 'initialDelayMs'],
      `initialDelayMs (${r.initialDelayMs}) must not exceed maxDelayMs (${r.maxDelayMs})`,
    );
    return undefined;
  }
  return {
    maxAttempts: r.maxAttempts,
    initialDelayMs: r.initialDelayMs,
    maxDelayMs: r.maxDelayMs,
    ...(r.maxElapsedMs !== undefined ? { maxElapsedMs: r.maxElapsedMs } : {}),
  };
}

function tlsFiles(tls: TlsEntry, at: Path, ctx: CheckContext): TlsConfig | undefined {
  const out: { ca?: string; cert?: string; key?: string; servername?: string } = {};
  let ok = true;
  for (const k of ['ca', 'cert', 'key'] as const) {
    const p = tls[k];
    if (p === undefined) continue;
    const abs = checkedPath(p, [...at, k], 'file', ctx);
    if (abs === undefined) ok = false;
    else out[k] = abs;
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    ok = false;
    ctx.problems.at([...at, tls.cert === undefined ? 'key' : 'cert'], 'cert and key go together: give both');
  }
  if (tls.servername !== undefined) out.servername = tls.servername;
  return ok ? out : undefined;
}

/** Whether `text` is a PKCS#8 PEM or a private JWK (JSON) that imports for `alg`. */
async function importsAsPrivateKey(text: string, alg: 'RS384' | 'ES384'): Promise<boolean> {
  try {
    if (text.trimStart().startsWith('-----BEGIN')) {
      await importPKCS8(text, alg);
      return true;
    }
    const jwk: unknown = JSON.parse(text);
    if (typeof jwk !== 'object' || jwk === null || !('d' in jwk)) return false;
    await importJWK(jwk as JWK, alg);
    return true;
  } catch {
    // jose's reason is not shown: it is generic, and nothing derived from key material belongs in a message.
    return false;
  }
}

async function fhirAuth(
  auth: FhirAuthEntry,
  baseUrl: string,
  tls: TlsConfig | undefined,
  at: Path,
  ctx: CheckContext,
): Promise<FhirAuthConfig | undefined> {
  switch (auth.type) {
    case 'none':
      return auth;
    case 'mtls':
      if (tls?.cert === undefined || tls.key === undefined) {
        ctx.problems.at([...at, 'type'], 'mtls needs the destination to have tls.cert and tls.key');
        return undefined;
      }
      return auth;
    case 'bearer': {
      requireTlsForSecret(baseUrl, [...at.slice(0, -1), 'baseUrl'], 'the bearer token', ctx);
      const token = secretFromEnv(auth.tokenEnv, [...at, 'tokenEnv'], ctx);
      return token ? { type: 'bearer', tokenEnv: auth.tokenEnv, token } : undefined;
    }
    case 'client-credentials': {
      requireTlsForSecret(auth.tokenUrl, [...at, 'tokenUrl'], 'the client secret', ctx);
      requireTlsForSecret(baseUrl, [...at.slice(0, -1), 'baseUrl'], 'the access token', ctx);
      const clientSecret = secretFromEnv(auth.clientSecretEnv, [...at, 'clientSecretEnv'], ctx);
      if (!clientSecret) return undefined;
      const { scope, ...rest } = auth;
      return { ...rest, clientSecret, ...(scope !== undefined ? { scope } : {}) };
    }
    case 'smart-backend': {
      requireTlsForSecret(auth.tokenUrl, [...at, 'tokenUrl'], 'the access token', ctx);
      requireTlsForSecret(baseUrl, [...at.slice(0, -1), 'baseUrl'], 'the access token', ctx);
      const { privateKeyFile, privateKeyEnv, scope, ...rest } = auth;
      if ((privateKeyFile === undefined) === (privateKeyEnv === undefined)) {
        ctx.problems.at(at, 'smart-backend needs exactly one of privateKeyFile and privateKeyEnv');
        return undefined;
      }
      let privateKey: Secret | undefined;
      let source: { file: string } | { env: string };
      let keyAt: Path;
      if (privateKeyFile !== undefined) {
        keyAt = [...at, 'privateKeyFile'];
        const file = checkedPath(privateKeyFile, keyAt, 'file', ctx);
        if (file === undefined) return undefined;
        source = { file };
        try {
          privateKey = new Secret(readFileSync(file, 'utf8'));
        } catch (e) {
          ctx.problems.at(keyAt, `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
          return undefined;
        }
      } else {
        keyAt = [...at, 'privateKeyEnv'];
        source = { env: privateKeyEnv! };
        privateKey = secretFromEnv(privateKeyEnv!, keyAt, ctx);
        if (!privateKey) return undefined;
      }
      if (!(await importsAsPrivateKey(privateKey.reveal(), auth.alg))) {
        ctx.problems.at(keyAt, `not a PKCS#8 PEM private key or private JWK usable with ${auth.alg}`);
        return undefined;
      }
      return {
        ...rest,
        privateKeySource: source,
        privateKey,
        ...(scope !== undefined ? { scope } : {}),
      };
    }
  }
}

/**
 * An auth block the schema refused (an unknown `alg`, a missing `kid`…): its secrets and key file are still
 * looked for, each where its own key is right, so a wrong `alg` does not hide an unset variable beside it.
 */
function checkAuthParts(auth: Readonly<Record<string, unknown>>, at: Path, ctx: CheckContext): void {
  for (const key of ['tokenEnv', 'clientSecretEnv', 'privateKeyEnv'] as const) {
    const name = part(envName, auth[key]);
    if (name !== undefined) secretFromEnv(name, [...at, key], ctx);
  }
  if (typeof auth['privateKeyFile'] === 'string' && auth['privateKeyFile'] !== '')
    checkedPath(auth['privateKeyFile'], [...at, 'privateKeyFile'], 'file', ctx);
}

/**
 * A destination whose `type` is missing or unknown: the file's schema check can only say that (it does not know
 * which destination this is meant to be), so each other key is checked here against the types that have it, and
 * a key no type has is unknown — every mistake of the entry is reported at once, not one fix at a time.
 */
function checkWithoutType(r: Readonly<Record<string, unknown>>, at: Path, ctx: CheckContext): void {
  const shapes = [
    FhirDestinationSchema.shape,
    MllpDestinationSchema.shape,
    FileDestinationSchema.shape,
  ] as const;
  for (const [key, value] of Object.entries(r)) {
    if (key === 'type') continue;
    const owner = shapes.find((shape) => key in shape) as Record<string, z.ZodType> | undefined;
    if (!owner) {
      ctx.problems.at([...at, key], `unknown key ${JSON.stringify(key)}`);
      continue;
    }
    const result = owner[key]!.safeParse(value, { error: configErrorMap });
    if (result.success) continue;
    for (const issue of result.error.issues) {
      const path = [...at, key, ...(issue.path as PathSegment[])];
      if (issue.code === 'unrecognized_keys')
        for (const k of issue.keys) ctx.problems.at([...path, k], `unknown key ${JSON.stringify(k)}`);
      else ctx.problems.at(path, issue.message);
    }
  }
}

/**
 * One destination (raw), checked and normalised; undefined after a problem. Each check runs when its own
 * keys are right, so one wrong key does not hide a wrong mapping or a missing secret beside it.
 */
export async function resolveDestination(
  raw: unknown,
  index: number,
  ctx: CheckContext,
): Promise<DestinationConfig | undefined> {
  const at: Path = ['destinations', index];
  const r = record(raw);
  const type = r['type'];
  if (type !== 'fhir' && type !== 'mllp' && type !== 'file') {
    checkWithoutType(r, at, ctx);
    return undefined;
  }
  const ref = part(FhirDestinationSchema.shape.mapping, r['mapping']);
  const renderings =
    type === 'fhir' ? part(FhirDestinationSchema.shape.renderings, r['renderings']) : undefined;
  const mapping =
    ref === undefined
      ? undefined
      : checkMapping(
          ref,
          type,
          [...at, 'mapping'],
          ctx,
          renderings ? { names: renderings, at: [...at, 'renderings'] } : undefined,
        );
  const retryEntry = part(RetrySchema.prefault({}), r['retry']);
  const retry = retryEntry && retryPolicy(retryEntry, [...at, 'retry'], ctx);
  const tlsEntry = type === 'file' ? undefined : part(TlsSchema, r['tls']);
  const tls = tlsEntry && tlsFiles(tlsEntry, [...at, 'tls'], ctx);
  const tlsOk = r['tls'] === undefined || tls !== undefined;

  if (type === 'fhir') {
    const authEntry = part(FhirAuthSchema, r['auth']);
    if (authEntry === undefined) checkAuthParts(record(r['auth']), [...at, 'auth'], ctx);
    const baseUrl = part(FhirDestinationSchema.shape.baseUrl, r['baseUrl']);
    // Without a valid baseUrl the auth is still checked; the plain-http rule then checks https://.
    const auth = authEntry && (await fhirAuth(authEntry, baseUrl ?? 'https://x', tls, [...at, 'auth'], ctx));
    const d = part(FhirDestinationSchema, raw);
    if (!d || !mapping || !retry || !auth || !tlsOk) return undefined;
    return {
      id: d.id,
      type: 'fhir',
      mapping,
      retry,
      concurrency: d.concurrency,
      baseUrl: d.baseUrl,
      auth,
      write: d.write,
      references: d.references,
      timeoutMs: d.timeoutMs,
      ...(tls ? { tls } : {}),
      ...(d.renderings ? { renderings: d.renderings } : {}),
    };
  }
  if (type === 'mllp') {
    const d = part(MllpDestinationSchema, raw);
    if (!d || !mapping || !retry || !tlsOk) return undefined;
    const ackCodes: AckTableOverrides = {};
    for (const [code, outcome] of Object.entries(d.ackCodes)) {
      if (outcome !== undefined) ackCodes[code as keyof AckTableOverrides] = outcome;
    }
    const hd = [
      'sendingApplication',
      'sendingFacility',
      'receivingApplication',
      'receivingFacility',
    ] as const;
    return {
      id: d.id,
      type: 'mllp',
      mapping,
      retry,
      concurrency: d.concurrency,
      host: d.host,
      port: d.port,
      ...Object.fromEntries(hd.filter((k) => d[k] !== undefined).map((k) => [k, d[k]])),
      ackTimeoutMs: d.ackTimeoutMs,
      ...(tls ? { tls } : {}),
      ackCodes,
    };
  }
  const written = part(FileDestinationSchema.shape.directory, r['directory']);
  // The folder is created on first delivery; it only must not be a file.
  const directory = written && checkedPath(written, [...at, 'directory'], 'directory', ctx, true);
  const d = part(FileDestinationSchema, raw);
  if (!d || !mapping || !retry || !directory) return undefined;
  return { id: d.id, type: 'file', mapping, retry, concurrency: d.concurrency, directory };
}
