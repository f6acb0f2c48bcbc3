/** docs/mappings.md's worked example loads, renders, and behaves as the page says. */
import { describe, expect, it } from 'vitest';
import type { ScribeError } from '../src/errors.ts';
import { render } from '../src/map/engine.ts';
import { loadMappingFile } from '../src/map/mapping-file.ts';
import { probeNotes } from '../src/map/probes.ts';

describe('docs/examples/progress-note-docref.yaml', () => {
  const mapping = loadMappingFile(
    new URL('../docs/examples/progress-note-docref.yaml', import.meta.url).pathname,
  );

  it('renders a Progress note DocumentReference with plain text and HTML', async () => {
    const probe = (await probeNotes()).find((p) => p.name === 'amendment')!;
    const r = render(mapping, { note: probe.note });
    const doc = r.value as {
      identifier: Array<{ system: string; value: string }>;
      content: Array<{ attachment: { contentType: string } }>;
      relatesTo: unknown[];
      docStatus: string;
    };
    expect(doc.identifier[0]).toEqual({
      system: 'https://ehr.example.org/fhir/sid/scribe-note',
      value: 'probe-history_and_physical.2',
    });
    expect(doc.content.map((c) => c.attachment.contentType)).toEqual([
      'text/plain; charset=utf-8',
      'text/html; charset=utf-8',
    ]);
    expect(doc.docStatus).toBe('amended');
    expect(doc.relatesTo).toHaveLength(1);
    expect(r.request?.ifNoneExist).toBe(
      'identifier=https://ehr.example.org/fhir/sid/scribe-note|probe-history_and_physical.2',
    );
  });

  it('refuses a retraction with MAPPING_UNSUPPORTED', async () => {
    const probe = (await probeNotes()).find((p) => p.name === 'retraction')!;
    const err = (() => {
      try {
        render(mapping, { note: probe.note, prior: probe.prior! });
      } catch (e) {
        return e as ScribeError;
      }
    })();
    expect(err?.code).toBe('MAPPING_UNSUPPORTED');
  });
});
