/**
 * The independent test parser (test/support/hl7-parse.ts) decodes every HL7 escape sequence to the right
 * text and keeps the message structure, so the mapping engine's round-trip property tests can trust it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fieldRepetitions, fieldText, obxLines, parseEr7, segmentsNamed } from './support/hl7-parse.ts';
import { runs } from './support/runs.ts';

const MSH =
  'MSH|^~\\&|SCRIBE-BRIDGE|RIVERSIDE|EHR|HOSP|20261120164512||MDM^T02^MDM_T02|SB7Q2M4K9X3HZ5W8N1PD|P|2.5.1|||AL|NE||UNICODE UTF-8';

/** A message whose single OBX carries `value` (already escaped) in OBX-5, followed by OBX-11. */
const withObx5 = (value: string, msh = MSH): string =>
  `${msh}\rOBX|1|TX|11506-3^Progress note^LN|1|${value}||||||F`;
const obx5 = (value: string, msh?: string): string =>
  fieldText(segmentsNamed(parseEr7(withObx5(value, msh)), 'OBX')[0]!, 5);

describe('parseEr7 decodes escape sequences', () => {
  it.each([
    ['\\F\\', '|'],
    ['\\S\\', '^'],
    ['\\T\\', '&'],
    ['\\R\\', '~'],
    ['\\E\\', '\\'],
    ['a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f', 'a|b^c&d~e\\f'],
    // An escaped escape character followed by letters is text, not a sequence.
    ['\\E\\F\\E\\', '\\F\\'],
    ['\\E\\.br\\E\\', '\\.br\\'],
    ['\\E\\X41\\E\\', '\\X41\\'],
    ['x\\E\\\\S\\y', 'x\\^y'],
    ['line 1\\.br\\line 2\\.br\\\\.br\\end', 'line 1\nline 2\n\nend'],
    ['a\\X0D\\b\\X0A\\c', 'a\rb\nc'],
    ['caf\\XC3A9\\', 'café'],
    ['\\XE29C93\\ done', '✓ done'],
    ['\\X41\\', 'A'],
    ['\\X\\', ''],
    ['\\H\\bold\\N\\ plain', 'bold plain'],
    ['caf\u00e9 \ud83d\ude91 \u0645\u0631\u062d\u0628\u0627 \u4e2d\u6587', 'café 🚑 مرحبا 中文'],
    ['  leading and trailing  ', '  leading and trailing  '],
    ['""', '""'],
    ['', ''],
  ])('%j → %j', (escaped, text) => {
    expect(obx5(escaped)).toBe(text);
  });

  it('decodes \\.br\\ to the line break asked for', () => {
    const [, obx] = parseEr7(withObx5('a\\.br\\b'), { lineBreak: '\r\n' });
    expect(fieldText(obx!, 5)).toBe('a\r\nb');
  });

  it('reads \\X..\\ as Latin-1 when MSH-18 declares 8859/1', () => {
    expect(obx5('caf\\XE9\\', MSH.replace('UNICODE UTF-8', '8859/1'))).toBe('café');
  });

  it('uses the delimiters the message declares', () => {
    const msh = 'MSH#*!@%#SB#RC#EHR#H#20261120##MDM*T02*MDM_T02#CTRL1#P#2.5.1';
    const msg = `${msh}\rOBX#1#TX#X*Y#1#a@F@b@S@c@R@d@T@e@E@f|^~\\&@.br@g######F`;
    const [head, obx] = parseEr7(msg);
    expect(head!.fields[1]).toEqual([[['#']]]);
    expect(head!.fields[2]).toEqual([[['*!@%']]]);
    expect(fieldText(head!, 10)).toBe('CTRL1');
    expect(fieldText(obx!, 5)).toBe('a#b*c!d%e@f|^~\\&\ng');
    expect(fieldText(obx!, 3, 2)).toBe('Y');
    expect(fieldText(obx!, 11)).toBe('F');
  });
});

describe('parseEr7 keeps the structure', () => {
  const msg = [
    MSH,
    'EVN|T02|20261120164512',
    'PID|1||MRN1^^^HOSP&2.16.840.1.113883.19&ISO^MR~MRN2^^^OTHER^MR||O\\E\\Brien^Mary\\T\\Ann',
    'OBX|1|TX|11506-3^Progress note^LN|1|first line~second \\R\\ line~||||||F',
    'OBX|2|FT|11506-3^Progress note^LN|2|HPI:\\.br\\Knee pain \\F\\ 7/10||||||F',
    'ZEV|1|s1|seg-0001^12.4^15.9~seg-0002^16.0^18.2|tail text   ',
  ].join('\r');
  const parsed = parseEr7(`${msg}\r`);

  it('numbers fields as HL7 does, MSH included', () => {
    expect(parsed.map((s) => s.name)).toEqual(['MSH', 'EVN', 'PID', 'OBX', 'OBX', 'ZEV']);
    const msh = parsed[0]!;
    expect(msh.fields[1]).toEqual([[['|']]]);
    expect(msh.fields[2]).toEqual([[['^~\\&']]]);
    expect(fieldText(msh, 9, 2)).toBe('T02');
    expect(fieldText(msh, 10)).toBe('SB7Q2M4K9X3HZ5W8N1PD');
    expect(fieldText(msh, 18)).toBe('UNICODE UTF-8');
  });

  it('splits repetitions, components and sub-components, decoding each', () => {
    const pid = parsed[2]!;
    expect(pid.fields[3]).toEqual([
      [['MRN1'], [''], [''], ['HOSP', '2.16.840.1.113883.19', 'ISO'], ['MR']],
      [['MRN2'], [''], [''], ['OTHER'], ['MR']],
    ]);
    expect(fieldText(pid, 3, 4, 2)).toBe('2.16.840.1.113883.19');
    expect(fieldText(pid, 3, 4, 1, 2)).toBe('OTHER');
    expect(fieldText(pid, 5, 1)).toBe('O\\Brien');
    expect(fieldText(pid, 5, 2)).toBe('Mary&Ann');
    expect(fieldText(pid, 99)).toBe('');
  });

  it('reads OBX text lines across OBX segments and OBX-5 repetitions', () => {
    expect(obxLines(parsed)).toEqual(['first line', 'second ~ line', '', 'HPI:\nKnee pain | 7/10']);
    expect(fieldRepetitions(parsed[5]!, 3, 2)).toEqual(['12.4', '16.0']);
  });

  it('keeps trailing spaces of the last field of a segment (hl7parser trims segments)', () => {
    expect(fieldText(parsed[5]!, 4)).toBe('tail text   ');
  });

  it('rejects what no receiver should get: raw LF, empty segments, no MSH', () => {
    expect(() => parseEr7(withObx5('a\nb'))).toThrow(/line feed/);
    expect(() => parseEr7(`${MSH}\r\rEVN|T02`)).toThrow(/empty segment/);
    expect(() => parseEr7('EVN|T02')).toThrow(/MSH/);
  });
});

describe('parseEr7 inverts a straightforward escaper (self-check of the wrapper)', () => {
  // A reference escaper written here for the check only: every delimiter, CR and LF, nothing else.
  const escapeText = (s: string): string =>
    s.replace(/[\\|^&~\r\n]/g, (c) =>
      c === '\n'
        ? '\\.br\\'
        : c === '\r'
          ? '\\X0D\\'
          : `\\${({ '\\': 'E', '|': 'F', '^': 'S', '&': 'T', '~': 'R' } as Record<string, string>)[c]}\\`,
    );
  const text = fc.string({
    unit: fc.oneof(
      fc.constantFrom('\\', '|', '^', '&', '~', '\r', '\n', 'X', '.', 'br', ' ', 'é', '🚑'),
      fc.string({ unit: 'grapheme', maxLength: 3 }),
    ),
    maxLength: 40,
  });

  it('gives back the exact text, also as the last field of a segment', () => {
    fc.assert(
      fc.property(text, text, (a, b) => {
        const msg = `${MSH}\rOBX|1|TX|X^Y^L|1|${escapeText(a)}||||||F\rZTX|${escapeText(b)}`;
        const [, obx, z] = parseEr7(msg);
        expect(fieldText(obx!, 5)).toBe(a);
        expect(fieldText(obx!, 11)).toBe('F');
        expect(fieldText(z!, 1)).toBe(b);
      }),
      { numRuns: runs(2000) },
    );
  });
});
