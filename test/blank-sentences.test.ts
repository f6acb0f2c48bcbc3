/**
 * Blank sentences: the envelope allows a sentence whose text is empty or only whitespace. FHIR narrative needs
 * some non-whitespace content (txt-2) and a Composition section needs text, entries or sub-sections (cmp-1), so
 * the FHIR Bundle mappings leave such a sentence (and a section of nothing else) out of the Composition and give
 * it no Provenance. The note is still delivered — to FHIR and to MDM — instead of being refused whole, and every
 * output validates in full. The MDM message keeps every sentence in its evidence index.
 */
import { describe, expect, it } from 'vitest';
import { render } from '../src/map/engine.ts';
import { probeNotes } from '../src/map/probes.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { parseEr7, segmentsNamed } from './support/hl7-parse.ts';
import { testConformance } from './support/profiles.ts';

interface Section {
  id?: string;
  section?: Section[];
  text?: { div: string };
}
interface Entry {
  resource: {
    resourceType: string;
    section?: Section[];
    target?: Array<{ extension?: Array<{ valueUri?: string }> }>;
  };
}

const blankProbe = async () => {
  const probe = (await probeNotes()).find((p) => p.name === 'blank-sentences');
  if (!probe) throw new Error('the probe set has no blank-sentences note');
  return probe.note;
};

describe('a note with blank sentences', () => {
  it('the probe really has blank sentences: a whole section of them, and one among others', async () => {
    const note = await blankProbe();
    const blank = note.envelope.note.sections.map(
      (s) => s.sentences.filter((x) => x.text.trim() === '').length,
    );
    expect(blank[0]).toBe(note.envelope.note.sections[0]!.sentences.length);
    expect(blank[1]).toBe(1);
    expect(blank.slice(2).every((n) => n === 0)).toBe(true);
  });

  it.each(['fhir-transaction', 'fhir-document'])(
    '%s leaves blank sentences and all-blank sections out of the Composition, gives them no Provenance, and validates in full',
    async (id) => {
      const note = await blankProbe();
      const conformance = await testConformance();
      const rendering = render(new MappingRegistry().get(id), { note });
      expect(conformance.validateFull(rendering).filter((i) => i.severity === 'error')).toEqual([]);

      const entries = (rendering.value as { entry: Entry[] }).entry;
      const composition = entries.find((e) => e.resource.resourceType === 'Composition')!.resource;
      const blankIds = note.sentences.filter((s) => s.text.trim() === '').map((s) => `sentence-${s.id}`);
      const textIds = note.sentences.filter((s) => s.text.trim() !== '').map((s) => `sentence-${s.id}`);
      const elementIds = (composition.section ?? []).flatMap((s) => (s.section ?? []).map((x) => x.id));
      expect(elementIds).toEqual(textIds);
      expect(blankIds.length).toBe(4);
      // The first section held only blank sentences: it is gone; the second keeps its other sentences.
      expect(composition.section!.map((s) => s.id)).not.toContain('section-1');
      expect(composition.section!.map((s) => s.id)).toContain('section-2');

      const targeted = entries
        .filter((e) => e.resource.resourceType === 'Provenance')
        .flatMap((e) => e.resource.target ?? [])
        .flatMap((t) => t.extension ?? [])
        .map((x) => x.valueUri)
        .filter((u): u is string => u !== undefined);
      expect(targeted.sort()).toEqual([...textIds].sort());
    },
    60_000,
  );

  it('mdm carries every sentence, blank ones too, in its evidence index', async () => {
    const note = await blankProbe();
    const rendering = render(new MappingRegistry().get('mdm'), { note });
    const zse = segmentsNamed(parseEr7(rendering.body), 'ZSE');
    expect(zse.map((s) => s.fields[2]?.[0]?.[0]?.[0])).toEqual(note.sentences.map((s) => s.id));
  });
});
