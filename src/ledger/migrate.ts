/**
 * The migration runner: plain SQL files `NNN_name.sql` in ./migrations, applied in order, each recorded in
 * `schema_migrations` with its sha256. Running it again applies nothing. Several processes starting at once on
 * one PostgreSQL serialise on a transaction-level advisory lock, so exactly one applies each migration and the
 * others then see it recorded; PGlite is one process with one session, where the lock is simply uncontended.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ScribeError } from '../errors.ts';
import type { Db } from './db.ts';

/** One migration file. */
export interface Migration {
  /** The numeric prefix, e.g. `001`. */
  readonly version: string;
  readonly name: string;
  readonly sql: string;
  readonly sha256: string;
}

/** What `migrate` did. */
export interface MigrateResult {
  readonly applied: readonly string[];
  /** The highest version recorded after the run. */
  readonly current: string | undefined;
}

/** An arbitrary constant: the advisory lock key every scribe-bridge process uses for migrations ("SBMIGRAT"). */
const MIGRATION_LOCK = 0x5342_4d49_4752_4154n;

const FILE = /^(\d{3,})_([a-z0-9_]+)\.sql$/;

/** Reads the shipped migrations (or those of another directory, for tests). */
export function loadMigrations(from: URL | string = new URL('./migrations/', import.meta.url)): Migration[] {
  const dir = typeof from === 'string' ? pathToFileURL(from.endsWith('/') ? from : `${from}/`) : from;
  return readdirSync(dir)
    .map((f) => FILE.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => {
      const sql = readFileSync(new URL(m[0], dir), 'utf8');
      return {
        version: m[1]!,
        name: m[2]!,
        sql,
        sha256: createHash('sha256').update(sql).digest('hex'),
      };
    })
    .sort((a, b) => a.version.localeCompare(b.version));
}

/**
 * Brings the schema up to date in one transaction. Throws when a migration already applied differs from the
 * shipped file (someone edited a released migration: add a new one instead).
 */
export async function migrate(
  db: Db,
  migrations: readonly Migration[] = loadMigrations(),
): Promise<MigrateResult> {
  return db.transaction(async (tx) => {
    // Before anything else, even the create-if-not-exists: two concurrent CREATE TABLE IF NOT EXISTS can both
    // miss the table and one then fails on the catalog's unique index.
    await tx.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.exec(`create table if not exists schema_migrations (
      version    text        primary key,
      name       text        not null,
      sha256     text        not null,
      applied_at timestamptz not null default now()
    )`);
    const rows = await tx.query<{ version: string; sha256: string }>(
      'select version, sha256 from schema_migrations',
    );
    const done = new Map(rows.map((r) => [r.version, r.sha256]));
    const applied: string[] = [];
    for (const m of migrations) {
      const recorded = done.get(m.version);
      if (recorded !== undefined) {
        if (recorded !== m.sha256) {
          throw new ScribeError(
            'LEDGER_SCHEMA',
            `migration ${m.version}_${m.name} differs from the one applied`,
            {
              where: `${m.version}_${m.name}.sql`,
              hint: 'A released migration must never change: revert the file and add a new migration.',
            },
          );
        }
        continue;
      }
      await tx.exec(m.sql);
      await tx.query('insert into schema_migrations (version, name, sha256) values ($1, $2, $3)', [
        m.version,
        m.name,
        m.sha256,
      ]);
      applied.push(m.version);
    }
    const versions = [...done.keys(), ...applied].sort();
    return { applied, current: versions.at(-1) };
  });
}
