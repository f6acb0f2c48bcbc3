/**
 * Finds mappings by shipped id or by path, and keeps each compiled once (recompiled when its file changes,
 * which is what mapping hot reload rests on).
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
  readonly mtimeMs: number;
  readonly mapping: Mapping;
}

/** Compiled mappings by file; `get` recompiles a file whose modification time changed. */
export class MappingRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #baseDir: string;

  constructor(baseDir = process.cwd()) {
    this.#baseDir = baseDir;
  }

  get(ref: string): Mapping {
    const file = resolveMappingRef(ref, this.#baseDir);
    const mtimeMs = statSync(file).mtimeMs;
    const cached = this.#entries.get(file);
    if (cached && cached.mtimeMs === mtimeMs) return cached.mapping;
    const mapping = loadMappingFile(file);
    this.#entries.set(file, { mtimeMs, mapping });
    return mapping;
  }
}
