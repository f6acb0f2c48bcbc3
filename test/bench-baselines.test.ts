/**
 * The benchmark baselines (bench/baselines/) produce exactly what the engine produces with
 * mappings/fhir-transaction.yaml: the hand-written TypeScript builder byte for byte, the JSONata mapping deep-equal
 * and byte for byte. New notes and amendments only (the baselines do not implement output.retraction).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  buildTransaction,
  buildTransactionBody,
  prepareVars,
} from '../bench/baselines/handwritten-transaction.ts';
import { compileJsonataTransaction } from '../bench/baselines/jsonata-transaction.ts';
import type { JsonValue } from '../src/contract/json.ts';
import { type VerifiedNote, verifyEnvelope } from '../src/contract/verify.ts';
import { lifecycleMode, render } from '../src/map/engine.ts';
import { loadMappingFile } from '../src/map/mapping-file.ts';
import type { RenderOptions } from '../src/map/model.ts';
import { probeNotes } from '../src/map/probes.ts';
import { testConformance } from './support/profiles.ts';

const mapping = loadMappingFile(fileURLToPath(new URL('../mappings/fhir-transaction.yaml', import.meta.url)));
const evaluateJsonata = compileJsonataTransaction();

const RENDERING_OPTIONS: ReadonlyArray<[string, RenderOptions]> = [
  ['default renderings', {}],
  ['plain and html', { renderings: ['plain', 'html'] }],
];

async function expectSameAsEngine(note: VerifiedNote, options: RenderOptions): Promise<void> {
  const rendering = render(mapping, { note, options });
  const vars = prepareVars(note, mapping, options);

  expect(buildTransactionBody(vars)).toBe(rendering.body);
  expect(buildTransaction(vars)).toStrictEqual(rendering.value);

  const jsonata = await evaluateJsonata(vars);
  expect(jsonata).toEqual(rendering.value);
  expect(JSON.stringify(jsonata)).toBe(rendering.body);
}

const probes = (await probeNotes()).filter((p) => p.note.envelope.status !== 'entered-in-error');

describe('bench baselines = engine (probe notes)', () => {
  it('covers new notes and amendments', () => {
    expect(probes.some((p) => lifecycleMode(p.note) === 'new')).toBe(true);
    expect(probes.some((p) => lifecycleMode(p.note) === 'amendment')).toBe(true);
  });

  for (const probe of probes) {
    for (const [label, options] of RENDERING_OPTIONS) {
      it(`${probe.name} (${label})`, async () => {
        await expectSameAsEngine(probe.note, options);
      });
    }
  }

  it('no rendering asked for (DocumentReference.content omitted)', async () => {
    await expectSameAsEngine(probes[0]!.note, { renderings: [] });
  });

  it('edge cases the probes do not reach: no organization name, open period, blank title, empty text', async () => {
    const base = probes.find((p) => p.name === 'streaming')!.note;
    // biome-ignore lint/suspicious/noExplicitAny: ad-hoc surgery on a synthetic envelope
    const env = structuredClone(base.raw) as any;
    delete env.organization.name;
    delete env.encounter.period.end;
    const firstEvidence = env.note.sections[0].sentences[0].evidence[0] as string;
    env.note.sections.push({ name: '_', sentences: [{ id: 'edge-1', text: '', evidence: [firstEvidence] }] });
    env.note.sections.push({ name: 'NOTHING_HERE', sentences: [] });
    env.healthscribe.transcript.inline.Conversation.TranscriptSegments[0].ParticipantDetails.ParticipantRole =
      '';
    // Another language than en-US: carried as the attachments' language and the HTML's lang.
    env.healthscribe.transcript.inline.Conversation.LanguageCode = 'es-US';
    delete env.healthscribe.transcript.sha256;
    const note = await verifyEnvelope(JSON.stringify(env as JsonValue), { keys: 'skip-signature' });
    await expectSameAsEngine(note, { renderings: ['plain', 'html'] });
    const r = render(mapping, { note, options: { renderings: ['plain', 'html'] } });
    const content = (
      r.value as { entry: { resource: { content?: { attachment: { language: string; data: string } }[] } }[] }
    ).entry[0]!.resource.content!;
    expect(content.map((c) => c.attachment.language)).toEqual(['es-US', 'es-US']);
    expect(Buffer.from(content[1]!.attachment.data, 'base64').toString()).toContain('<html lang="es-US">');
    (await testConformance()).validateFull(r); // a language tag FHIR takes (all-languages)
  });

  it('the baselines refuse a retraction', async () => {
    const retraction = (await probeNotes()).find((p) => p.note.envelope.status === 'entered-in-error');
    expect(retraction).toBeDefined();
    expect(() => prepareVars(retraction!.note, mapping)).toThrow(/new notes and amendments/);
  });
});

const envelopeDir = fileURLToPath(new URL('../fixtures/envelopes/valid/', import.meta.url));
const hasFixtures = existsSync(`${envelopeDir}hp-typical.json`);

describe.skipIf(!hasFixtures)('bench baselines = engine (fixture envelopes)', () => {
  const files = hasFixtures
    ? readdirSync(envelopeDir)
        .filter((f) => f.endsWith('.json') && f !== 'manifest.json')
        .sort()
    : [];
  for (const file of files) {
    it(file, async () => {
      const bytes = readFileSync(`${envelopeDir}${file}`);
      const note = await verifyEnvelope(bytes, { keys: 'skip-signature', envelopeDir });
      if (note.envelope.status === 'entered-in-error') return; // retractions are not covered
      await expectSameAsEngine(note, {});
    });
  }
});
