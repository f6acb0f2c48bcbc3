/**
 * The shape of the configuration file (PRODUCT.md "Configuration"), as zod schemas. Every object is strict:
 * an unknown key is an error, so a typo cannot silently fall back to a default. Defaults that depend only on
 * the key itself live here; defaults that depend on other keys (heartbeat from visibility timeout) and every
 * check that needs the disk, the environment or other parts of the file live in `resolve.ts` and `rules.ts`.
 */
import { z } from 'zod';

/** Tenant and destination ids: the tenant pattern of the envelope spec, also safe in metrics labels. */
export const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Every default of the file, in one place (the README's configuration table is written from it). */
export const DEFAULTS = {
  http: { host: '127.0.0.1', port: 8080 },
  /** One hour for a revision to wait for its predecessor, seconds. */
  holdSeconds: 3600,
  sqs: {
    /** SQS's own default visibility timeout, seconds. */
    visibilityTimeoutSeconds: 30,
    /** Long polling, seconds: short enough for a prompt shutdown, long enough to avoid empty receives. */
    waitTimeSeconds: 5,
    /** The SQS maximum per receive. */
    maxMessages: 10,
  },
  /**
   * 8 attempts: 7 waits with ceilings 1, 2, 4, 8, 16, 32, 64 s (full jitter), so at most about two
   * minutes of retrying before the delivery is failed — raise maxAttempts to ride out longer outages.
   */
  retry: { maxAttempts: 8, initialDelayMs: 1_000, maxDelayMs: 300_000 },
  fhir: {
    write: 'conditional-create',
    references: 'logical',
    concurrency: 4,
    timeoutMs: 30_000,
  },
  /** One connection in order: most MLLP receivers process one message at a time per connection. */
  mllp: { concurrency: 1, ackTimeoutMs: 30_000 },
  file: { concurrency: 4 },
  /** How often the audit chain's head is anchored, seconds (when `audit.anchor` is set). */
  audit: { intervalSeconds: 300 },
  /** How long a graceful stop (SIGTERM) may take, seconds: under Kubernetes' default 30 s grace period. */
  shutdownSeconds: 25,
} as const;

const id = z
  .string()
  .regex(ID_PATTERN, 'must match [a-z0-9][a-z0-9-]{0,62}: lower-case letters, digits and -, at most 63');
const text = z.string().min(1, 'must not be empty');
export const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be the name of an environment variable (letters, digits, _)');
const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}, 'must be an absolute http:// or https:// URL');
const region = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/, 'must be an AWS region such as us-east-1');
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const port = int(1, 65_535);
/** An HL7 HD value for MSH-3..6: components (^, &) are fine, field and repetition delimiters are not. */
const hd = z
  .string()
  .min(1, 'must not be empty')
  .regex(/^[^|~\\\r\n]*$/, 'must not contain |, ~, \\ or a line break');

export const HttpSchema = z.strictObject({
  host: text.default(DEFAULTS.http.host),
  /** 0 lets the OS choose, for tests. */
  port: int(0, 65_535).default(DEFAULTS.http.port),
});

export const ROLES = ['intake', 'operator', 'auditor'] as const;

export const TokenSchema = z.strictObject({
  role: z.enum(ROLES),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be the sha256 of the token as 64 lower-case hex digits'),
  tenants: z.array(id).min(1, 'must name at least one tenant (omit it for all tenants)').optional(),
});

export const AuthSchema = z.strictObject({ tokens: z.array(TokenSchema).default([]) });

export const SqsSchema = z.strictObject({
  queueUrl: httpUrl,
  region,
  endpoint: httpUrl.optional(),
  deadLetterQueueUrl: httpUrl.optional(),
  /** 12 hours is the SQS maximum. */
  visibilityTimeoutSeconds: int(1, 43_200).default(DEFAULTS.sqs.visibilityTimeoutSeconds),
  waitTimeSeconds: int(0, 20).default(DEFAULTS.sqs.waitTimeSeconds),
  maxMessages: int(1, 10).default(DEFAULTS.sqs.maxMessages),
  heartbeatSeconds: int(1, 43_200).optional(),
});

export const IntakeSchema = z.strictObject({
  sqs: SqsSchema.optional(),
  holdSeconds: int(0).default(DEFAULTS.holdSeconds),
});

export const S3Schema = z.strictObject({
  region,
  endpoint: httpUrl.optional(),
  forcePathStyle: z.boolean().default(false),
});

/** `s3://bucket/key` */
const s3Uri = z
  .string()
  .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+$/, 'must be an S3 object URI: s3://<bucket>/<key>');

/** Where the audit chain's head is anchored: one of a file (JSON lines, appended) or an S3 object. */
export const AuditAnchorSchema = z
  .strictObject({ file: text.optional(), s3: s3Uri.optional() })
  .refine((a) => (a.file === undefined) !== (a.s3 === undefined), 'give exactly one of file or s3');

export const AuditSchema = z.strictObject({
  anchor: AuditAnchorSchema.optional(),
  intervalSeconds: int(1, 86_400).default(DEFAULTS.audit.intervalSeconds),
});

export const TenantSchema = z.strictObject({
  id,
  /** A JWKS file (relative to the config file) or an https URL; checked in resolve.ts. */
  reviewKeys: text,
  destinations: z.array(id).min(1, 'must name at least one destination'),
});

export const RetrySchema = z.strictObject({
  maxAttempts: int(1, 1_000).default(DEFAULTS.retry.maxAttempts),
  initialDelayMs: int(0).default(DEFAULTS.retry.initialDelayMs),
  maxDelayMs: int(0).default(DEFAULTS.retry.maxDelayMs),
  /** Optional wall-clock cap from the first attempt, ms. */
  maxElapsedMs: int(1).optional(),
});

export const TlsSchema = z.strictObject({
  ca: text.optional(),
  cert: text.optional(),
  key: text.optional(),
  servername: text.optional(),
});

const scope = text.optional();

export const FhirAuthSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('bearer'), tokenEnv: envName }),
  z.strictObject({
    type: z.literal('client-credentials'),
    tokenUrl: httpUrl,
    clientId: text,
    clientSecretEnv: envName,
    scope,
  }),
  z.strictObject({
    type: z.literal('smart-backend'),
    tokenUrl: httpUrl,
    clientId: text,
    // Exactly one of the two: checked in resolve.ts, where the key is also read and imported.
    privateKeyFile: text.optional(),
    privateKeyEnv: envName.optional(),
    kid: text,
    alg: z.enum(['RS384', 'ES384']),
    scope,
  }),
  z.strictObject({ type: z.literal('mtls') }),
]);

const disposition = z.enum(['delivered', 'rejected', 'retry']);

export const FhirDestinationSchema = z.strictObject({
  id,
  type: z.literal('fhir'),
  baseUrl: httpUrl,
  mapping: text,
  auth: FhirAuthSchema,
  write: z.enum(['conditional-create', 'put']).default(DEFAULTS.fhir.write),
  references: z.enum(['logical', 'resolve']).default(DEFAULTS.fhir.references),
  retry: RetrySchema.prefault({}),
  concurrency: int(1, 1_000).default(DEFAULTS.fhir.concurrency),
  timeoutMs: int(1).default(DEFAULTS.fhir.timeoutMs),
  tls: TlsSchema.optional(),
  renderings: z.array(text).min(1).optional(),
});

export const MllpDestinationSchema = z.strictObject({
  id,
  type: z.literal('mllp'),
  host: text,
  port,
  mapping: text,
  sendingApplication: hd.optional(),
  sendingFacility: hd.optional(),
  receivingApplication: hd.optional(),
  receivingFacility: hd.optional(),
  ackTimeoutMs: int(1).default(DEFAULTS.mllp.ackTimeoutMs),
  tls: TlsSchema.optional(),
  retry: RetrySchema.prefault({}),
  concurrency: int(1, 1_000).default(DEFAULTS.mllp.concurrency),
  // A strict object rather than a record, so an unknown code is reported like any unknown key.
  ackCodes: z
    .strictObject({
      AA: disposition.optional(),
      AE: disposition.optional(),
      AR: disposition.optional(),
      CA: disposition.optional(),
      CE: disposition.optional(),
      CR: disposition.optional(),
    })
    .default({}),
});

export const FileDestinationSchema = z.strictObject({
  id,
  type: z.literal('file'),
  directory: text,
  mapping: text,
  concurrency: int(1, 1_000).default(DEFAULTS.file.concurrency),
  retry: RetrySchema.prefault({}),
});

export const DestinationSchema = z.discriminatedUnion('type', [
  FhirDestinationSchema,
  MllpDestinationSchema,
  FileDestinationSchema,
]);

/** Which hosts the file may name as endpoints (src/config/egress.ts); each entry checked there. */
export const EgressSchema = z.strictObject({
  allowHosts: z.array(text).min(1, 'must list at least one host; leave egress out to allow any host'),
});

/** The whole file. */
export const ConfigFileSchema = z.strictObject({
  /** postgres://…, postgresql://…, pglite://<dir relative to the file> or pglite:///<absolute dir>. */
  store: text,
  http: HttpSchema.prefault({}),
  auth: AuthSchema.prefault({}),
  intake: IntakeSchema.prefault({}),
  s3: S3Schema.optional(),
  audit: AuditSchema.optional(),
  egress: EgressSchema.optional(),
  shutdownSeconds: int(1, 3_600).default(DEFAULTS.shutdownSeconds),
  tenants: z.array(TenantSchema).min(1, 'must list at least one tenant'),
  destinations: z.array(DestinationSchema).min(1, 'must list at least one destination'),
});

export type ConfigFile = z.output<typeof ConfigFileSchema>;
export type TenantEntry = z.output<typeof TenantSchema>;
export type DestinationEntry = z.output<typeof DestinationSchema>;
export type FhirAuthEntry = z.output<typeof FhirAuthSchema>;
export type SqsEntry = z.output<typeof SqsSchema>;
export type TokenEntry = z.output<typeof TokenSchema>;
export type TlsEntry = z.output<typeof TlsSchema>;
export type RetryEntry = z.output<typeof RetrySchema>;

/**
 * zod's message for a missing required key says "expected string, received undefined"; say it plainly.
 * Pass as the `error` option of every parse of these schemas.
 */
export function configErrorMap(issue: { code?: string; input?: unknown }): string | undefined {
  if (issue.input === undefined && issue.code !== 'custom') return 'required, but missing';
  return undefined;
}
