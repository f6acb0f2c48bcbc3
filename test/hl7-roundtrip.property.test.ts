/**
 * HL7 escaping, proven: for arbitrary sentence text and names (every delimiter, CR/LF, TAB, any Unicode, empty),
 * build the MDM message with the `mdm` mapping → serialise → parse with an independent parser (hl7parser, via
 * test/support/hl7-parse.ts — not the code that built it) → the exact text comes back. Line breaks travel as
 * the format's line breaks (`\.br\` in FT; one OBX per line in TX), as the spec requires, so the comparison
 * normalises CRLF / CR / LF to one line break; every other character must be identical. Names are not FT: their
 * line breaks travel as hexadecimal data and come back exactly, CRLF included.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { VerifiedNote } from '../src/contract/verify.ts';
import { verifyEnvelope } from '../src/contract/verify.ts';
import { render } from '../src/map/engine.ts';
import { compileMapping } from '../src/map/mapping-file.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { Conformance } from '../src/validate/conformance.ts';
import { fieldText, obxLines, parseEr7, segmentsNamed } from './support/hl7-parse.ts';
import { bytesOf, envelopeJson, signed } from './support/notes.ts';
import { runs } from './support/runs.ts';

const RUNS = Number(process.env['SB_HL7_RUNS'] ?? 10_000);
const FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/g;

/** Text as an envelope may carry it: anything but the control characters the spec forbids. */
const text = fc
  .array(
    fc.oneof(
      fc.constantFrom('|', '^', '~', '\\', '&', '\r', '\n', '\r\n', '\t', ' ', '\\E\\', '\\.br\\', '\\F\\'),
      fc.string({ unit: 'binary', maxLength: 8 }),
      fc.constantFrom('😀', '胸痛', 'ألم', 'כאב', 'é', 'e\u0301', '<b>&amp;</b>'),
    ),
    { maxLength: 12 },
  )
  .map((parts) => parts.join('').replace(FORBIDDEN, ' '));
/** Names may carry line breaks too (the envelope allows them): outside FT they travel as hex data, exactly. */
const name = text;
const lines = (s: string) => s.replace(/\r\n|\r|\n/g, '\n');

const shipped = new MappingRegistry().get('mdm');
const txMapping = compileMapping(
  Buffer.from(
    readFileSync(shipped.file, 'utf8')
      .replace('content: FT', 'content: TX')
      .replace('id: mdm\n', 'id: mdm-tx\n'),
  ),
  shipped.file,
  (rel) => ({ file: rel, bytes: readFileSync(new URL(rel, `file://${shipped.file}`)) }),
);

/** A small verified note to vary (signature not checked: the escaping is under test, not the signature). */
const baseNote = async () =>
  verifyEnvelope(bytesOf(await signed(envelopeJson())), { keys: 'skip-signature' });

/** The per-note check with no FHIR definitions: for MDM it is the HL7 structure and length check. */
const hl7Conformance = () =>
  new Conformance({
    structureDefinitions: new Map(),
    valueSets: new Map(),
    codeSystems: new Map(),
    files: new Map(),
    warnings: [],
  });

describe('MDM escaping round trip (independent parser)', () => {
  it(`gives the exact text back for arbitrary sentences and names (${RUNS} runs, FT and TX)`, async () => {
    const base = await baseNote();
    const conformance = hl7Conformance();
    fc.assert(
      fc.property(
        fc.array(text, { minLength: 3, maxLength: 3 }),
        name,
        name,
        fc.boolean(),
        (texts, family, given, ft) => {
          const note: VerifiedNote = {
            ...base,
            envelope: {
              ...base.envelope,
              patient: { ...base.envelope.patient, name: { family, given: [given] } },
            },
            sentences: base.sentences.map((s, i) => ({ ...s, text: texts[i]! })),
          };
          const r = render(ft ? shipped : txMapping, { note });
          conformance.check(r); // MDM structure and field lengths hold for any text
          const segments = parseEr7(r.body);
          const pid = segmentsNamed(segments, 'PID')[0]!;
          expect(fieldText(pid, 5, 1)).toBe(family);
          expect(fieldText(pid, 5, 2)).toBe(given);
          const decoded = obxLines(segments).join('\n');
          const expected = lines(renderedText(note));
          // FT carries the rendering's final line break as \.br\; TX lines have none after the last line.
          expect(decoded).toBe(ft ? expected : expected.replace(/\n$/, ''));
          // Each sentence, exactly (a TX message has no line break after its last line).
          for (const t of texts) expect(`${decoded}\n`).toContain(lines(t));
        },
      ),
      { numRuns: runs(RUNS) },
    );
  }, 600_000);
});

describe('MDM text longer than one FT / TX value (v2.5.1: 65,536 characters)', () => {
  it('goes in several OBX, each within the length, that read back to the exact text (FT and TX)', async () => {
    const base = await baseNote();
    const conformance = hl7Conformance();
    // ~150,000 escaped characters: delimiters (3 each once escaped), line breaks (5), a 70,000-character line.
    const texts = [
      'pipes | and ^ carets & co\n'.repeat(1_500),
      `one long line ${'x'.repeat(70_000)} end`,
      '😀 胸痛 |'.repeat(2_000),
    ];
    const note: VerifiedNote = {
      ...base,
      sentences: base.sentences.map((s, i) => ({ ...s, text: texts[i]! })),
    };
    for (const [mapping, ft] of [
      [shipped, true],
      [txMapping, false],
    ] as const) {
      const r = render(mapping, { note });
      conformance.check(r); // OBX-5 lengths included
      const obx = r.body.split('\r').filter((seg) => seg.startsWith('OBX|'));
      expect(obx.length).toBeGreaterThan(ft ? 2 : texts[0]!.split('\n').length);
      for (const seg of obx) expect(seg.split('|')[5]!.length).toBeLessThanOrEqual(65_536);
      expect(obx.map((seg) => seg.split('|')[1])).toEqual(obx.map((_, i) => String(i + 1)));
      const decoded = obxLines(parseEr7(r.body));
      const expected = lines(renderedText(note));
      if (ft) expect(decoded.join('')).toBe(expected);
      else {
        // TX: one OBX per line, a line too long for one value continuing in the next OBX.
        expect(decoded.join('\n')).not.toBe(expected);
        expect(decoded.join('')).toBe(expected.replace(/\n/g, ''));
        expect(decoded.some((l) => l.startsWith('one long line') && !l.endsWith('end'))).toBe(true);
      }
    }
  }, 60_000);
});

/** The plain rendering the OBX content carries (the same mapping renders it; this reads it back from the vars). */
const docref = new MappingRegistry().get('us-core-docref');
function renderedText(note: VerifiedNote): string {
  const r = render(docref, { note });
  const content = (r.value as { content: Array<{ attachment: { data: string } }> }).content[0]!;
  return Buffer.from(content.attachment.data, 'base64').toString('utf8');
}
