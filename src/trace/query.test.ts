import { describe, expect, it } from 'vitest';
import { ScribeError } from '../errors.ts';
import { includeTranscript, parseTraceQuery, traceQueryParams } from './query.ts';

describe('trace queries', () => {
  it('parses every form and gives it back as parameters', () => {
    const forms: Record<string, string>[] = [
      { tenant: 'riverside-clinic', noteId: 'enc-1' },
      { tenant: 'riverside-clinic', noteId: 'enc-1', revision: '3' },
      { destination: 'ehr-fhir', identifier: 'urn:x:note|enc-1-r1' },
      { destination: 'ehr-fhir', resourceId: 'Provenance/0b8e-11' },
      { destination: 'ehr-mdm', documentNumber: 'ENC-1' },
      { destination: 'ehr-mdm', controlId: 'ABC123' },
    ];
    for (const f of forms) expect(traceQueryParams(parseTraceQuery(f))).toEqual(f);
    expect(parseTraceQuery({ destination: 'd', identifier: 'http://a|b|c' })).toEqual({
      kind: 'identifier',
      destination: 'd',
      system: 'http://a',
      value: 'b|c',
    });
  });

  it('refuses anything else with USAGE, saying what to send', () => {
    const bad: Record<string, unknown>[] = [
      {},
      { tenant: 't' },
      { noteId: 'n' },
      { tenant: 't', noteId: 'n', revision: '0' },
      { tenant: 't', noteId: 'n', revision: '1.5' },
      { tenant: 't', noteId: 'n', destination: 'd' },
      { destination: 'd' },
      { destination: 'd', controlId: 'a', documentNumber: 'b' },
      { destination: 'd', identifier: '|v' },
      { destination: 'd', identifier: 's|' },
      { destination: 'd', resourceId: 'provenance/1' },
      { destination: 'd', resourceId: 'Provenance' },
      { revision: '1', destination: 'd', controlId: 'a' },
      { tenant: ['a', 'b'], noteId: 'n' },
      { tenant: '', noteId: 'n' },
      { color: 'red' },
    ];
    for (const b of bad) {
      const e = (() => {
        try {
          parseTraceQuery(b);
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(e, JSON.stringify(b)).toBeInstanceOf(ScribeError);
      expect((e as ScribeError).code).toBe('USAGE');
      expect((e as ScribeError).message).toMatch(/bad trace query/);
    }
  });

  it('include=transcript and nothing else', () => {
    expect(includeTranscript({})).toBe(false);
    expect(includeTranscript({ include: 'transcript' })).toBe(true);
    expect(() => includeTranscript({ include: 'all' })).toThrow(/include/);
  });
});
