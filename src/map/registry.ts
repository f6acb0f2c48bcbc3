/**
 * Finds mappings by shipped id or by path, and keeps each compiled once (recompiled when its file or one of its
 * imports changes, which is what mapping hot reload rests on: src/service/active-mappings.ts).
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScribeError } from '../errors.ts';
import { loadMappingFile, type Mapping } from './mapping-file.ts';

/** The folder of the shipped mapping files. */
export const SHIPPED_MAPPINGS_DIR = fileURLToPath(new URL('../../mappings/', import.meta.url));

/** The mapping ids scribe-bridge ships (each `mappings/<id>.yaml`). */
export const SHIPPED_MAPPING_IDS = ['us-core-docref', 'fhir-transaction', 'fhir-document', 'mdm'] as const;

/** A shipped id (`fhir-transaction`) or a path to a mapping file, relative to `baseDir`. */
export function resolveMappingRef(ref: string, baseDir = process.cwd()): string {
  if (/^[a-z0-9][a-z0-9-]{0,62}$/.test(ref)) {
    const shipped = resolve(SHIPPED_MAPPINGS_DIR, `${ref}.yaml`);
    if (existsSync(shipped)) return shipped;
  }
  const path = resolve(baseDir, ref);
  if (existsSync(path) && statSync(path).isFile()) return path;
  throw new ScribeError(
    'MAPPING_NOT_FOUND',
    `no mapping ${JSON.stringify(ref)}: not a shipped id and no such file`,
    {
      where: path,
    },
  );
}

interface Entry {
  /** Modification time of each source file (the mapping file and its imports) when it was compiled. */
  readonly mtimes: ReadonlyMap<string, number>;
  readonly mapping: Mapping;
}

/** Modification time of a file, or -1 when it cannot be read (deleted, renamed). */
export function mtimeOf(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** Compiled mappings by file; `get` recompiles a mapping when its file or one of its imports changed. */
export class MappingRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #baseDir: string;

  constructor(baseDir = process.cwd()) {
    this.#baseDir = baseDir;
  }

  get(ref: string): Mapping {
    const file = resolveMappingRef(ref, this.#baseDir);
    const cached = this.#entries.get(file);
    if (cached && [...cached.mtimes].every(([f, t]) => mtimeOf(f) === t)) return cached.mapping;
    // Times are read before the files, so a change made while compiling is seen at the next `get`.
    const before = new Map([[file, mtimeOf(file)]]);
    for (const f of cached?.mapping.sources ?? []) before.set(f, mtimeOf(f));
    const mapping = loadMappingFile(file);
    const mtimes = new Map<string, number>();
    for (const f of mapping.sources) mtimes.set(f, before.get(f) ?? mtimeOf(f));
    this.#entries.set(file, { mtimes, mapping });
    return mapping;
  }
}
