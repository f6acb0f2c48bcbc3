import { describe, expect, it } from 'vitest';
import { ScribeError } from '../errors.ts';
import { escapeHl7, parseDelimiters, serializeHl7 } from './hl7.ts';

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
