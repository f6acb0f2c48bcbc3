/**
 * Turning the parsed parts of the file (other than destinations, see `destinations.ts`) into their
 * normalised form: store URL, SQS settings with derived defaults, tenants' review keys, tokens from the
 * environment. Each adds its problems to the context and returns undefined when its part is unusable.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { PathSegment } from '../contract/json.ts';
import { parseJwksText } from '../contract/signature.ts';
import { ScribeError } from '../errors.ts';
import { type CheckContext, checkedPath, type Env, part, record } from './context.ts';
import { AuditSchema, SqsSchema, TenantSchema } from './schema.ts';
import type {
  AuditConfig,
  ReviewKeysConfig,
  Role,
  SqsConfig,
  StoreConfig,
  TenantConfig,
  TokenConfig,
} from './types.ts';

const STORE_FORMS =
  'postgres://…, postgresql://…, pglite://<dir relative to this file> or pglite:///<absolute dir>';

/** SQS names FIFO queues `<name>.fifo`, and a queue URL ends with the queue's name. */
export function isFifoQueue(queueUrl: string): boolean {
  return /\.fifo\/?$/.test(queueUrl);
}

/** `store:` → PostgreSQL URL or PGlite directory. */
export function resolveStore(store: string, ctx: CheckContext): StoreConfig | undefined {
  const at = ['store'];
  if (/^postgres(ql)?:\/\//i.test(store)) {
    let url: URL;
    try {
      url = new URL(store);
    } catch {
      ctx.problems.at(at, `not a valid PostgreSQL URL; expected ${STORE_FORMS}`);
      return undefined;
    }
    if (url.password !== '') {
      // The config file is not a secret store; libpq's variable is what node-postgres reads anyway.
      ctx.problems.at(at, 'the URL must not carry a password: set it in the environment as PGPASSWORD');
      return undefined;
    }
    return { kind: 'postgres', url: store };
  }
  const m = /^pglite:\/\/(.*)$/i.exec(store);
  if (m) {
    const dir = m[1]!;
    if (dir === '') {
      ctx.problems.at(at, `pglite:// needs a directory; expected ${STORE_FORMS}`);
      return undefined;
    }
    // The directory is created on first start; it only must not be a file.
    const abs = checkedPath(dir, at, 'directory', ctx, true);
    return abs === undefined ? undefined : { kind: 'pglite', dir: abs };
  }
  ctx.problems.at(at, `unknown store; expected ${STORE_FORMS}`);
  return undefined;
}

/**
 * `intake.sqs` (raw) with its derived default and its cross-field rules, which run on whichever of their
 * keys are right even when another key of the block is wrong.
 */
export function resolveSqs(raw: unknown, ctx: CheckContext): SqsConfig | undefined {
  const at = ['intake', 'sqs'];
  const r = record(raw);
  const { shape } = SqsSchema;
  const visibility = part(shape.visibilityTimeoutSeconds, r['visibilityTimeoutSeconds']);
  const heartbeatGiven = part(shape.heartbeatSeconds, r['heartbeatSeconds']);
  // A third of the visibility timeout leaves two heartbeats' slack before the message reappears.
  const heartbeat =
    heartbeatGiven ?? (visibility === undefined ? undefined : Math.max(1, Math.floor(visibility / 3)));
  let ok = true;
  if (visibility !== undefined && heartbeat !== undefined && heartbeat >= visibility) {
    ok = false;
    ctx.problems.at(
      [...at, heartbeatGiven === undefined ? 'visibilityTimeoutSeconds' : 'heartbeatSeconds'],
      `heartbeatSeconds (${heartbeat}) must be shorter than visibilityTimeoutSeconds (${visibility}), or a message in progress becomes visible to other workers before it is extended`,
    );
  }
  const queueUrl = part(shape.queueUrl, r['queueUrl']);
  const dlqUrl = part(shape.deadLetterQueueUrl, r['deadLetterQueueUrl']);
  if (queueUrl !== undefined && dlqUrl === queueUrl) {
    ok = false;
    ctx.problems.at(
      [...at, 'deadLetterQueueUrl'],
      'the dead-letter queue must differ from queueUrl, or poison messages would be received again',
    );
  } else if (
    queueUrl !== undefined &&
    dlqUrl !== undefined &&
    isFifoQueue(queueUrl) !== isFifoQueue(dlqUrl)
  ) {
    // SQS's own rule for redrive, and a FIFO message needs a message group to be sent at all.
    ok = false;
    ctx.problems.at(
      [...at, 'deadLetterQueueUrl'],
      isFifoQueue(queueUrl)
        ? 'the queue is a FIFO queue (.fifo), so its dead-letter queue must be one too'
        : 'the queue is a standard queue, so its dead-letter queue must be one too (not .fifo)',
    );
  }
  const sqs = part(SqsSchema, raw);
  if (!ok || !sqs || heartbeat === undefined) return undefined;
  return {
    queueUrl: sqs.queueUrl,
    region: sqs.region,
    ...(sqs.endpoint !== undefined ? { endpoint: sqs.endpoint } : {}),
    ...(sqs.deadLetterQueueUrl !== undefined ? { deadLetterQueueUrl: sqs.deadLetterQueueUrl } : {}),
    visibilityTimeoutSeconds: sqs.visibilityTimeoutSeconds,
    waitTimeSeconds: sqs.waitTimeSeconds,
    maxMessages: sqs.maxMessages,
    heartbeatSeconds: heartbeat,
  };
}

function reviewKeys(
  keys: string,
  at: readonly PathSegment[],
  ctx: CheckContext,
): ReviewKeysConfig | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(keys)) {
    let url: URL | undefined;
    try {
      url = new URL(keys);
    } catch {
      url = undefined;
    }
    if (url?.protocol !== 'https:' || url.hostname === '') {
      // Keys fetched over plain http could be replaced on the way, and with them every signature check.
      ctx.problems.at(at, 'a JWKS URL must be https://');
      return undefined;
    }
    return { kind: 'url', url: keys };
  }
  const path = checkedPath(keys, at, 'file', ctx);
  if (path === undefined) return undefined;
  // Read now, so a broken file stops the start instead of failing every note of the tenant later.
  try {
    parseJwksText(readFileSync(path, 'utf8'), path, 'the JWKS file');
  } catch (e) {
    if (!(e instanceof ScribeError)) throw e;
    ctx.problems.at(at, e.detail);
    return undefined;
  }
  return { kind: 'file', path };
}

/** A tenant (raw) with its review keys located; the keys are checked even when another key is wrong. */
export function resolveTenant(raw: unknown, index: number, ctx: CheckContext): TenantConfig | undefined {
  const keysText = part(TenantSchema.shape.reviewKeys, record(raw)['reviewKeys']);
  const keys =
    keysText === undefined ? undefined : reviewKeys(keysText, ['tenants', index, 'reviewKeys'], ctx);
  const t = part(TenantSchema, raw);
  return t && keys ? { id: t.id, reviewKeys: keys, destinations: t.destinations } : undefined;
}

/** The environment variable holding the raw bearer token of each role. */
export const TOKEN_ENV_VARS: Readonly<Record<Role, string>> = {
  intake: 'SCRIBE_BRIDGE_TOKEN_INTAKE',
  operator: 'SCRIBE_BRIDGE_TOKEN_OPERATOR',
  auditor: 'SCRIBE_BRIDGE_TOKEN_AUDITOR',
};

/** sha256 hex of a token's UTF-8 bytes: the only form in which a token is kept. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Tokens given by SCRIBE_BRIDGE_TOKEN_* (unset or empty variables are skipped); valid for every tenant. */
export function tokensFromEnv(env: Env): TokenConfig[] {
  const out: TokenConfig[] = [];
  for (const [role, name] of Object.entries(TOKEN_ENV_VARS) as Array<[Role, string]>) {
    const value = env[name];
    if (value !== undefined && value !== '') out.push({ role, sha256: hashToken(value), source: 'env' });
  }
  return out;
}

/**
 * `audit:` (raw): an anchor file's folder must exist (the file is created on the first anchor); an S3 anchor
 * needs the top-level `s3:` block for its region and endpoint.
 */
export function resolveAudit(raw: unknown, hasS3: boolean, ctx: CheckContext): AuditConfig | undefined {
  const audit = part(AuditSchema, raw);
  if (!audit) return undefined;
  const a = audit.anchor;
  if (a?.file !== undefined) {
    const path = checkedPath(a.file, ['audit', 'anchor', 'file'], 'file', ctx, true);
    if (path === undefined) return undefined;
    const dir = checkedPath(dirname(path), ['audit', 'anchor', 'file'], 'directory', ctx);
    if (dir === undefined) return undefined;
    return { anchor: { kind: 'file', path }, intervalSeconds: audit.intervalSeconds };
  }
  if (a?.s3 !== undefined) {
    if (!hasS3) {
      ctx.problems.at(
        ['audit', 'anchor', 's3'],
        'an S3 anchor needs the top-level s3: block (region, and endpoint for S3-compatible servers)',
      );
      return undefined;
    }
    const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(a.s3)!;
    return { anchor: { kind: 's3', bucket: m[1]!, key: m[2]! }, intervalSeconds: audit.intervalSeconds };
  }
  return { intervalSeconds: audit.intervalSeconds };
}
