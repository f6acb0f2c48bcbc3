/**
 * Golden tests for the shipped mappings × every valid fixture (all seven templates, torture text, a 72-minute
 * encounter, streaming, an amendment and a retraction), and validation of every output: FHIR in full against
 * base R4 + US Core 8 DocumentReference / Provenance + our extension profiles with 0 errors; MDM against the
 * v2.5.1 structure and field lengths. The MDM retraction as T11 is golden-tested where a mapping opts in.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGolden } from '../src/cli/golden.ts';
import { keysFromOption } from '../src/cli/notes.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { testConformance } from './support/profiles.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;

describe.each(['us-core-docref', 'fhir-transaction', 'fhir-document', 'mdm'])('%s', (id) => {
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

describe('mdm with settings.retractionEvent: T11 (opted in)', () => {
  it('renders the retraction as MDM^T11 for the retracted TXA-12, golden', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-t11-'));
    const shipped = new MappingRegistry().get('mdm');
    const text = readFileSync(shipped.file, 'utf8')
      .replace('id: mdm\n', 'id: mdm-t11\n')
      .replace('retractionEvent: T03', 'retractionEvent: T11')
      .replace(
        'imports: [common/fhir-common.yaml]',
        `imports: [${join(dirname(shipped.file), 'common/fhir-common.yaml')}]`,
      );
    writeFileSync(join(dir, 'mdm-t11.yaml'), text);
    const mapping = new MappingRegistry().get(join(dir, 'mdm-t11.yaml'));
    const envelopes = mkdtempSync(join(tmpdir(), 'sb-t11-env-'));
    for (const f of ['hp-typical.r3-entered-in-error.json']) {
      const src = readFileSync(`${fixtures}envelopes/valid/${f}`, 'utf8').replaceAll(
        'file:../../healthscribe/',
        `file:${relative(envelopes, `${fixtures}healthscribe`)}/`,
      );
      writeFileSync(join(envelopes, f), src);
    }
    // SB_UPDATE_GOLDEN=1 accepts new output, as `scribe-bridge mappings test --update` does for shipped mappings.
    const update = process.env['SB_UPDATE_GOLDEN'] === '1';
    const results = await runGolden({
      mappings: [mapping],
      envelopesDir: envelopes,
      goldenDir: `${fixtures}golden`,
      update,
    });
    const retraction = results.find((r) => r.case === 'hp-typical.r3-entered-in-error')!;
    expect(retraction.status, retraction.diff ?? retraction.error ?? '').toBe(update ? 'written' : 'pass');
    expect(retraction.rendering!.body).toMatch(/^MSH\|[^\r]*\|MDM\^T11\^MDM_T01\|/);
    expect(retraction.rendering!.body).toMatch(
      /\rTXA\|1\|HP\|[^\r]*\|enc-4471-hp-r2\^riverside-clinic\|[^\r]*\|LA\|\|CA\|/,
    );
    (await testConformance()).check(retraction.rendering!);
  });
});
