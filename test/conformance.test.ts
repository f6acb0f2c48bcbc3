/**
 * The conformance gate: each shipped mapping version is proven over every probe note; a mapping that writes
 * something non-conformant is refused with the validator's message; and the per-note check never lets through
 * what full validation refuses. The last is a property over random corruptions of the leaves that vary from
 * note to note (a leaf whose value or presence differs between the renderings of different probe notes);
 * leaves a template writes as constants are covered by the proof.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ScribeError } from '../src/errors.ts';
import { type Rendering, render } from '../src/map/engine.ts';
import { loadMappingFile } from '../src/map/mapping-file.ts';
import { probeNotes } from '../src/map/probes.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { testConformance } from './support/profiles.ts';
import { runs } from './support/runs.ts';

describe('conformance gate', () => {
  it.each(['us-core-docref', 'fhir-transaction', 'fhir-document'])(
    'proves %s over every probe note',
    async (id) => {
      const c = await testConformance();
      const report = await c.prove(new MappingRegistry().get(id));
      expect(report.probes).toBeGreaterThanOrEqual(10);
      expect(report.warnings.filter((w) => w.severity === 'error')).toEqual([]);
    },
    120_000,
  );

  it('refuses a mapping that writes a non-conformant value, with the validator message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-conf-'));
    const shipped = new MappingRegistry().get('us-core-docref');
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      `id: bad-docref\nversion: 1.0.0\ndescription: writes the note id where a date belongs\nformat: fhir\nimports: [${shipped.file.replace('us-core-docref.yaml', 'common/fhir-common.yaml')}]\noutput:\n  new:\n    resourceType: DocumentReference\n    status: current\n    type: { $include: noteType }\n    category: [{ coding: [{ system: "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", code: clinical-note }] }]\n    subject: { $include: patientRef }\n    date: "{{ %note.noteId }}"\n    content: [{ attachment: { contentType: "text/plain", data: "aGk=" } }]\n`,
    );
    const c = await testConformance();
    const bad = loadMappingFile(file);
    const err = await c.prove(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScribeError);
    expect((err as ScribeError).code).toBe('OUTPUT_INVALID');
    expect((err as ScribeError).message).toMatch(/instant|date/i);
    const probe = (await probeNotes())[0]!;
    expect(() => c.check(render(bad, { note: probe.note }))).toThrow(/not a valid instant/);
  }, 60_000);

  it('refuses at proof what only the per-note check sees (a Resource.id Medplum leaves unchecked)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-conf-'));
    const file = join(dir, 'bad-id.yaml');
    writeFileSync(
      file,
      'id: bad-id\nversion: 1.0.0\ndescription: a Device whose id is not an id\nformat: fhir\noutput:\n  new:\n    resourceType: Device\n    id: "Device id with spaces & umlauts"\n',
    );
    const c = await testConformance();
    const err = await c.prove(loadMappingFile(file)).catch((e: unknown) => e);
    expect((err as ScribeError).code).toBe('OUTPUT_INVALID');
    expect((err as ScribeError).issues).toContainEqual({ where: 'Device.id', message: 'not a valid id' });
  }, 60_000);

  it('per-note check rejects every corruption that full validation rejects', async () => {
    const c = await testConformance();
    const probes = await probeNotes();
    const docref = new MappingRegistry().get('us-core-docref');
    const tx = new MappingRegistry().get('fhir-transaction');
    const base: Rendering[] = [
      render(docref, { note: probes[0]!.note }),
      render(docref, { note: probes.find((p) => p.name === 'amendment')!.note }),
      render(tx, { note: probes.find((p) => p.name === 'clinician-only')!.note }),
    ];
    // Primitive leaves by path, and which of them vary between the renderings of different probe notes.
    const leavesOf = (value: unknown) => {
      const out = new Map<string, { path: Array<string | number>; value: unknown }>();
      const walk = (v: unknown, p: Array<string | number>) => {
        if (Array.isArray(v)) {
          for (const [i, x] of v.entries()) walk(x, [...p, i]);
        } else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...p, k]);
        else out.set(JSON.stringify(p), { path: p, value: v });
      };
      walk(value, []);
      return out;
    };
    const variableLeaves = (r: Rendering, mapping: typeof docref) => {
      const mine = leavesOf(r.value);
      const others = probes
        .filter((p) => p.note.envelope.status !== 'entered-in-error')
        .map((p) => leavesOf(render(mapping, { note: p.note }).value));
      return [...mine.values()]
        .filter(({ path, value }) => others.some((o) => o.get(JSON.stringify(path))?.value !== value))
        .map(({ path }) => path);
    };
    const leaves = [
      variableLeaves(base[0]!, docref),
      variableLeaves(base[1]!, docref),
      variableLeaves(base[2]!, tx),
    ];
    expect(Math.min(...leaves.map((l) => l.length))).toBeGreaterThan(10);
    const corruptions = fc.constantFrom<unknown>(
      '',
      ' ',
      'not a date',
      'a b',
      'x\u0001y',
      12,
      -1,
      true,
      {},
      [],
      '<div>no namespace</div>',
      'bogus',
    );
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: base.length - 1 }), fc.nat(), corruptions, async (bi, li, bad) => {
        const r = base[bi]!;
        const path = leaves[bi]![li % leaves[bi]!.length]!;
        const value = structuredClone(r.value) as Record<string | number, unknown>;
        let cur: Record<string | number, unknown> = value;
        for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
        cur[path.at(-1)!] = bad;
        const mutated = { ...r, value };
        const full = (() => {
          try {
            c.validateFull(mutated);
            return 'ok';
          } catch {
            return 'refused';
          }
        })();
        const fast = (() => {
          try {
            c.check(mutated);
            return 'ok';
          } catch {
            return 'refused';
          }
        })();
        if (full === 'refused') expect(fast, `${path.join('.')} = ${JSON.stringify(bad)}`).toBe('refused');
      }),
      { numRuns: runs(Number(process.env['SB_CONFORMANCE_RUNS'] ?? 150)) },
    );
  }, 300_000);
});
