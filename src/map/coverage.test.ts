/** Promise: an id counts as carried only as a whole token, never inside a digest, a longer id or base64 data. */
import { describe, expect, it } from 'vitest';
import { carriesId } from './coverage.ts';

describe('carriesId', () => {
  it('finds whole tokens only', () => {
    expect(carriesId('"segmentId":"b3"', 'b3')).toBe(true);
    expect(carriesId('ZSE|1|s1|ai-verbatim|PLAN|b3^12.4^15.9^PATIENT_0', 'b3')).toBe(true);
    expect(carriesId('"digest":"4fd6a02eb3d8"', 'b3')).toBe(false);
    expect(carriesId('"segmentId":"b31"', 'b3')).toBe(false);
    expect(carriesId('seg-b3-x', 'b3')).toBe(false);
    expect(carriesId('', 'b3')).toBe(false);
    expect(carriesId('b3', '')).toBe(false);
  });
});
