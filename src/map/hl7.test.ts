import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runs } from '../../test/support/runs.ts';
import { ScribeError } from '../errors.ts';
import { checkMdm } from '../validate/hl7.ts';
import {
  DEFAULT_DELIMITERS,
  escapedPieces,
  escapeHl7,
  HL7_TEXT_MAX,
  nmText,
  parseDelimiters,
  serializeHl7,
} from './hl7.ts';

describe('escapeHl7', () => {
  it('escapes every delimiter (escape character first) and turns line breaks into \\.br\\', () => {
    expect(escapeHl7('a|b^c~d\\e&f')).toBe('a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f');
    expect(escapeHl7('one\r\ntwo\nthree\rfour')).toBe('one\\.br\\two\\.br\\three\\.br\\four');
    expect(escapeHl7('\\F\\')).toBe('\\E\\F\\E\\');
    expect(escapeHl7('tab\tand ünïcødé 😀')).toBe('tab\tand ünïcødé 😀');
  });

  it("escapes with the message's own delimiters when they are not the defaults", () => {
    const d = parseDelimiters('#$*@%');
    expect(escapeHl7('a#b$c*d@e%f|g^', d)).toBe('a@F@b@S@c@R@d@E@e@T@f|g^');
    const body = serializeHl7(
      [
        { segment: 'MSH', 3: 'APP', 10: 'ID1', 12: '2.5.1' },
        { segment: 'OBX', 1: 1, 5: 'x#y' },
      ],
      d,
    );
    expect(body).toBe('MSH#$*@%#APP#######ID1##2.5.1\rOBX#1####x@F@y\r');
  });

  it('refuses unusable delimiter sets', () => {
    for (const bad of ['|^~\\', '|^~\\&&', '|^~\\a', '|^ \\&'])
      expect(() => parseDelimiters(bad)).toThrow(ScribeError);
    // '.' would be escaped inside MSH-12's 2.5.1, decimals and \.br\: refused with the reason.
    expect(() => parseDelimiters('|^~.&')).toThrow(/may not use "\."/);
  });

  it('writes \\.br\\ only in formatted text (OBX-5 of FT, NTE-3), hex data for line breaks anywhere else', () => {
    const body = serializeHl7([
      { segment: 'PID', 5: { 1: 'Ng\r\nuyen', 2: 'A\nB', 3: 'C\rD' } },
      { segment: 'OBX', 1: 1, 2: 'FT', 5: 'one\ntwo' },
      { segment: 'OBX', 1: 2, 2: 'ST', 5: 'one\ntwo' },
      { segment: 'NTE', 1: 1, 3: 'x\r\ny' },
    ]);
    expect(body.split('\r')).toEqual([
      'PID|||||Ng\\X0D0A\\uyen^A\\X0A\\B^C\\X0D\\D',
      'OBX|1|FT|||one\\.br\\two',
      'OBX|2|ST|||one\\X0A\\two',
      'NTE|1||x\\.br\\y',
      '',
    ]);
    expect(escapeHl7('a\r\nb', DEFAULT_DELIMITERS, 'hex')).toBe('a\\X0D0A\\b');
  });

  it('writes numbers in NM form, never in exponent form', () => {
    expect(nmText(2.8)).toBe('2.8');
    expect(nmText(1e-7)).toBe('0.0000001');
    expect(nmText(-1.5e-9)).toBe('-0.0000000015');
    expect(nmText(1e21)).toBe('1000000000000000000000');
    expect(nmText(1.25e22)).toBe('12500000000000000000000');
    expect(nmText(0)).toBe('0');
    for (const n of [1e-7, 3.14159e-12, 6.02e23, 123.456, 5e-324, Number.MAX_VALUE])
      expect(Number(nmText(n))).toBe(n);
    expect(serializeHl7([{ segment: 'ZSE', 1: 1e-7, 2: 1e21 }])).toBe(
      'ZSE|0.0000001|1000000000000000000000\r',
    );
    expect(() => serializeHl7([{ segment: 'ZSE', 1: Number.NaN }])).toThrow(/finite/);
  });
});

describe('serializeHl7', () => {
  it('writes fields by position, components, sub-components and repetitions, dropping trailing empties', () => {
    const body = serializeHl7([
      {
        segment: 'PID',
        1: '1',
        3: { repeat: [{ 1: 'A1', 4: { 2: 'urn:oid:1.2', 3: 'ISO' }, 5: 'MR' }, { 1: 'B2' }] },
        5: { 1: 'Doe', 2: 'Jo' },
      },
    ]);
    expect(body).toBe('PID|1||A1^^^&urn:oid:1.2&ISO^MR~B2||Doe^Jo\r');
  });

  it('refuses values that are not text, and segments without a name', () => {
    expect(() => serializeHl7([{ segment: 'PID', 3: [1, 2] }])).toThrow(/text or a number/);
    expect(() => serializeHl7([{ 1: 'x' }])).toThrow(/segment/);
    expect(() => serializeHl7([{ segment: 'MSH', 2: 'x' }])).toThrow(/position/);
  });
});

describe('escapedPieces (text for FT / TX values of bounded length)', () => {
  const FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/g;
  const text = fc
    .array(
      fc.oneof(
        fc.constantFrom('|', '^', '~', '\\', '&', '\r', '\n', '\r\n', ' ', 'a', 'bb', '😀', 'é'),
        fc.string({ unit: 'binary', maxLength: 6 }),
      ),
      { maxLength: 40 },
    )
    .map((parts) => parts.join('').replace(FORBIDDEN, ' '));
  const BREAK = /\r\n|\r|\n/;

  it('cuts into pieces that fit once escaped, at line ends where it can, never inside a pair or a CRLF', () => {
    fc.assert(
      fc.property(text, fc.integer({ min: 5, max: 40 }), (t, max) => {
        const pieces = escapedPieces(t, DEFAULT_DELIMITERS, max);
        expect(pieces.join('')).toBe(t);
        pieces.forEach((p, i) => {
          expect(escapeHl7(p).length, JSON.stringify(p)).toBeLessThanOrEqual(max);
          if (i < pieces.length - 1) {
            expect(p.length).toBeGreaterThan(0);
            // A piece ends after a line break, or holds no line break at all (a line too long to fit).
            if (!/(\r\n|\r|\n)$/.test(p)) expect(BREAK.test(p)).toBe(false);
            // Never between the halves of a surrogate pair, or between CR and LF.
            const next = pieces[i + 1]!;
            expect(/[\uD800-\uDBFF]$/.test(p) && /^[\uDC00-\uDFFF]/.test(next)).toBe(false);
            expect(p.endsWith('\r') && next.startsWith('\n')).toBe(false);
          }
        });
      }),
      { numRuns: runs(2_000) },
    );
  });

  it('keeps text that fits as one piece, and measures escapes (a | is 3, a line break 5)', () => {
    expect(escapedPieces('short')).toEqual(['short']);
    expect(escapedPieces('')).toEqual(['']);
    expect(escapedPieces('a|b', DEFAULT_DELIMITERS, 5)).toEqual(['a|b']);
    expect(escapedPieces('a|bc', DEFAULT_DELIMITERS, 5)).toEqual(['a|b', 'c']);
    expect(escapedPieces('one\ntwo\nthree', DEFAULT_DELIMITERS, 10)).toEqual(['one\n', 'two\n', 'three']);
    expect(escapedPieces('x'.repeat(HL7_TEXT_MAX + 1))).toEqual(['x'.repeat(HL7_TEXT_MAX), 'x']);
  });

  it('cuts a line too long to fit at a grapheme boundary: an accent stays with its letter, an emoji sequence whole', () => {
    // 'e' + U+0301 at the cut: the piece ends before the 'e', not between it and its accent.
    expect(escapedPieces('abcde\u0301fg', DEFAULT_DELIMITERS, 5)).toEqual(['abcd', 'e\u0301fg']);
    const family = '\u{1F468}\u200D\u{1F469}\u200D\u{1F467}'; // one grapheme, 8 UTF-16 units
    expect(escapedPieces(`ab${family}cd`, DEFAULT_DELIMITERS, 8)).toEqual(['ab', family, 'cd']);
    // A cluster longer than the piece itself is cut inside (code points kept whole): nothing is lost.
    const zalgo = `z${'\u0301'.repeat(20)}`;
    expect(escapedPieces(zalgo, DEFAULT_DELIMITERS, 8).join('')).toBe(zalgo);
  });

  it('checkMdm refuses a control character other than TAB inside a segment', () => {
    const issues = checkMdm(mdm([obx(1, 'ok\ttab')]).replace('ok', 'o\u0007k'));
    expect(issues).toContainEqual({
      path: 'segment 6 (OBX)',
      message: 'a control character (other than TAB) inside a segment',
    });
    expect(checkMdm(mdm([obx(1, 'ok\ttab')]))).toEqual([]);
  });
});

type Seg = { segment: string } & Record<number, unknown>;
/** A minimal complete MDM^T02; `change` edits its segments (by name) before serialising. */
const mdm = (obx: Seg[], change: (segs: Seg[]) => void = () => {}) => {
  const segs: Seg[] = [
    {
      segment: 'MSH',
      7: '20261120140200-0500',
      9: { 1: 'MDM', 2: 'T02', 3: 'MDM_T02' },
      10: 'ID1',
      12: '2.5.1',
    },
    { segment: 'EVN', 1: 'T02', 2: '20261120140200-0500' },
    { segment: 'PID', 1: '1' },
    { segment: 'PV1', 1: '1' },
    { segment: 'TXA', 1: '1', 2: 'HP', 3: 'FT', 12: 'DOC1', 17: 'LA', 19: 'AV' },
    ...obx,
  ];
  change(segs);
  return serializeHl7(segs);
};
const obx = (n: number, value: string, type = 'FT', sub?: string): Seg => ({
  segment: 'OBX',
  1: String(n),
  2: type,
  3: { 1: '34117-2', 3: 'LN' },
  ...(sub ? { 4: sub } : {}),
  5: value,
  11: 'F',
});
const seg = (segs: Seg[], name: string) => segs.find((s) => s.segment === name)!;

describe('checkMdm: OBX text length', () => {
  it('refuses an FT or TX value over 65,536 characters, and takes one at the limit', () => {
    const message = (value: string, type = 'FT') => mdm([obx(1, value, type)]);
    expect(checkMdm(message('x'.repeat(HL7_TEXT_MAX)))).toEqual([]);
    expect(checkMdm(message(`${'x'.repeat(HL7_TEXT_MAX - 2)}|`, 'TX'))).toEqual([
      {
        path: 'OBX-5 (OBX 1)',
        message: `a TX value holds at most ${HL7_TEXT_MAX} characters (is ${HL7_TEXT_MAX + 1}): give the text in several OBX`,
      },
    ]);
  });
});

describe('checkMdm: required fields, tables and events (reference/standards.md §7)', () => {
  const paths = (body: string, mode?: 'new' | 'amendment' | 'retraction') =>
    checkMdm(body, undefined, mode).map((i) => i.path);

  it('takes a complete message, and one whose text runs over several OBX told apart by OBX-4', () => {
    expect(checkMdm(mdm([obx(1, 'a')]), undefined, 'new')).toEqual([]);
    expect(paths(mdm([obx(1, 'a', 'FT', '1'), obx(2, 'b', 'FT', '2')]))).toEqual([]);
    expect(paths(mdm([obx(1, 'a'), obx(2, 'b')]))).toEqual(['OBX-4 (OBX 2)']);
  });

  it('refuses missing MSH-7, EVN-2, TXA-2, TXA-3; a bad date; OBX-2 and OBX-11 outside their tables', () => {
    const body = mdm([{ ...obx(1, 'a'), 2: 'XX', 11: 'Z' }], (segs) => {
      delete seg(segs, 'MSH')[7];
      seg(segs, 'EVN')[2] = 'yesterday';
      delete seg(segs, 'TXA')[2];
      delete seg(segs, 'TXA')[3];
    });
    expect(paths(body)).toEqual(['MSH-7', 'EVN-2', 'OBX-2 (OBX 1)', 'OBX-11 (OBX 1)', 'TXA-2', 'TXA-3']);
  });

  it('refuses TXA-17/19 outside their tables and a TXA-21 over 30 characters', () => {
    const body = mdm([obx(1, 'a')], (segs) => {
      Object.assign(seg(segs, 'TXA'), { 17: 'XX', 19: 'ZZ', 21: 'Amended by the signing clinician' });
    });
    expect(checkMdm(body)).toEqual([
      { path: 'TXA-17', message: 'document completion status must be from HL7 table 0271 (LA, AU…)' },
      { path: 'TXA-19', message: 'must be a code of HL7 table 0273' },
      { path: 'TXA-21', message: 'document change reason holds at most 30 characters (is 32)' },
    ]);
  });

  it('refuses an event whose structure differs, and an event that does not fit the lifecycle step', () => {
    const t01 = mdm([], (segs) => {
      seg(segs, 'MSH')[9] = { 1: 'MDM', 2: 'T02', 3: 'MDM_T01' };
    });
    expect(paths(t01)).toContain('MSH-9.3');
    expect(checkMdm(mdm([obx(1, 'a')]), undefined, 'retraction')).toEqual([
      { path: 'MSH-9.2', message: 'a retraction is sent as T03, T04, T11, not T02' },
    ]);
  });

  it('the shipped mdm mapping passes on every probe note', async () => {
    const { probeNotes } = await import('./probes.ts');
    const { MappingRegistry } = await import('./registry.ts');
    const { render } = await import('./engine.ts');
    const m = new MappingRegistry().get('mdm');
    for (const p of await probeNotes()) {
      const r = render(m, { note: p.note, ...(p.prior ? { prior: p.prior } : {}) });
      expect(checkMdm(r.body, undefined, r.mode), p.name).toEqual([]);
    }
  });
});
