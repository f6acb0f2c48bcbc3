import { describe, expect, it } from 'vitest';
import { ScribeError } from '../errors.ts';
import { backoffCeilingMs, backoffDelayMs, retryBudget } from './backoff.ts';

const policy = { initialDelayMs: 100, maxDelayMs: 1000 };

describe('backoff with full jitter', () => {
  it('doubles the ceiling per retry up to maxDelayMs', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffCeilingMs(n, policy))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(backoffCeilingMs(10_000, policy)).toBe(1000);
    expect(backoffCeilingMs(10_000, { initialDelayMs: 0, maxDelayMs: 0 })).toBe(0);
  });

  it('draws uniformly between 0 and the ceiling', () => {
    expect(backoffDelayMs(2, policy, () => 0)).toBe(0);
    expect(backoffDelayMs(2, policy, () => 0.25)).toBe(100);
    expect(backoffDelayMs(2, policy, () => 0.999_999)).toBe(400);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelayMs(3, policy);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(800);
    }
  });
});

describe('retryBudget', () => {
  it('counts attempts and the worst-case total wait', () => {
    const b = retryBudget({ ...policy, maxAttempts: 5 });
    // waits before attempts 2..5: ceilings 100 + 200 + 400 + 800
    expect(b.maxTotalDelayMs).toBe(1500);
    expect(b.remaining(0)).toBe(5);
    expect(b.remaining(5)).toBe(0);
    expect(b.allows(4)).toBe(true);
    expect(b.allows(5)).toBe(false);
    expect(retryBudget({ ...policy, maxAttempts: 1 }).maxTotalDelayMs).toBe(0);
  });

  it('stops at maxElapsedMs', () => {
    const b = retryBudget({ ...policy, maxAttempts: 100, maxElapsedMs: 60_000 });
    expect(b.allows(3, 59_999)).toBe(true);
    expect(b.allows(3, 60_000)).toBe(false);
  });

  it('refuses a policy that cannot work, naming every problem', () => {
    const err = (() => {
      try {
        retryBudget({ maxAttempts: 0, initialDelayMs: 10, maxDelayMs: 5 });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ScribeError);
    expect((err as ScribeError).detail).toMatch(/maxAttempts.*maxDelayMs/);
  });
});
