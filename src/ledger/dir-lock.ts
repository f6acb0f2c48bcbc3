/**
 * An exclusive lock on a PGlite data directory. PGlite 0.5.16 takes none (reference/tooling.md §6: a second
 * `PGlite.create(sameDir)` opens happily, in this process or another, and two writers corrupt the cluster), so
 * the ledger takes its own: a lock file holding `{pid, hostname, startedAt}`, created atomically.
 *
 * A lock left by a dead process (kill -9, power loss) is taken over; a live holder is an error that names the
 * pid and the directory, so the operator knows which process to stop.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ScribeError } from '../errors.ts';

/** The lock file's name inside the data directory (PostgreSQL's own postmaster.pid sits next to it). */
export const LOCK_FILE = 'scribe-bridge.lock';

/** A held lock. `release()` is idempotent. */
export interface DirLock {
  readonly path: string;
  release(): void;
}

interface Holder {
  readonly pid: number;
  readonly hostname: string;
  readonly startedAt: string;
}

/** Locks this process holds, so a second open in the same process is refused although our pid is alive. */
const heldHere = new Set<string>();

/**
 * Takes the lock on `dir` (which must exist). Throws when another live process (or this one) holds it.
 */
export function lockDataDir(dir: string): DirLock {
  const path = join(dir, LOCK_FILE);
  const me: Holder = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() };
  const text = JSON.stringify(me);
  // A few rounds: each lost race (a stale lock vanishing under us) starts over.
  for (let round = 0; round < 5; round++) {
    if (tryCreate(path, text)) {
      heldHere.add(path);
      return { path, release: () => release(path, text) };
    }
    const seen = readLock(path);
    if (seen === undefined) continue; // removed between our create and our read
    const holder = parseHolder(seen);
    if (holder !== undefined && isLive(holder, path)) throw lockedError(dir, holder);
    takeOverStale(path, seen, dir);
  }
  throw lockedError(dir, undefined);
}

/** Creates the lock file with its content in one atomic step: write a private file, then link it in. */
function tryCreate(path: string, text: string): boolean {
  // link(2) fails with EEXIST instead of replacing, and the file appears complete: a reader never sees a
  // half-written lock (which it could not tell from garbage left by a crash).
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    if (errno(e) === 'EEXIST') return false;
    throw new ScribeError('INTERNAL', `cannot create the lock file ${path} (${errno(e) ?? 'error'})`, {
      cause: e,
      hint: 'The ledger directory must be writable by the scribe-bridge process.',
    });
  } finally {
    unlinkSync(tmp);
  }
}

function readLock(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    throw e;
  }
}

function parseHolder(text: string): Holder | undefined {
  try {
    const v = JSON.parse(text) as Partial<Holder>;
    if (typeof v.pid === 'number' && Number.isInteger(v.pid) && typeof v.hostname === 'string') {
      return { pid: v.pid, hostname: v.hostname, startedAt: String(v.startedAt ?? '') };
    }
  } catch {
    // garbage: not written by us (we never leave a partial file), so nobody holds it
  }
  return undefined;
}

function isLive(holder: Holder, path: string): boolean {
  // Another host sharing the directory (a network volume): its pids mean nothing here, so assume it is alive.
  if (holder.hostname !== hostname()) return true;
  // Our own pid: either this process holds it (a second open), or a previous life of a container whose
  // process is pid 1 again after a restart — a stale lock.
  if (holder.pid === process.pid) return heldHere.has(path);
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (e) {
    return errno(e) === 'EPERM'; // exists, owned by another user
  }
}

/**
 * Removes a stale lock without ever removing a fresh one: rename it to a private name (atomic), check it is
 * the stale content we judged, and put it back if a live process replaced it in between.
 */
function takeOverStale(path: string, staleText: string, dir: string): void {
  const aside = `${path}.stale.${process.pid}.${randomBytes(6).toString('hex')}`;
  try {
    renameSync(path, aside);
  } catch (e) {
    if (errno(e) === 'ENOENT') return; // someone else took it over first; retry the create
    throw e;
  }
  const moved = readFileSync(aside, 'utf8');
  if (moved === staleText) {
    unlinkSync(aside);
    return;
  }
  // We moved a lock that a live process created after our read: restore it (unless yet another appeared).
  try {
    linkSync(aside, path);
  } catch {
    // a third process created one meanwhile; its lock stands, ours is gone either way
  }
  unlinkSync(aside);
  throw lockedError(dir, parseHolder(moved));
}

function release(path: string, text: string): void {
  if (!heldHere.delete(path)) return;
  // Only remove the file if it is still ours (an operator may have deleted and another process re-taken it).
  if (readLock(path) === text) unlinkSync(path);
}

function lockedError(dir: string, holder: Holder | undefined): ScribeError {
  const who = holder
    ? `process ${holder.pid}${holder.hostname === hostname() ? '' : ` on host ${holder.hostname}`}`
    : 'another process';
  return new ScribeError('LEDGER_LOCKED', `the ledger directory ${dir} is in use by ${who}`, {
    where: join(dir, LOCK_FILE),
    hint:
      'Only one scribe-bridge process may open an embedded (PGlite) ledger. Stop the other process, or use ' +
      'PostgreSQL to run several workers. If that process is gone, delete the lock file.',
  });
}

function errno(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e
    ? String((e as { code: unknown }).code)
    : undefined;
}
