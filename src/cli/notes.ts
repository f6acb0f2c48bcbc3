/** Reading envelopes from files for the command line (where `file:` artifact URIs are allowed). */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type Jwks, loadJwksFile } from '../contract/signature.ts';
import type { KeySource } from '../contract/verify.ts';
import { type VerifiedNote, verifyEnvelope } from '../contract/verify.ts';
import { ScribeError } from '../errors.ts';
import { lifecycleMode } from '../map/engine.ts';

export async function readFileOrFail(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new ScribeError(
      'FILE_UNREADABLE',
      `cannot read the ${what} (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      {
        where: path,
      },
    );
  }
}

/** Verifies an envelope file; without keys the signature is skipped (dry run) and recorded as not verified. */
export async function noteFromFile(path: string, keys: KeySource | undefined): Promise<VerifiedNote> {
  const bytes = await readFileOrFail(path, 'envelope');
  return verifyEnvelope(bytes, { keys: keys ?? 'skip-signature', envelopeDir: dirname(path), source: path });
}

/**
 * `--keys`: a JWKS file (every envelope is checked against it), or a folder of `<tenant>.jwks.json` files
 * (each envelope against its own tenant's keys — the layout `scribe-bridge serve` uses in ./keys).
 */
export async function keysFromOption(path: string | undefined): Promise<KeySource | undefined> {
  if (!path) return undefined;
  let isDir = false;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch {
    throw new ScribeError('FILE_UNREADABLE', 'no such JWKS file or folder', { where: path });
  }
  if (!isDir) return loadJwksFile(path);
  const cache = new Map<string, Promise<Jwks>>();
  return (tenant: string) => {
    let p = cache.get(tenant);
    if (!p) {
      const file = join(path, `${tenant}.jwks.json`);
      p = loadJwksFile(file).catch((e: unknown) => {
        if (e instanceof ScribeError && e.code === 'FILE_UNREADABLE') {
          throw new ScribeError('KEY_UNKNOWN', `no review keys for tenant ${JSON.stringify(tenant)}`, {
            where: file,
            hint: `Put the tenant's public JWKS at ${file}.`,
          });
        }
        throw e;
      });
      cache.set(tenant, p);
    }
    return p;
  };
}

/** An envelope file and, for a retraction, the revision it retracts (`--prior`, or found beside it). */
export async function noteWithPrior(
  path: string,
  keys: KeySource | undefined,
  priorPath?: string,
): Promise<{ note: VerifiedNote; prior?: VerifiedNote }> {
  const note = await noteFromFile(path, keys);
  const prior =
    lifecycleMode(note) === 'retraction' ? await findPrior(note, path, priorPath, keys) : undefined;
  return { note, ...(prior ? { prior } : {}) };
}

/**
 * The revision a retraction retracts: `--prior`, or else an envelope in the same folder with the same tenant and
 * noteId and revision = replaces.
 */
export async function findPrior(
  note: VerifiedNote,
  envelopePath: string,
  priorPath: string | undefined,
  keys: KeySource | undefined,
) {
  if (priorPath) return priorFromFile(priorPath, keys);
  const e = note.envelope;
  const dir = dirname(envelopePath);
  for (const name of (await readdir(dir)).sort()) {
    if (!name.endsWith('.json') || name === basename(envelopePath)) continue;
    let head: { kind?: unknown; tenant?: unknown; noteId?: unknown; revision?: unknown };
    try {
      head = JSON.parse(await readFile(join(dir, name), 'utf8'));
    } catch {
      continue;
    }
    if (
      head.kind === 'signed-note' &&
      head.tenant === e.tenant &&
      head.noteId === e.noteId &&
      head.revision === e.replaces
    ) {
      return priorFromFile(join(dir, name), keys);
    }
  }
  return undefined;
}

/** `noteFromFile` for the revision a retraction retracts: an error says it is about that file, not the retraction. */
async function priorFromFile(path: string, keys: KeySource | undefined): Promise<VerifiedNote> {
  try {
    return await noteFromFile(path, keys);
  } catch (e) {
    if (!(e instanceof ScribeError)) throw e;
    const where = e.where && !e.where.includes(path) ? `${path}: ${e.where}` : (e.where ?? path);
    throw new ScribeError(e.code, `the retracted revision: ${e.detail}`, {
      where,
      hint: e.hint,
      disposition: e.disposition,
      issues: e.issues,
      cause: e,
    });
  }
}
