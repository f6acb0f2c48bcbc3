import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Bundle, StructureDefinition } from '@medplum/fhirtypes';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BASE_BUNDLES, compactCacheFile, loadCompactBaseR4, medplumDataDir } from './compact-r4.ts';

const definitions = (b: Bundle) =>
  (b.entry ?? [])
    .map((e) => e.resource)
    .filter((r): r is StructureDefinition => r?.resourceType === 'StructureDefinition');

describe('compact base R4 definitions (cached on disk, made by a child process)', () => {
  let dir: string;
  const saved = process.env['SCRIBE_BRIDGE_CACHE_DIR'];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sb-compact-r4-'));
    process.env['SCRIBE_BRIDGE_CACHE_DIR'] = dir;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env['SCRIBE_BRIDGE_CACHE_DIR'];
    else process.env['SCRIBE_BRIDGE_CACHE_DIR'] = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every StructureDefinition and every snapshot element with what validation reads, and none of the prose', () => {
    const bundles = loadCompactBaseR4();
    expect(bundles).toHaveLength(BASE_BUNDLES.length);
    const file = compactCacheFile(dir);
    let sourceBytes = 0;
    BASE_BUNDLES.forEach((f, i) => {
      const path = join(medplumDataDir(), f);
      sourceBytes += statSync(path).size;
      const full = definitions(JSON.parse(readFileSync(path, 'utf8')) as Bundle);
      const compact = definitions(bundles![i]!);
      expect(compact.map((d) => d.url)).toEqual(full.map((d) => d.url));
      full.forEach((d, j) => {
        const c = compact[j]!;
        expect(c.type).toBe(d.type);
        expect(c.kind).toBe(d.kind);
        expect(c.baseDefinition).toBe(d.baseDefinition);
        expect(c.text).toBeUndefined();
        expect(c.differential).toBeUndefined();
        const fe = d.snapshot?.element ?? [];
        const ce = c.snapshot?.element ?? [];
        expect(ce).toHaveLength(fe.length);
        fe.forEach((e, k) => {
          const x = ce[k]!;
          // What Medplum's parser and the typed walk use is untouched.
          expect(x.path).toBe(e.path);
          expect(x.id).toBe(e.id);
          expect([x.min, x.max]).toEqual([e.min, e.max]);
          expect(x.type).toEqual(e.type);
          expect(x.contentReference).toBe(e.contentReference);
          expect(x.slicing).toEqual(e.slicing);
          expect(x.binding?.strength).toBe(e.binding?.strength);
          expect(x.binding?.valueSet).toBe(e.binding?.valueSet);
          expect(x.constraint?.map((k2) => [k2.key, k2.severity, k2.expression])).toEqual(
            e.constraint?.map((k2) => [k2.key, k2.severity, k2.expression]),
          );
          expect(x.definition).toBeUndefined();
          expect(x.comment).toBeUndefined();
          expect(x.mapping).toBeUndefined();
        });
      });
    });
    // A fifth of the bytes, or less.
    expect(statSync(file).size).toBeLessThan(sourceBytes / 5);
  }, 60_000);

  it('is made once and then read from the cache, made again when damaged, and undefined when it cannot be written (the caller then reads the full bundles)', () => {
    expect(loadCompactBaseR4()).toBeDefined();
    const file = compactCacheFile(dir);
    const made = statSync(file).mtimeMs;
    expect(loadCompactBaseR4()).toBeDefined();
    expect(statSync(file).mtimeMs).toBe(made);

    writeFileSync(file, '{"format": 1, "bundles": [');
    expect(loadCompactBaseR4()).toHaveLength(BASE_BUNDLES.length);
    expect(statSync(file).mtimeMs).toBeGreaterThan(made);

    process.env['SCRIBE_BRIDGE_CACHE_DIR'] = join(file, 'not-a-directory');
    expect(loadCompactBaseR4()).toBeUndefined();
  }, 60_000);
});
