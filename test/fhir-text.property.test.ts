/**
 * Sentence text in FHIR, proven: for arbitrary sentence text, names and organization name (markup, entities,
 * quotes, line breaks, TAB, any Unicode character, empty and blank — a blank string is left out of FHIR output like an empty
 * one), each shipped FHIR mapping renders a note that passes the per-note check;
 * in the Bundle forms each sentence with text has its own Composition element whose narrative is well-formed
 * XHTML and, read back by an independent XML parser (fast-xml-parser), is exactly the signed text (XML
 * normalises CRLF and CR to LF, so line breaks compare normalised); a blank sentence has no element; and the
 * text/plain rendering carries every sentence exactly; the opt-in HTML rendering is well-formed XML too.
 */
import fc from 'fast-check';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import type { VerifiedNote } from '../src/contract/verify.ts';
import { verifyEnvelope } from '../src/contract/verify.ts';
import { render } from '../src/map/engine.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { bytesOf, envelopeJson, signed } from './support/notes.ts';
import { testConformance } from './support/profiles.ts';
import { runs } from './support/runs.ts';

const RUNS = Number(process.env['SB_FHIR_TEXT_RUNS'] ?? 300);
const FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]|\p{Noncharacter_Code_Point}/gu;

/**
 * Text as an envelope may carry it: anything but the control characters the spec forbids and the noncharacters
 * I-JSON forbids (U+FFFE, U+FFFF, …; src/contract/json.test.ts shows them refused).
 */
const text = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        '<',
        '>',
        '&',
        '"',
        "'",
        '&amp;',
        '&#39;',
        ']]>',
        '<script>',
        '\r',
        '\n',
        '\r\n',
        '\t',
        ' ',
      ),
      fc.constantFrom('', ' ', '\u00a0', '\u3000', '\u2028', '\ufeff', '\u200b', '\u0085'),
      fc.string({ unit: 'binary', maxLength: 8 }),
      fc.constantFrom('😀', '胸痛', 'ألم', 'כאב', 'é', 'e\u0301', '{{ %note.noteId }}'),
    ),
    { maxLength: 10 },
  )
  .map((parts) => parts.join('').replace(FORBIDDEN, ' '));
/** Names and other single-line strings, blank ones included (the envelope allows them). */
const name = text.map((t) => t.replace(/[\r\n]/g, ' '));
const lines = (s: string) => s.replace(/\r\n|\r/g, '\n');
const NON_BLANK = /\S/;

const xml = new XMLParser({
  ignoreAttributes: false,
  trimValues: false,
  parseTagValue: false,
  processEntities: true,
  htmlEntities: true,
});

interface Entry {
  resource: {
    resourceType: string;
    section?: Array<{ section?: Array<{ id: string; text: { div: string } }> }>;
    content?: Array<{ attachment: { contentType: string; data: string } }>;
  };
}

describe('sentence text in the FHIR mappings (independent XML parser)', () => {
  it(`renders arbitrary text conformant and gives it back exactly (${RUNS} runs)`, async () => {
    const base = await verifyEnvelope(bytesOf(await signed(envelopeJson())), { keys: 'skip-signature' });
    const conformance = await testConformance();
    const registry = new MappingRegistry();
    const [docref, transaction, document] = ['us-core-docref', 'fhir-transaction', 'fhir-document'].map(
      (id) => registry.get(id),
    );
    fc.assert(
      fc.property(
        fc.array(text, { minLength: 3, maxLength: 3 }),
        name,
        name,
        name,
        (texts, family, given, org) => {
          const note: VerifiedNote = {
            ...base,
            envelope: {
              ...base.envelope,
              patient: {
                ...base.envelope.patient,
                name: { family, given: [given] },
              },
              organization: { ...base.envelope.organization, name: org },
            },
            sentences: base.sentences.map((s, i) => ({ ...s, text: texts[i]! })),
          };
          for (const mapping of [transaction!, document!]) {
            const r = render(mapping, { note });
            conformance.check(r);
            const entries = (r.value as { entry: Entry[] }).entry;
            const composition = entries.find((e) => e.resource.resourceType === 'Composition')!.resource;
            const elements = new Map(
              (composition.section ?? []).flatMap((s) => (s.section ?? []).map((x) => [x.id, x.text.div])),
            );
            for (const s of note.sentences) {
              const div = elements.get(`sentence-${s.id}`);
              if (!NON_BLANK.test(s.text)) {
                expect(div).toBeUndefined();
                continue;
              }
              expect(XMLValidator.validate(div!)).toBe(true);
              const parsed = xml.parse(div!) as { div: { '#text'?: string } };
              expect(parsed.div['#text'] ?? '').toBe(lines(s.text));
            }
          }
          const plain = render(docref!, { note });
          conformance.check(plain);
          const attachment = (plain.value as Entry['resource']).content![0]!.attachment;
          const decoded = Buffer.from(attachment.data, 'base64').toString('utf8');
          for (const t of texts) expect(decoded).toContain(t);
          // The opt-in HTML rendering is also well-formed XML (XHTML, as Oracle Health requires), every sentence
          // with text read back exactly from its <p>.
          const both = render(docref!, { note, options: { renderings: ['plain', 'html'] } });
          conformance.check(both);
          const html = (both.value as Entry['resource']).content![1]!.attachment;
          expect(html.contentType).toBe('text/html; charset=utf-8');
          const page = Buffer.from(html.data, 'base64').toString('utf8');
          expect(XMLValidator.validate(page)).toBe(true);
          const paragraphs = new Map(
            [...page.matchAll(/<p id="sentence-([^"]+)">([\s\S]*?)<\/p>/g)].map((m) => [m[1], m[2]]),
          );
          for (const s of note.sentences) {
            const p = paragraphs.get(s.id);
            if (p === undefined) continue; // blank sentences may be left out
            const parsed = xml.parse(`<p>${p}</p>`) as { p: string | { '#text'?: string } };
            expect(typeof parsed.p === 'string' ? parsed.p : (parsed.p['#text'] ?? '')).toBe(lines(s.text));
          }
        },
      ),
      { numRuns: runs(RUNS) },
    );
  }, 600_000);
});
