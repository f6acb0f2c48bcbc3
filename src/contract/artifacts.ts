/**
 * HealthScribe artifact resolution: inline, by URI (S3 forms, or `file:` on the command line), or located
 * through Transcribe GetMedicalScribeJob when the envelope gives only a job name. Every fetched object is
 * hashed over its exact bytes and compared with the signed sha256 before it is parsed.
 *
 * Transport is behind two small interfaces (`ObjectStore`, `JobLocator`) so this module stays free of AWS
 * clients; `src/ingest/` provides the S3 and Transcribe implementations.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { ScribeError } from '../errors.ts';
import type { ArtifactRef, Envelope } from './envelope.ts';
import type { JsonValue } from './json.ts';
import { canonicalJson } from './signature.ts';

export type ArtifactName = 'transcript' | 'clinicalDocument';

/** A parsed artifact location. */
export type ArtifactLocation =
  | { readonly scheme: 's3'; readonly bucket: string; readonly key: string; readonly region?: string }
  | { readonly scheme: 'file'; readonly path: string };

/** Reads S3 objects. Throws ScribeError ARTIFACT_MISSING (no such object) or ARTIFACT_UNAVAILABLE (try later). */
export interface ObjectStore {
  getObject(loc: { bucket: string; key: string; region?: string }): Promise<Uint8Array>;
}

/** Finds a batch job's output URIs (GetMedicalScribeJob). Throws HEALTHSCRIBE_JOB_NOT_READY until COMPLETED. */
export interface JobLocator {
  locate(jobName: string): Promise<{ transcriptUri: string; clinicalDocumentUri: string }>;
}

export interface ResolveOptions {
  /** The envelope file's directory; enables `file:` URIs (command line only, never from the queue). */
  readonly envelopeDir?: string;
  readonly objectStore?: ObjectStore;
  readonly jobLocator?: JobLocator;
  /**
   * Awaited before each CPU-heavy stage (hashing and parsing a fetched file; in verifyEnvelope, the signature
   * and the HealthScribe checks): the service spreads its stages over turns of the event loop
   * (src/service/cpu-turns.ts). Absent, stages run as soon as they can.
   */
  readonly turn?: () => Promise<void>;
}

/** A resolved artifact and what is recorded about it. */
export interface ResolvedArtifact {
  readonly name: ArtifactName;
  readonly source: 'inline' | 'uri' | 'job';
  readonly uri?: string;
  /** SHA-256 hex of the exact bytes fetched, or of the RFC 8785 form of an inline value. */
  readonly sha256: string;
  /** Whether that hash is covered by the signature (false when located through Transcribe, or inline without sha256). */
  readonly hashSigned: boolean;
  readonly json: unknown;
}

const S3_HTTPS_PATH = /^https:\/\/s3[.-](?:([a-z0-9-]+)\.)?amazonaws\.com(?:\.cn)?\/([^/]+)\/(.+)$/;
const S3_HTTPS_VHOST = /^https:\/\/([^/]+)\.s3[.-](?:([a-z0-9-]+)\.)?amazonaws\.com(?:\.cn)?\/(.+)$/;

function decodeKey(key: string, uri: string): string {
  try {
    return decodeURIComponent(key);
  } catch {
    throw new ScribeError('ARTIFACT_URI_INVALID', 'the artifact URI has a malformed percent-encoding', {
      where: uri,
    });
  }
}

/**
 * An S3 bucket name: letters, digits, dots, hyphens and underscores (AWS's rules, loosened for legacy names and
 * S3-compatible servers): `evil.com@bucket` or `host:port` is no bucket.
 */
const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
/** An RFC 3986 path: unreserved, sub-delims, ':' '@' '/', and percent-encodings — nothing else raw. */
const RFC3986_PATH = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})+$/;

function s3Location(uri: string, bucket: string, key: string, region?: string): ArtifactLocation {
  if (!BUCKET.test(bucket)) {
    throw new ScribeError('ARTIFACT_URI_INVALID', 'the artifact URI does not name a valid S3 bucket', {
      where: uri,
      hint: 'Use s3://bucket/key, https://s3.<region>.amazonaws.com/bucket/key or https://bucket.s3.<region>.amazonaws.com/key.',
    });
  }
  if (uri.startsWith('https:') && /[?#]/.test(key)) {
    throw new ScribeError('ARTIFACT_URI_INVALID', 'an https artifact URI may not carry a query or fragment', {
      where: uri,
      hint: 'Give the object by bucket and key alone (percent-encode a "?" or "#" that is part of the key).',
    });
  }
  return { scheme: 's3', bucket, key: decodeKey(key, uri), ...(region ? { region } : {}) };
}

/** Parses every URI form the spec allows. `file:` is accepted here; callers decide whether it is allowed. */
export function parseArtifactUri(uri: string): ArtifactLocation {
  if (uri.startsWith('s3://')) {
    const rest = uri.slice(5);
    const slash = rest.indexOf('/');
    if (slash <= 0 || slash === rest.length - 1) {
      throw new ScribeError('ARTIFACT_URI_INVALID', 'an s3:// URI needs a bucket and a key', { where: uri });
    }
    return s3Location(uri, rest.slice(0, slash), rest.slice(slash + 1));
  }
  let m = S3_HTTPS_VHOST.exec(uri);
  if (m) return s3Location(uri, m[1]!, m[3]!, m[2]);
  m = S3_HTTPS_PATH.exec(uri);
  if (m) return s3Location(uri, m[2]!, m[3]!, m[1]);
  if (uri.startsWith('file:')) {
    const raw = uri.slice(5);
    if (raw !== '' && !raw.startsWith('//') && !RFC3986_PATH.test(raw)) {
      throw new ScribeError(
        'ARTIFACT_URI_INVALID',
        'a file: URI holds a character RFC 3986 requires percent-encoded (a space, "?", "#", non-ASCII, …)',
        {
          where: uri,
          hint: 'Percent-encode it (a space as %20, "?" as %3F, "#" as %23), like file:my%20notes/transcript.json.',
        },
      );
    }
    if (raw === '' || raw.startsWith('//')) {
      throw new ScribeError(
        'ARTIFACT_URI_INVALID',
        'a file: URI is a path relative to the envelope, like file:transcript.json',
        {
          where: uri,
        },
      );
    }
    return { scheme: 'file', path: decodeKey(raw, uri) };
  }
  throw new ScribeError('ARTIFACT_URI_INVALID', 'unsupported artifact URI form', { where: uri });
}

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function fetchBytes(uri: string, opts: ResolveOptions, where: string): Promise<Uint8Array> {
  const loc = parseArtifactUri(uri);
  if (loc.scheme === 'file') {
    if (opts.envelopeDir === undefined) {
      throw new ScribeError(
        'ARTIFACT_URI_INVALID',
        'file: URIs are accepted only on the command line, not from the queue or HTTP',
        {
          where,
        },
      );
    }
    if (isAbsolute(loc.path)) {
      throw new ScribeError(
        'ARTIFACT_URI_INVALID',
        'a file: URI is a path relative to the envelope file, not an absolute path',
        {
          where,
        },
      );
    }
    const path = resolvePath(opts.envelopeDir, loc.path);
    try {
      return await readFile(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ScribeError('ARTIFACT_MISSING', `cannot read ${path} (${code ?? 'error'})`, { where });
    }
  }
  if (!opts.objectStore) {
    throw new ScribeError('ARTIFACT_UNAVAILABLE', 'no S3 client is configured to fetch this artifact', {
      where,
      hint: 'Configure `s3:` (region, endpoint) for the service, or pass the artifacts inline or as file: URIs on the command line.',
    });
  }
  return opts.objectStore.getObject(loc);
}

function parseArtifactJson(bytes: Uint8Array, name: ArtifactName, where: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new ScribeError('HEALTHSCRIBE_SCHEMA', `the ${name} artifact is not UTF-8 JSON`, { where });
  }
}

async function resolveOne(
  name: ArtifactName,
  ref: ArtifactRef | undefined,
  locatedUri: string | undefined,
  opts: ResolveOptions,
): Promise<ResolvedArtifact> {
  const where = `$.healthscribe.${name}`;
  if (ref && 'inline' in ref) {
    const sha256 = sha256Hex(canonicalJson(ref.inline));
    if (ref.sha256 !== undefined && ref.sha256 !== sha256) {
      throw new ScribeError('ARTIFACT_HASH_MISMATCH', `the inline ${name} does not match its signed sha256`, {
        where,
      });
    }
    return {
      name,
      source: 'inline',
      sha256,
      hashSigned: ref.sha256 !== undefined,
      json: ref.inline as JsonValue,
    };
  }
  const uri = ref ? ref.uri : locatedUri!;
  const bytes = await fetchBytes(uri, opts, `${where}${ref ? '.uri' : ''}`);
  await opts.turn?.();
  const sha256 = sha256Hex(bytes);
  if (ref && ref.sha256 !== sha256) {
    throw new ScribeError(
      'ARTIFACT_HASH_MISMATCH',
      `the ${name} object's SHA-256 differs from the signed one`,
      { where: `${where}.sha256` },
    );
  }
  return {
    name,
    source: ref ? 'uri' : 'job',
    uri,
    sha256,
    hashSigned: ref !== undefined,
    json: parseArtifactJson(bytes, name, where),
  };
}

/** Resolves and integrity-checks both artifacts of a (signature-verified) envelope. */
export async function resolveArtifacts(
  env: Envelope,
  opts: ResolveOptions,
): Promise<{ transcript: ResolvedArtifact; clinicalDocument: ResolvedArtifact }> {
  const hs = env.healthscribe;
  let located: { transcriptUri: string; clinicalDocumentUri: string } | undefined;
  if (!hs.transcript || !hs.clinicalDocument) {
    if (!opts.jobLocator || !hs.jobName) {
      throw new ScribeError(
        'ARTIFACT_UNAVAILABLE',
        'the envelope names only a HealthScribe job and no Transcribe client is configured',
        {
          where: '$.healthscribe.jobName',
          hint: 'Run it in the service with AWS credentials, or give the artifacts in the envelope.',
        },
      );
    }
    located = await opts.jobLocator.locate(hs.jobName);
  }
  const [transcript, clinicalDocument] = await Promise.all([
    resolveOne('transcript', hs.transcript, located?.transcriptUri, opts),
    resolveOne('clinicalDocument', hs.clinicalDocument, located?.clinicalDocumentUri, opts),
  ]);
  return { transcript, clinicalDocument };
}
