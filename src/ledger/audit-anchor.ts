/**
 * Anchoring the audit chain's head outside the database (`audit.anchor` in the config), so that deleting the
 * tail of the log — and moving the head back — is detectable: `audit verify` fails when the ledger's chain
 * does not contain the anchored head (see audit-verify.ts).
 *
 * - A file holds JSON lines `{"seq":…,"hash":"…","at":"…"}`, one appended (and fsynced) per anchoring whose
 *   head moved on. Keep it where the database's writers cannot rewrite it (another host, append-only storage).
 * - An S3 object holds the latest anchor as one JSON object; a writer that finds a later one there leaves it
 *   (several workers may anchor the same ledger). Enable versioning / Object Lock on the bucket to keep history.
 *
 * The latest anchor suffices: every record's hash covers all before it, so a chain that contains the latest
 * anchored head contains every earlier one.
 */
import { open, readFile } from 'node:fs/promises';
import { GetObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { AuditAnchorConfig, Config, S3Config } from '../config/index.ts';
import { ScribeError } from '../errors.ts';
import { awsRequestHandler } from '../ingest/aws-http.ts';
import type { Anchor } from './audit-verify.ts';
import type { Queryable } from './db.ts';

export type { Anchor } from './audit-verify.ts';

/** Where anchors are written and read. */
export interface AnchorStore {
  /** For messages: the file path or s3:// URI. */
  readonly location: string;
  /** Records an anchor (file: appends; S3: replaces an older one). */
  write(anchor: Anchor): Promise<void>;
  /** Every anchor held, oldest first (empty when none was written yet). */
  read(): Promise<Anchor[]>;
  close(): void;
}

/** S3 client settings for an S3 anchor (the config's `s3:` block; credentials only in tests). */
export interface AnchorS3Options {
  readonly region?: string;
  readonly endpoint?: string;
  readonly forcePathStyle?: boolean;
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** The store an `--anchor` argument names: `s3://bucket/key`, or a file path. */
export function anchorStoreFor(target: string, s3?: AnchorS3Options): AnchorStore {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(target);
  if (m) return new S3AnchorStore(m[1]!, m[2]!, s3 ?? {});
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    throw new ScribeError('USAGE', 'an anchor is a file path or an s3://bucket/key URI', { where: target });
  }
  return new FileAnchorStore(target);
}

/** The store the config's `audit.anchor` names. */
export function anchorStoreFromConfig(anchor: AuditAnchorConfig, s3?: S3Config): AnchorStore {
  return anchor.kind === 'file'
    ? new FileAnchorStore(anchor.path)
    : new S3AnchorStore(anchor.bucket, anchor.key, s3 ?? {});
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Parses one anchor; `where` names the file and line (or the object) for the error. */
export function parseAnchor(text: string, where: string): Anchor {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ScribeError('AUDIT_ANCHOR_INVALID', 'the anchor is not JSON', { where });
  }
  const a = v as { seq?: unknown; hash?: unknown; at?: unknown };
  if (
    typeof a !== 'object' ||
    a === null ||
    !Number.isSafeInteger(a.seq) ||
    (a.seq as number) < 0 ||
    typeof a.hash !== 'string' ||
    !HEX64.test(a.hash) ||
    typeof a.at !== 'string' ||
    Number.isNaN(Date.parse(a.at))
  ) {
    throw new ScribeError('AUDIT_ANCHOR_INVALID', 'the anchor is not {seq, hash, at}', { where });
  }
  return { seq: a.seq as number, hash: a.hash, at: a.at };
}

export class FileAnchorStore implements AnchorStore {
  readonly location: string;

  constructor(path: string) {
    this.location = path;
  }

  async write(anchor: Anchor): Promise<void> {
    try {
      const fh = await open(this.location, 'a', 0o644);
      try {
        await fh.appendFile(`${JSON.stringify(anchor)}\n`, 'utf8');
        await fh.datasync();
      } finally {
        await fh.close();
      }
    } catch (e) {
      throw new ScribeError(
        'AUDIT_ANCHOR_UNAVAILABLE',
        `cannot append to the anchor file (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
        { where: this.location, cause: e },
      );
    }
  }

  async read(): Promise<Anchor[]> {
    let text: string;
    try {
      text = await readFile(this.location, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ScribeError('AUDIT_ANCHOR_UNAVAILABLE', `cannot read the anchor file (${code ?? 'error'})`, {
        where: this.location,
        cause: e,
      });
    }
    const out: Anchor[] = [];
    const lines = text.split('\n');
    for (const [i, line] of lines.entries()) {
      if (line.trim() === '') continue;
      out.push(parseAnchor(line, `${this.location}:${i + 1}`));
    }
    return out;
  }

  close(): void {}
}

export class S3AnchorStore implements AnchorStore {
  readonly location: string;
  readonly #bucket: string;
  readonly #key: string;
  readonly #client: S3Client;

  constructor(bucket: string, key: string, o: AnchorS3Options) {
    this.#bucket = bucket;
    this.#key = key;
    this.location = `s3://${bucket}/${key}`;
    this.#client = new S3Client({
      ...(o.region ? { region: o.region } : {}),
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      ...(o.forcePathStyle !== undefined ? { forcePathStyle: o.forcePathStyle } : {}),
      ...(o.credentials ? { credentials: o.credentials } : {}),
      requestHandler: awsRequestHandler(),
    });
  }

  async #get(): Promise<Anchor | undefined> {
    let text: string;
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.#key }));
      text = (await out.Body?.transformToString('utf8')) ?? '';
    } catch (e) {
      const name = e instanceof S3ServiceException ? e.name : (e as Error).name;
      const status = e instanceof S3ServiceException ? e.$metadata.httpStatusCode : undefined;
      if (name === 'NoSuchKey' || status === 404) return undefined;
      throw new ScribeError('AUDIT_ANCHOR_UNAVAILABLE', `S3 GetObject failed (${name})`, {
        where: this.location,
        cause: e,
      });
    }
    return parseAnchor(text, this.location);
  }

  async write(anchor: Anchor): Promise<void> {
    const current = await this.#get();
    if (current && current.seq >= anchor.seq) return;
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: this.#key,
          Body: JSON.stringify(anchor),
          ContentType: 'application/json',
        }),
      );
    } catch (e) {
      const name = e instanceof S3ServiceException ? e.name : (e as Error).name;
      throw new ScribeError('AUDIT_ANCHOR_UNAVAILABLE', `S3 PutObject failed (${name})`, {
        where: this.location,
        cause: e,
      });
    }
  }

  async read(): Promise<Anchor[]> {
    const a = await this.#get();
    if (!a) {
      throw new ScribeError('AUDIT_ANCHOR_UNAVAILABLE', 'no anchor object at this location', {
        where: this.location,
      });
    }
    return [a];
  }

  close(): void {
    this.#client.destroy();
  }
}

/**
 * Anchors the current chain head to `store` unless it has not moved since `last` (the previous anchor this
 * process wrote). Returns the head anchored (or `last` when nothing was written). An empty chain is not anchored.
 */
export async function anchorAuditHead(
  db: Queryable,
  store: AnchorStore,
  last?: Anchor,
  now: Date = new Date(),
): Promise<Anchor | undefined> {
  const [head] = await db.query<{ last_seq: number; last_hash: string }>(
    'select last_seq, last_hash from audit_chain_head where singleton',
  );
  if (!head || head.last_seq === 0) return last;
  if (last && last.seq === head.last_seq && last.hash === head.last_hash) return last;
  const anchor: Anchor = { seq: head.last_seq, hash: head.last_hash, at: now.toISOString() };
  await store.write(anchor);
  return anchor;
}

/**
 * The service's periodic anchoring (`audit.anchor`, every `audit.intervalSeconds`), plus one last anchor at
 * `stop()`. A failed round is logged (code only) and tried again next round.
 */
export function startAnchoring(
  ledger: { readonly db: Queryable },
  config: Config,
  log: (event: Record<string, string | number | boolean>) => void,
): { stop(): Promise<void> } {
  const audit = config.audit;
  if (!audit?.anchor) throw new Error('startAnchoring without audit.anchor');
  const store = anchorStoreFromConfig(audit.anchor, config.s3);
  let last: Anchor | undefined;
  let running: Promise<void> = Promise.resolve();
  const round = () => {
    running = running.then(async () => {
      try {
        const before = last;
        last = await anchorAuditHead(ledger.db, store, last);
        if (last && last !== before) log({ event: 'audit.anchored', seq: last.seq });
      } catch (e) {
        log({ event: 'audit.anchor-failed', code: e instanceof ScribeError ? e.code : 'INTERNAL' });
      }
    });
    return running;
  };
  const timer = setInterval(round, audit.intervalSeconds * 1000);
  timer.unref();
  void round();
  return {
    async stop() {
      clearInterval(timer);
      await round();
      store.close();
    },
  };
}
