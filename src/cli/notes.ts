/** Reading envelopes from files for the command line (where `file:` artifact URIs are allowed). */
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type Jwks, loadJwksFile } from '../contract/signature.ts';
import { type VerifiedNote, verifyEnvelope } from '../contract/verify.ts';
import { ScribeError } from '../errors.ts';

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
export async function noteFromFile(path: string, keys: Jwks | undefined): Promise<VerifiedNote> {
  const bytes = await readFileOrFail(path, 'envelope');
  return verifyEnvelope(bytes, { keys: keys ?? 'skip-signature', envelopeDir: dirname(path), source: path });
}

export async function keysFromOption(path: string | undefined): Promise<Jwks | undefined> {
  return path ? loadJwksFile(path) : undefined;
}

/**
 * The revision a retraction retracts: `--prior`, or else an envelope in the same folder with the same tenant and
 * noteId and revision = replaces.
 */
export async function findPrior(
  note: VerifiedNote,
  envelopePath: string,
  priorPath: string | undefined,
  keys: Jwks | undefined,
) {
  if (priorPath) return noteFromFile(priorPath, keys);
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
      return noteFromFile(join(dir, name), keys);
    }
  }
  return undefined;
}
