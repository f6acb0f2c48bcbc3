/**
 * One small database interface over the two drivers the ledger runs on: PGlite (embedded, `pglite://dir`) and
 * PostgreSQL through `pg` (`postgres://…`). The same SQL runs on both; what differs between the drivers is
 * normalised here so the ledger never sees it:
 *
 * - `bigint` (int8) comes back as a JS `number` from both (PGlite gives numbers, `pg` strings). Ids, counts and
 *   revisions stay far below 2^53; a larger value throws rather than silently rounding.
 * - `timestamptz` comes back as a `Date` from both; `jsonb` as parsed JSON from both.
 * - Parameters: a plain object or array is sent as JSON text (`pg` would turn an array into a PostgreSQL array
 *   literal, PGlite would JSON-encode a string a second time for a jsonb parameter). So write `$1::jsonb` for
 *   JSON and pass the value; a string is always sent as is.
 *
 * Transactions run at READ COMMITTED with explicit locks (see docs in ledger.ts); deadlocks and serialization
 * failures are retried a few times, since every transaction function here touches only the database.
 */

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { ScribeError } from '../errors.ts';
import { type DirLock, lockDataDir } from './dir-lock.ts';

/** Anything that runs one statement and returns its rows. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
}

/** A transaction: statements, and `exec` for a multi-statement script without parameters (migrations). */
export interface Tx extends Queryable {
  exec(sql: string): Promise<void>;
}

/** The ledger's database: statements outside a transaction, transactions, close. */
export interface Db extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** Where it is, without credentials (for messages and logs). */
  readonly location: string;
  /** Runs `fn` in one READ COMMITTED transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** Options for `openLedger`. */
export interface OpenOptions {
  /** PostgreSQL pool size (default 10). Ignored for PGlite, which has one session. */
  readonly poolSize?: number;
  /** Name shown in pg_stat_activity (default `scribe-bridge`). */
  readonly applicationName?: string;
}

const INT8_OID = 20;

/** int8 text → number; refuses values a double cannot hold exactly. */
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) {
    throw new ScribeError('INTERNAL', `a bigint column holds ${text}, beyond 2^53`);
  }
  return n;
}

function toParam(v: unknown): unknown {
  if (v === undefined) return null;
  if (v === null || typeof v !== 'object' || v instanceof Date || ArrayBuffer.isView(v)) {
    return typeof v === 'bigint' ? v.toString() : v;
  }
  return JSON.stringify(v);
}

function toParams(params: readonly unknown[] | undefined): unknown[] {
  return params ? params.map(toParam) : [];
}

/**
 * Opens the store a URL names: `pglite://memory` (tests), `pglite:///absolute/dir` (the embedded default; the
 * directory is created and locked), or `postgres://…` / `postgresql://…`. Does not migrate: see `migrate`.
 */
export async function openLedger(url: string, opts: OpenOptions = {}): Promise<Db> {
  if (url.startsWith('pglite://')) return openPglite(url.slice('pglite://'.length));
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return openPostgres(url, opts);
  throw urlError(url);
}

function urlError(url: string): ScribeError {
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0] ?? 'that value';
  return new ScribeError('CONFIG_INVALID', `the store URL (${scheme}…) is not one scribe-bridge can open`, {
    hint: 'Use pglite://memory, pglite:///absolute/dir, or postgres://user@host:5432/database.',
  });
}

/**
 * PGlite's defaults plus a smaller buffer cache: PostgreSQL's 128 MB shared_buffers lives in PGlite's WebAssembly
 * memory, which never shrinks, and the ledger's working set (recent revisions and deliveries) is far smaller —
 * 16 MB measured ~60–130 MB less peak RSS for the service with the same throughput (BENCHMARKS.md, Service).
 */
export const PGLITE_START_PARAMS: readonly string[] = [
  ...PGlite.defaultStartParams,
  '-c',
  'shared_buffers=16MB',
];

const pgliteOptions = () => ({ parsers: { [INT8_OID]: parseInt8 }, startParams: [...PGLITE_START_PARAMS] });

/** Whether `dir` already holds a PostgreSQL cluster (initdb writes PG_VERSION). */
export function isPgliteCluster(dir: string): boolean {
  return existsSync(join(dir, 'PG_VERSION'));
}

/**
 * Creates and migrates the cluster of a new PGlite data directory in a short-lived child process
 * (src/ledger/pglite-init.ts). WebAssembly memory grows but never shrinks, and creating a cluster and running
 * the migrations on it grows PGlite's to several hundred MB that the service would then keep for as long as it
 * runs: measured with PGlite 0.5, a process that creates and migrates a directory is ~685 MB resident afterwards,
 * one that opens the same directory once it exists ~210 MB. Resolves false when the child failed; the caller
 * then does the work itself, as before (the same result at the larger footprint, never a failed start). The
 * caller holds the directory's lock throughout. A child killed half-way leaves what an interrupted in-process
 * initdb left before.
 */
export function initPgliteInChild(
  dir: string,
  opts: { execPath?: string; timeoutMs?: number } = {},
): Promise<boolean> {
  const script = fileURLToPath(new URL('./pglite-init.ts', import.meta.url));
  return new Promise((done) => {
    execFile(
      opts.execPath ?? process.execPath,
      [script, dir],
      { timeout: opts.timeoutMs ?? 120_000 },
      (err) => done(err === null && isPgliteCluster(dir)),
    );
  });
}

/**
 * Opens a PGlite data directory WITHOUT its lock: only for the init child (pglite-init.ts), which runs while its
 * parent holds the lock. Everything else opens through `openLedger`.
 */
export async function openPgliteUnderParentLock(dir: string): Promise<Db> {
  return pgliteDb(await PGlite.create(dir, pgliteOptions()), `pglite://${dir}`, undefined);
}

async function openPglite(rest: string): Promise<Db> {
  const options = pgliteOptions();
  if (rest === 'memory') return pgliteDb(await PGlite.create(options), 'pglite://memory', undefined);
  if (!isAbsolute(rest)) {
    // Relative paths are resolved by the config loader (relative to the config file), never against the cwd.
    throw urlError(`pglite://${rest}`);
  }
  const dir = resolve(rest);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new ScribeError('LEDGER_UNAVAILABLE', `cannot create the PGlite data directory (${code})`, {
      where: dir,
      hint: 'Name a directory scribe-bridge may create and write in `store: pglite://…`.',
      cause: e,
    });
  }
  const lock = lockDataDir(dir);
  try {
    // A new directory is created and migrated by a child process, so that WebAssembly memory is not kept here.
    if (!isPgliteCluster(dir)) await initPgliteInChild(dir);
    return pgliteDb(await PGlite.create(dir, options), `pglite://${dir}`, lock);
  } catch (e) {
    lock.release();
    throw e;
  }
}

/**
 * PGlite attaches the statement's parameter values to its errors (`params`): whole payloads and envelopes,
 * i.e. PHI, for any log that prints the error object. They are removed; the SQL text and SQLSTATE stay.
 * (A server message may still quote one value, on both drivers: logs carry codes only, by allow-list.)
 */
function withoutParams(e: unknown): unknown {
  if (typeof e === 'object' && e !== null && 'params' in e) Reflect.deleteProperty(e, 'params');
  return e;
}

function pgliteDb(db: PGlite, location: string, lock: DirLock | undefined): Db {
  const run = async <R>(q: Pick<PGlite, 'query'>, sql: string, params?: readonly unknown[]) => {
    try {
      return (await q.query<R>(sql, toParams(params))).rows;
    } catch (e) {
      throw withoutParams(e);
    }
  };
  return {
    kind: 'pglite',
    location,
    query: (sql, params) => run(db, sql, params),
    // PGlite is one session: its transaction() holds a mutex, so concurrent callers queue (no interleaving).
    transaction<T>(fn: (tx: Tx) => Promise<T>) {
      return db.transaction((t) =>
        fn({
          query: (sql, params) => run(t, sql, params),
          async exec(sql: string) {
            await t.exec(sql);
          },
        }),
      );
    },
    async close() {
      try {
        if (!db.closed) await db.close();
      } finally {
        lock?.release();
      }
    },
  };
}

function openPostgres(url: string, opts: OpenOptions): Db {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? 10,
    application_name: opts.applicationName ?? 'scribe-bridge',
    // Per pool, not pg.types.setTypeParser: a global parser would change every other pg user in the process.
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8_OID && format !== 'binary'
          ? parseInt8
          : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client losing its connection emits 'error' on the pool; unhandled, that would kill the process.
  // The next query reports the outage instead.
  pool.on('error', () => {});
  // The same for a client the pool no longer watches (one ending when the server terminates it): never an
  // uncaught exception from its socket.
  pool.on('connect', (client) => client.on('error', () => {}));
  const location = redact(url);
  const run = async <R>(c: pg.Pool | pg.PoolClient, sql: string, params?: readonly unknown[]) => {
    try {
      // Statements with parameters are prepared once per connection (named): the ledger's CTEs cost ~3 ms to
      // plan, more than they take to run. Parameterless ones (BEGIN, COMMIT, migration scripts) stay simple
      // queries, which is also what lets a script hold several statements.
      const res =
        params && params.length > 0
          ? await c.query({ name: statementName(sql), text: sql, values: toParams(params) })
          : await c.query(sql);
      return res.rows as R[];
    } catch (e) {
      throw mapPgError(e, location);
    }
  };
  return {
    kind: 'postgres',
    location,
    query: (sql, params) => run(pool, sql, params),
    async transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
      for (let attempt = 1; ; attempt++) {
        let client: pg.PoolClient;
        try {
          client = await pool.connect();
        } catch (e) {
          throw mapPgError(e, location);
        }
        let broken: unknown;
        try {
          // Explicit, so a server configured with another default isolation cannot change the locking design.
          await run(client, 'begin isolation level read committed');
          const result = await fn({
            query: (sql, params) => run(client, sql, params),
            exec: async (sql) => {
              await run(client, sql);
            },
          });
          await run(client, 'commit');
          return result;
        } catch (e) {
          try {
            await client.query('rollback');
          } catch (rollbackError) {
            broken = rollbackError; // the connection is gone: do not return it to the pool
          }
          if (attempt < 4 && isRetryable(e)) continue;
          throw e;
        } finally {
          client.release(broken instanceof Error ? broken : undefined);
        }
      }
    },
    async close() {
      await pool.end();
    },
  };
}

const statementNames = new Map<string, string>();

/** A stable name per SQL text (the same text gets the same name on every connection). */
function statementName(sql: string): string {
  let n = statementNames.get(sql);
  if (n === undefined) {
    n = `sb_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}`;
    statementNames.set(sql, n);
  }
  return n;
}

/** Deadlock or serialization failure: the transaction did nothing and can simply run again. */
function isRetryable(e: unknown): boolean {
  const code = sqlState(e);
  return code === '40P01' || code === '40001';
}

/** The SQLSTATE of a driver error (also through a ScribeError's cause). */
export function sqlState(e: unknown): string | undefined {
  if (e instanceof ScribeError) return sqlState(e.cause);
  if (typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string') return e.code;
  return undefined;
}

const CONNECTION_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EPIPE',
  'EAI_AGAIN',
]);

/**
 * Connection-level failures become a retryable error (the service reports not-ready and tries again);
 * everything else keeps the driver's error, whose SQLSTATE the ledger inspects.
 */
function mapPgError(e: unknown, location: string): unknown {
  const code = sqlState(e);
  const message = e instanceof Error ? e.message : '';
  // Mistakes in the store URL or the server's setup, found on connecting: said plainly, not as a defect.
  const setup = code ? SETUP_ERRORS[code] : undefined;
  if (setup)
    return new ScribeError('LEDGER_UNAVAILABLE', `${setup.what} (${location}, SQLSTATE ${code})`, {
      hint: setup.hint,
      cause: e,
    });
  const down =
    (code !== undefined &&
      (CONNECTION_ERRNO.has(code) ||
        code.startsWith('08') ||
        code === '57P01' ||
        code === '57P02' ||
        code === '57P03' ||
        code === '53300' ||
        // 55000 is also other states; on connecting it is the database refusing connections (ALLOW_CONNECTIONS false)
        (code === '55000' && /not currently accepting connections/.test(message)))) ||
    /Connection terminated|Client has encountered a connection error/.test(message);
  if (!down) return e;
  return new ScribeError(
    'LEDGER_UNAVAILABLE',
    `the ledger database at ${location} is unreachable (${code ?? 'closed'})`,
    {
      disposition: 'retry',
      hint: 'scribe-bridge retries; check that PostgreSQL is running and reachable.',
      cause: e,
    },
  );
}

const SETUP_ERRORS: Record<string, { what: string; hint: string }> = {
  '3D000': {
    what: 'the PostgreSQL database in the store URL does not exist',
    hint: 'Create it (e.g. `createdb -h <host> -U <user> <database>`) or name an existing one in `store:`.',
  },
  '28000': {
    what: 'PostgreSQL refused this user',
    hint: 'Check the user in `store:` and the server’s pg_hba.conf; a password goes in PGPASSWORD.',
  },
  '28P01': {
    what: 'PostgreSQL refused the password',
    hint: 'Set the right password in PGPASSWORD (never in the store URL).',
  },
};

/** The URL without its password. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://?';
  }
}
