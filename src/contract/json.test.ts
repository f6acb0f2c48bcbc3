import { describe, expect, it } from 'vitest';
import type { ScribeError } from '../errors.ts';
import { formatPath, parseStrictJson } from './json.ts';

const fail = (text: string) => {
  try {
    parseStrictJson(text, { source: 'x.json' });
  } catch (e) {
    return e as ScribeError;
  }
  throw new Error('expected a failure');
};

describe('parseStrictJson', () => {
  it('locates any path by line and column', () => {
    const j = parseStrictJson('{\n  "a": {\n    "b": [1, {"c": 2}]\n  }\n}', { source: 'x.json' });
    expect(j.locate(['a', 'b', 1, 'c'])).toBe('x.json:3:20');
    expect(j.locate(['a', 'missing'])).toBe('x.json:2:8');
  });

  it('rejects duplicate members at any depth, with where', () => {
    const e = fail('{"a": [{"b": 1, "b": 2}]}');
    expect(e.code).toBe('ENVELOPE_DUPLICATE_MEMBER');
    expect(e.where).toBe('$.a[0].b (x.json:1:17)');
  });

  it('rejects syntax errors with a location and unpaired surrogates', () => {
    expect(fail('{"a": 1,}').code).toBe('ENVELOPE_JSON');
    expect(fail('{"a": 1,}').where).toMatch(/^x\.json:1:\d+$/);
    expect(fail('{"a": "\\ud800"}').code).toBe('ENVELOPE_JSON');
    expect(fail('{"a": /* c */ 1}').code).toBe('ENVELOPE_JSON');
  });

  it('formats odd member names safely', () => {
    expect(formatPath(['a', 0, 'b c', '$ok'])).toBe('$.a[0]["b c"].$ok');
  });
});
