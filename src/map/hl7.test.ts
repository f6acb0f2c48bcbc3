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
});

describe('checkMdm: OBX text length', () => {
  it('refuses an FT or TX value over 65,536 characters, and takes one at the limit', () => {
    const message = (value: string, type = 'FT') =>
      serializeHl7([
        { segment: 'MSH', 9: { 1: 'MDM', 2: 'T02', 3: 'MDM_T02' }, 10: 'ID1', 12: '2.5.1' },
        { segment: 'EVN', 1: 'T02' },
        { segment: 'PID', 1: '1' },
        { segment: 'PV1', 1: '1' },
        { segment: 'TXA', 1: '1', 12: 'DOC1', 17: 'LA' },
        { segment: 'OBX', 1: '1', 2: type, 5: value },
      ]);
    expect(checkMdm(message('x'.repeat(HL7_TEXT_MAX)))).toEqual([]);
    expect(checkMdm(message(`${'x'.repeat(HL7_TEXT_MAX - 2)}|`, 'TX'))).toEqual([
      {
        path: 'OBX-5 (OBX 1)',
        message: `a TX value holds at most ${HL7_TEXT_MAX} characters (is ${HL7_TEXT_MAX + 1}): give the text in several OBX`,
      },
    ]);
  });
});
