/**
 * Golden tests for the shipped FHIR mappings × every valid fixture (all seven templates, torture text, a
 * 72-minute encounter, streaming, an amendment and a retraction), and full validation of every output:
 * base R4 + US Core 8 DocumentReference / Provenance + our extension profiles, with 0 errors.
 */
import { describe, expect, it } from 'vitest';
import { runGolden } from '../src/cli/golden.ts';
import { keysFromOption } from '../src/cli/notes.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { testConformance } from './support/profiles.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;

describe.each(['us-core-docref', 'fhir-transaction', 'fhir-document'])('%s', (id) => {
  it('matches its golden files for every valid fixture, and every output validates with 0 errors', async () => {
    const conformance = await testConformance();
    const mapping = new MappingRegistry().get(id);
    const results = await runGolden({
      mappings: [mapping],
      envelopesDir: `${fixtures}envelopes/valid`,
      goldenDir: `${fixtures}golden`,
      keys: (await keysFromOption(`${fixtures}keys`))!,
    });
    expect(results.length).toBe(12);
    for (const r of results) {
      expect(r.status, `${r.case}: ${r.error ?? r.diff ?? ''}`).toBe('pass');
      conformance.check(r.rendering!);
      const issues = conformance.validateFull(r.rendering!);
      expect(
        issues.filter((i) => i.severity === 'error'),
        r.case,
      ).toEqual([]);
    }
  }, 180_000);
});
