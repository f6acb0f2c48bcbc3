/** Test helpers: config files written into fresh temporary folders. */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { expect } from 'vitest';
import { ScribeError } from '../../errors.ts';
import type { Env } from '../context.ts';
import { loadConfig } from '../load.ts';

/** A real public JWKS from the fixtures, for tenants' reviewKeys. */
export const JWKS = readFileSync(
  new URL('../../../fixtures/keys/riverside-clinic.jwks.json', import.meta.url),
  'utf8',
);

/** The spec's example, with its `<64 hex>` placeholders filled in. */
export const SPEC_EXAMPLE = readFileSync(new URL('./spec-example.yaml', import.meta.url), 'utf8');

/** Every optional key (see the file's header for what it needs beside it). */
export const FULL_EXAMPLE = readFileSync(new URL('./full.yaml', import.meta.url), 'utf8');

/** A new temporary folder holding `files` (relative path → content). */
export function tree(files: Readonly<Record<string, string>>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sb-config-'));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}

/** A small valid config; tests change one thing in it. Its review keys are `keys/riverside-clinic.jwks.json`. */
export const MINIMAL = `store: pglite://./data
tenants:
  - id: riverside-clinic
    reviewKeys: ./keys/riverside-clinic.jwks.json
    destinations: [ehr-fhir]
destinations:
  - id: ehr-fhir
    type: fhir
    baseUrl: http://127.0.0.1:8103/fhir/R4
    mapping: fhir-transaction
    auth: { type: none }
`;

/** Writes `text` as config.yaml (with the review keys beside it) and returns the config file's path. */
export function configFile(text: string, files: Readonly<Record<string, string>> = {}): string {
  const dir = tree({ 'keys/riverside-clinic.jwks.json': JWKS, ...files, 'config.yaml': text });
  return join(dir, 'config.yaml');
}

/** Loads `text` expecting refusal; returns the error. */
export async function refusal(
  text: string,
  env: Env = {},
  files: Readonly<Record<string, string>> = {},
): Promise<ScribeError> {
  const file = configFile(text, files);
  try {
    await loadConfig(file, env);
  } catch (e) {
    expect(e).toBeInstanceOf(ScribeError);
    return e as ScribeError;
  }
  throw new Error('expected the config to be refused');
}

/** The problems of a refused config as `where: message` lines, with the temp folder cut to `config.yaml`. */
export async function problems(
  text: string,
  env: Env = {},
  files: Readonly<Record<string, string>> = {},
): Promise<string[]> {
  const e = await refusal(text, env, files);
  return e.issues.map((i) => `${i.where.replace(/^.*[\\/]config\.yaml/, 'config.yaml')}: ${i.message}`);
}
