/**
 * Retry timing shared by every transport: exponential backoff with full jitter (each wait is uniform between
 * zero and the exponential ceiling, so many workers retrying the same EHR spread out instead of arriving in
 * waves), and a retry budget that bounds how long a delivery keeps trying.
 */
import { ScribeError } from '../errors.ts';

/** The two numbers that shape the waits. */
export interface BackoffPolicy {
  /** Ceiling of the first wait, ms. */
  readonly initialDelayMs: number;
  /** No wait exceeds this, ms. */
  readonly maxDelayMs: number;
}

/** A backoff policy plus how many attempts (the first one included) a delivery may make. */
export interface RetryPolicy extends BackoffPolicy {
  /** Attempts in all, ≥ 1 (1 means no retry). */
  readonly maxAttempts: number;
  /** Optional wall-clock cap from the first attempt, ms; no attempt starts after it. */
  readonly maxElapsedMs?: number;
}

/** A source of uniform numbers in [0, 1), injectable so tests are deterministic. */
export type RandomSource = () => number;

// Past 2^52 the ceiling is maxDelayMs anyway; capping the exponent keeps the product finite.
const MAX_EXPONENT = 52;

/** The upper bound of the wait before retry `retry` (0 = the wait before the second attempt), ms. */
export function backoffCeilingMs(retry: number, policy: BackoffPolicy): number {
  const exp = Math.min(Math.max(0, Math.floor(retry)), MAX_EXPONENT);
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** exp);
}

/**
 * The wait before retry `retry` (0-based): `random(0, min(maxDelayMs, initialDelayMs · 2^retry))`, whole ms.
 */
export function backoffDelayMs(
  retry: number,
  policy: BackoffPolicy,
  random: RandomSource = Math.random,
): number {
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(r * backoffCeilingMs(retry, policy));
}

/** What a retry policy allows, computed once per policy. */
export interface RetryBudget {
  readonly maxAttempts: number;
  /**
   * The longest total wait the policy can produce (every wait at its ceiling), ms — what "the retry
   * allowance" of a destination is, to compare with the outages it must ride out.
   */
  readonly maxTotalDelayMs: number;
  /** Attempts still allowed after `attemptsMade`. */
  remaining(attemptsMade: number): number;
  /** Whether another attempt may start, given attempts made and ms elapsed since the first. */
  allows(attemptsMade: number, elapsedMs?: number): boolean;
}

/** Checks a retry policy and returns its budget. Throws ScribeError on a policy that cannot work. */
export function retryBudget(policy: RetryPolicy): RetryBudget {
  checkPolicy(policy);
  let maxTotalDelayMs = 0;
  for (let retry = 0; retry < policy.maxAttempts - 1; retry++)
    maxTotalDelayMs += backoffCeilingMs(retry, policy);
  const remaining = (attemptsMade: number): number => Math.max(0, policy.maxAttempts - attemptsMade);
  return {
    maxAttempts: policy.maxAttempts,
    maxTotalDelayMs,
    remaining,
    allows: (attemptsMade, elapsedMs = 0) =>
      remaining(attemptsMade) > 0 && (policy.maxElapsedMs === undefined || elapsedMs < policy.maxElapsedMs),
  };
}

function checkPolicy(p: RetryPolicy): void {
  const problems: string[] = [];
  if (!Number.isInteger(p.maxAttempts) || p.maxAttempts < 1)
    problems.push('maxAttempts must be an integer ≥ 1');
  if (!(p.initialDelayMs >= 0)) problems.push('initialDelayMs must be ≥ 0');
  if (!(p.maxDelayMs >= p.initialDelayMs)) problems.push('maxDelayMs must be ≥ initialDelayMs');
  if (p.maxElapsedMs !== undefined && !(p.maxElapsedMs > 0)) problems.push('maxElapsedMs must be > 0');
  if (problems.length > 0) {
    // The config loader validates retry policies first; reaching this is a defect.
    throw new ScribeError('INTERNAL', `invalid retry policy: ${problems.join('; ')}`, { where: 'retry' });
  }
}
