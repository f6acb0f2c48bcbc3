/**
 * One delivery of one rendering to a FHIR destination, with retries (the FHIR twin of mllp-deliver.ts):
 *
 * - `delivered` ends it;
 * - `rejected` ends it after that one send: the bytes are wrong for this EHR, resending cannot help;
 * - `retry` waits — the backoff delay, or the server's Retry-After if longer — and sends again, up to
 *   `maxAttempts`, then ends `failed`;
 * - `ambiguous` waits one backoff delay (so a slow EHR can finish what it was doing), then reads back:
 *   found → `delivered`; not found → sends again, which is safe because every write is conditional or by id;
 *   the read-back itself failing → ends `ambiguous`, for the reconciler to settle later.
 *
 * Every attempt (sends and read-backs) is recorded for the ledger. It waits in-process; a worker that would
 * rather reschedule a long Retry-After than hold a slot should drive `send`/`readBack` itself.
 */
import { ScribeError } from '../errors.ts';
import type { Rendering } from '../map/engine.ts';
import { backoffDelayMs, type RandomSource, type RetryPolicy, retryBudget } from './backoff.ts';
import type { FhirOutcome, FhirReason, FhirResult } from './fhir-types.ts';

/** What deliverFhir needs of a destination (the FhirDestination, or a stub in tests). */
export interface FhirSender {
  readonly id: string;
  send(rendering: Rendering): Promise<FhirResult>;
  readBack(rendering: Rendering): Promise<FhirResult | undefined>;
}

/** The retry policy plus injectable clock pieces (tests make them deterministic). */
export interface DeliverFhirOptions extends RetryPolicy {
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: RandomSource;
}

/** Where the delivery ended (the delivery states of the ledger, minus pending/sending). */
export type FhirDeliveryState = 'delivered' | 'rejected' | 'failed' | 'ambiguous';

/** One send or read-back, as the ledger records it. */
export interface FhirAttempt {
  readonly kind: 'send' | 'read-back';
  /** ISO 8601 start. */
  readonly at: string;
  /** For a read-back that found nothing: `not-found`. */
  readonly outcome: FhirOutcome | 'not-found';
  readonly reason?: FhirReason;
  readonly httpStatus?: number;
  readonly issueCodes?: readonly string[];
  readonly ms: number;
  /** The wait before this attempt, whole ms (0 for the first). */
  readonly delayBeforeMs: number;
}

export interface FhirDelivery {
  readonly state: FhirDeliveryState;
  readonly attempts: readonly FhirAttempt[];
  /** The last send's (or the finding read-back's) full result: receipt, sent bytes and their hash. */
  readonly last: FhirResult;
}

const timerSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends `rendering` until the answer says stop or the retry budget is spent. */
export async function deliverFhir(
  dest: FhirSender,
  rendering: Rendering,
  options: DeliverFhirOptions,
): Promise<FhirDelivery> {
  const budget = retryBudget(options);
  const sleep = options.sleep ?? timerSleep;
  const random = options.random ?? Math.random;
  const attempts: FhirAttempt[] = [];
  const t0 = performance.now();
  let delayBeforeMs = 0;
  let sends = 0;
  let last: FhirResult | undefined;
  for (;;) {
    const at = new Date().toISOString();
    const result = await dest.send(rendering);
    sends++;
    last = result;
    attempts.push(attemptOf('send', at, result, delayBeforeMs));
    if (result.outcome === 'delivered' || result.outcome === 'rejected') {
      return { state: result.outcome, attempts, last };
    }
    delayBeforeMs = Math.max(backoffDelayMs(sends - 1, options, random), result.retryAfterMs ?? 0);
    if (!budget.allows(sends, performance.now() - t0 + delayBeforeMs)) {
      return { state: result.outcome === 'ambiguous' ? 'ambiguous' : 'failed', attempts, last };
    }
    await sleep(delayBeforeMs);
    if (result.outcome === 'ambiguous') {
      const rbAt = new Date().toISOString();
      const rb = await dest.readBack(rendering);
      attempts.push(
        rb
          ? attemptOf('read-back', rbAt, rb, delayBeforeMs)
          : { kind: 'read-back', at: rbAt, outcome: 'not-found', ms: 0, delayBeforeMs },
      );
      // Found: keep the sent bytes of the ambiguous send (what the EHR holds), with the read-back's receipt.
      if (rb?.outcome === 'delivered')
        return {
          state: 'delivered',
          attempts,
          last: { ...rb, sentBody: last.sentBody, sentSha256: last.sentSha256 },
        };
      if (rb) return { state: 'ambiguous', attempts, last };
      delayBeforeMs = 0;
    }
  }
}

function attemptOf(kind: FhirAttempt['kind'], at: string, r: FhirResult, delayBeforeMs: number): FhirAttempt {
  return {
    kind,
    at,
    outcome: r.outcome,
    reason: r.reason,
    ...(r.httpStatus === undefined ? {} : { httpStatus: r.httpStatus }),
    ...(r.issueCodes ? { issueCodes: r.issueCodes } : {}),
    ms: r.ms,
    delayBeforeMs,
  };
}

/**
 * The ScribeError that describes a delivery that did not end `delivered` (for the delivery row and the status
 * API); undefined when it did. Carries codes, types and identifier systems only.
 */
export function fhirDeliveryError(destination: string, d: FhirDelivery): ScribeError | undefined {
  const { last } = d;
  const where = `destination ${destination}`;
  const what = last.detail ?? last.reason;
  switch (d.state) {
    case 'delivered':
      return undefined;
    case 'rejected':
      return new ScribeError('FHIR_REJECTED', `the EHR refused the write (${what})`, {
        where,
        disposition: 'reject',
        hint:
          last.reason === 'reference-unresolved'
            ? 'Register the patient, encounter or clinician in the EHR with that identifier (or fix the mapping), then replay.'
            : last.reason === 'auth-failed' || last.httpStatus === 401 || last.httpStatus === 403
              ? "Check the destination's credentials, scopes and client registration, then replay."
              : 'Read the OperationOutcome stored with the attempt, fix the mapping or the note, then replay. It is not resent automatically.',
      });
    case 'failed':
      return new ScribeError(
        'DELIVERY_FAILED',
        `no acceptance after ${d.attempts.length} attempts (last: ${what})`,
        {
          where,
        },
      );
    case 'ambiguous':
      return new ScribeError('FHIR_NO_ANSWER', `sent, but the outcome is unknown (${what})`, {
        where,
        disposition: 'ambiguous',
        hint: 'The EHR may have stored it; the reconciler reads it back by identifier before any resend.',
      });
  }
}
