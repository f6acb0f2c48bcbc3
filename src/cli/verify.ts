import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { SingleBar } from 'cli-progress';
import { countEditClasses } from '../contract/edits.ts';
import { type KeySource, type VerifiedNote, verifyEnvelope } from '../contract/verify.ts';
import { ScribeError, toScribeError } from '../errors.ts';
import type { Io } from './io.ts';
import { keysFromOption } from './notes.ts';

/** One line, no PHI: ids, counts and the key — never names, identifier values or text. */
export function summarize(v: VerifiedNote): string {
  const e = v.envelope;
  const c = countEditClasses(v.sentences);
  const removed = v.removedDraftSentences.length;
  return (
    `${e.tenant}/${e.noteId} r${e.revision} ${e.status} ${e.template}: ${v.sentences.length} sentence(s) ` +
    `(${c['ai-verbatim']} ai-verbatim, ${c['clinician-edited']} clinician-edited, ${c['clinician-added']} clinician-added), ` +
    `${removed} draft sentence(s) removed; signed by ${v.signature.kid} (${v.signature.alg})` +
    (v.unresolvedDraftEvidence > 0
      ? `; warning: ${v.unresolvedDraftEvidence} draft evidence link(s) to segments the transcript lacks (not delivered)`
      : '')
  );
}

function jsonResult(file: string, v: VerifiedNote | undefined, err: ScribeError | undefined): string {
  if (err)
    return JSON.stringify({
      file,
      valid: false,
      code: err.code,
      message: err.message,
      where: err.where ?? null,
    });
  const e = v!.envelope;
  return JSON.stringify({
    file,
    valid: true,
    tenant: e.tenant,
    noteId: e.noteId,
    revision: e.revision,
    status: e.status,
    template: e.template,
    sentences: v!.sentences.length,
    editClasses: countEditClasses(v!.sentences),
    removedDraftSentences: v!.removedDraftSentences.length,
    unresolvedDraftEvidence: v!.unresolvedDraftEvidence,
    signature: { kid: v!.signature.kid, alg: v!.signature.alg, thumbprint: v!.signature.thumbprint },
    artifacts: Object.fromEntries(
      Object.values(v!.artifacts).map((a) => [
        a.name,
        { source: a.source, sha256: a.sha256, hashSigned: a.hashSigned },
      ]),
    ),
  });
}

async function listJson(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((d) => d.isFile() && d.name.endsWith('.json'))
    .map((d) => join(d.parentPath, d.name))
    .sort();
}

async function verifyFile(file: string, keys: KeySource) {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new ScribeError(
      'FILE_UNREADABLE',
      `cannot read the envelope (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      { where: file },
    );
  }
  return verifyEnvelope(bytes, { keys, envelopeDir: dirname(file), source: file });
}

export async function verifyCommand(
  path: string,
  opts: { keys: string; json?: boolean },
  io: Io,
): Promise<number> {
  const keys = (await keysFromOption(opts.keys))!;
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch {
    throw new ScribeError('FILE_UNREADABLE', 'no such file or directory', { where: path });
  }
  if (!info.isDirectory()) {
    try {
      const v = await verifyFile(path, keys);
      io.out(opts.json ? `${jsonResult(path, v, undefined)}\n` : `OK ${summarize(v)}\n`);
      return 0;
    } catch (e) {
      const err = toScribeError(e);
      if (opts.json) io.out(`${jsonResult(path, undefined, err)}\n`);
      else io.err(`error ${err.message}\n`);
      return err.code === 'INTERNAL' ? 70 : 1;
    }
  }

  const files = await listJson(path);
  const bar = io.interactive
    ? new SingleBar({
        stream: io.progressStream,
        format: 'verifying [{bar}] {value}/{total} {eta_formatted}',
        hideCursor: true,
      })
    : undefined;
  bar?.start(files.length, 0);
  let lastProgress = Date.now();
  const failures = new Map<string, number>();
  let valid = 0;
  for (const [i, file] of files.entries()) {
    const rel = relative(path, file);
    try {
      const v = await verifyFile(file, keys);
      valid++;
      if (opts.json) io.out(`${jsonResult(rel, v, undefined)}\n`);
    } catch (e) {
      const err = toScribeError(e);
      failures.set(err.code, (failures.get(err.code) ?? 0) + 1);
      if (opts.json) io.out(`${jsonResult(rel, undefined, err)}\n`);
      else {
        bar?.stop();
        io.err(`FAIL ${rel}: ${err.message}\n`);
        bar?.start(files.length, i);
      }
    }
    bar?.update(i + 1);
    if (!bar && Date.now() - lastProgress > 2000) {
      io.err(`verified ${i + 1}/${files.length}\n`);
      lastProgress = Date.now();
    }
  }
  bar?.stop();
  const invalid = files.length - valid;
  const byCode = [...failures].map(([c, n]) => `${c}×${n}`).join(', ');
  io.err(
    `checked ${files.length} envelope(s): ${valid} valid, ${invalid} invalid${byCode ? ` (${byCode})` : ''}\n`,
  );
  return invalid === 0 ? 0 : 1;
}
