import { describe, expect, it } from 'vitest';
import { causeSummary, ScribeError, toScribeError } from './errors.ts';

describe('causeSummary (the log line of an unexpected error)', () => {
  it('names the class, the system or SQLSTATE code and the first frame inside src/ — never the message', () => {
    const canary = 'CANARY-Okafor-MRN-000417';
    const pgError = Object.assign(new Error(`value too long: "${canary}"`), { code: '22001' });
    const summary = causeSummary(toScribeError(pgError))!;
    expect(summary).toMatch(/^Error 22001 at src\/errors\.test\.ts:\d+$/);
    expect(summary).not.toContain(canary);
    const refused = Object.assign(new TypeError('fetch failed'), { code: 'ECONNREFUSED' });
    expect(causeSummary(refused)).toMatch(/^TypeError ECONNREFUSED at src\//);
    // A code that is not a code (free text) is left out; a ScribeError of our own has no cause to summarise.
    expect(causeSummary(Object.assign(new Error('x'), { code: canary.toLowerCase() }))).toMatch(/^Error at /);
    expect(causeSummary(new ScribeError('NOT_FOUND', 'no such note'))).toBeUndefined();
  });

  it('answers a refusal that is retried this time as 503, whatever the code usually answers', () => {
    expect(new ScribeError('MAPPING_PRIOR_REQUIRED', 'x').status).toBe(422);
    expect(new ScribeError('MAPPING_PRIOR_REQUIRED', 'x', { disposition: 'retry' }).status).toBe(503);
  });
});
