/**
 * Golden tests for mappings: every envelope of a folder rendered with a mapping and compared with the checked-in
 * output under `<goldenDir>/<mapping-id>/<envelope-name>.<ext>`. FHIR goldens are stored pretty-printed (the
 * comparison is on that form, so a failure shows a readable line diff); HL7 goldens store one segment per line.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import type { KeySource, VerifiedNote } from '../contract/verify.ts';
import { ScribeError, toScribeError } from '../errors.ts';
import { type Rendering, render } from '../map/engine.ts';
import type { Mapping } from '../map/mapping-file.ts';
import { noteWithPrior } from './notes.ts';

export interface GoldenResult {
  readonly mapping: string;
  readonly case: string;
  readonly golden: string;
  readonly status: 'pass' | 'fail' | 'missing' | 'written' | 'error';
  readonly diff?: string;
  readonly error?: string;
  readonly note?: VerifiedNote;
  readonly rendering?: Rendering;
}

/** The text a golden file holds for a rendering. */
export function goldenText(r: Rendering): string {
  if (r.format === 'fhir') return `${JSON.stringify(r.value, null, 2)}\n`;
  return `${r.body.split('\r').filter(Boolean).join('\n')}\n`;
}

export function goldenExtension(m: Mapping): string {
  return m.format === 'fhir' ? 'json' : 'hl7';
}

export async function envelopeFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw new ScribeError(
      'FILE_UNREADABLE',
      `cannot read the envelope folder (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      { where: dir, hint: 'Give --envelopes a folder of signed envelopes (*.json).' },
    );
  }
  return names
    .filter((f) => f.endsWith('.json') && f !== 'manifest.json')
    .sort()
    .map((f) => join(dir, f));
}

export interface GoldenOptions {
  readonly mappings: readonly Mapping[];
  readonly envelopesDir: string;
  readonly goldenDir: string;
  readonly keys?: KeySource;
  readonly update?: boolean;
  readonly onResult?: (r: GoldenResult) => void;
}

export async function runGolden(opts: GoldenOptions): Promise<GoldenResult[]> {
  const results: GoldenResult[] = [];
  const files = await envelopeFiles(opts.envelopesDir);
  const notes = new Map<string, { note?: VerifiedNote; prior?: VerifiedNote; error?: string }>();
  for (const file of files) {
    try {
      notes.set(file, await noteWithPrior(file, opts.keys));
    } catch (e) {
      notes.set(file, { error: toScribeError(e).message });
    }
  }
  for (const mapping of opts.mappings) {
    const dir = join(opts.goldenDir, mapping.id);
    if (opts.update) await mkdir(dir, { recursive: true });
    for (const file of files) {
      const name = basename(file, '.json');
      const golden = join(dir, `${name}.${goldenExtension(mapping)}`);
      const base = { mapping: mapping.id, case: name, golden };
      const input = notes.get(file)!;
      let result: GoldenResult;
      if (!input.note) result = { ...base, status: 'error', error: input.error! };
      else {
        try {
          const rendering = render(mapping, {
            note: input.note,
            ...(input.prior ? { prior: input.prior } : {}),
          });
          const actual = goldenText(rendering);
          const expected = await readFile(golden, 'utf8').catch(() => undefined);
          const withNote = { ...base, note: input.note, rendering };
          if (opts.update && expected !== actual) {
            await writeFile(golden, actual);
            result = { ...withNote, status: 'written' };
          } else if (expected === undefined) result = { ...withNote, status: 'missing' };
          else if (expected === actual) result = { ...withNote, status: 'pass' };
          else {
            const diff = createTwoFilesPatch(
              `${golden} (golden)`,
              `${golden} (now)`,
              expected,
              actual,
              '',
              '',
              { context: 3 },
            );
            result = { ...withNote, status: 'fail', diff };
          }
        } catch (e) {
          result = { ...base, status: 'error', error: toScribeError(e).message };
        }
      }
      results.push(result);
      opts.onResult?.(result);
    }
  }
  return results;
}
