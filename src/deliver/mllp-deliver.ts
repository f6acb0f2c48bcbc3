/**
 * One delivery of one MDM message over MLLP, applying the ACK table with retries:
 *
 * - `delivered` (AA/CA by default) ends it after that send;
 * - `rejected` (AE/CR) ends it after that one send: the message itself is wrong, resending cannot help;
 * - `retry` (AR/CE, or a connection that never carried the bytes) waits with backoff and tries again, up to
 *   `maxAttempts`, then ends `failed`;
 * - `ambiguous` (written, no usable answer) ends it at once: the service resends later with the same MSH-10
 *   so the receiver can deduplicate, and never blindly from here.
 *
 * Every attempt is recorded for the ledger.
 */
import { ScribeError } from '../errors.ts';
import { backoffDelayMs, type RandomSource, type RetryPolicy, retryBudget } from './backoff.ts';
import type { AckResult, MllpSender, SendOutcome, SendReason } from './mllp-types.ts';

/** The retry policy plus injectable clock pieces (tests make them deterministic). */
export interface DeliverMllpOptions extends RetryPolicy {
  /** Waits between attempts; defaults to a timer. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Jitter source; defaults to Math.random. */
  readonly random?: RandomSource;
}

/** Where the delivery ended (the delivery states of the ledger, minus pending/sending). */
export type MllpDeliveryState = 'delivered' | 'rejected' | 'failed' | 'ambiguous';

/** One send, as the ledger records it. */
export interface MllpAttempt {
  /** ISO 8601 start of the send. */
  readonly at: string;
  readonly outcome: SendOutcome;
  readonly reason: SendReason;
  /** MSA-1 when an ACK for our MSH-10 came back. */
  readonly ackCode?: string;
  /** Duration of the send (connect + write + wait), whole ms. */
  readonly ms: number;
  /** The backoff wait before this attempt, whole ms (0 for the first). */
  readonly delayBeforeMs: number;
}

/** The result of {@link deliverMllp}. */
export interface MllpDelivery {
  readonly state: MllpDeliveryState;
  readonly controlId: string;
  readonly attempts: readonly MllpAttempt[];
  /** The last send's full result (raw ACK, ERR, timings) for the ledger's receipt. */
  readonly last: AckResult;
}

const timerSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends `message` through `client` until the ACK table says stop or the retry budget is spent. */
export async function deliverMllp(
  client: MllpSender,
  message: string,
  controlId: string,
  options: DeliverMllpOptions,
): Promise<MllpDelivery> {
  const budget = retryBudget(options);
  const sleep = options.sleep ?? timerSleep;
  const random = options.random ?? Math.random;
  const attempts: MllpAttempt[] = [];
  const t0 = performance.now();
  let delayBeforeMs = 0;
  for (;;) {
    const result = await client.send(message, controlId);
    attempts.push({
      at: result.timings.startedAt,
      outcome: result.outcome,
      reason: result.reason,
      ...(result.ackCode === undefined ? {} : { ackCode: result.ackCode }),
      ms: Math.round(result.timings.totalMs),
      delayBeforeMs,
    });
    if (result.outcome !== 'retry') {
      return { state: result.outcome, controlId, attempts, last: result };
    }
    delayBeforeMs = backoffDelayMs(attempts.length - 1, options, random);
    if (!budget.allows(attempts.length, performance.now() - t0 + delayBeforeMs)) {
      return { state: 'failed', controlId, attempts, last: result };
    }
    await sleep(delayBeforeMs);
  }
}

/**
 * The ScribeError that describes a delivery that did not end `delivered` (for the delivery row and the
 * status API); undefined when it did. Carries ids and codes only.
 */
export function mllpDeliveryError(d: MllpDelivery): ScribeError | undefined {
  const { last } = d;
  const where = `MSH-10 ${d.controlId}`;
  switch (d.state) {
    case 'delivered':
      return undefined;
    case 'rejected': {
      const err = last.errors?.[0]?.hl7ErrorCode?.split('^')[0];
      return new ScribeError(
        'MLLP_REJECTED',
        `the receiver answered ${last.ackCode}${err ? ` (ERR-3 ${err})` : ''}`,
        {
          where,
          disposition: 'reject',
          hint: 'The EHR refused this message; read the ERR segment of the stored ACK, fix the mapping or the note, and replay. It is not resent automatically.',
        },
      );
    }
    case 'failed':
      return new ScribeError(
        'DELIVERY_FAILED',
        `no acceptance after ${d.attempts.length} attempts (last: ${last.ackCode ?? last.reason}${last.errorCode ? ` ${last.errorCode}` : ''})`,
        {
          where,
          disposition: 'dead-letter',
          hint: 'The receiver kept answering AR/CE or could not be reached; check the interface engine, then replay.',
        },
      );
    case 'ambiguous':
      return new ScribeError('MLLP_NO_ACK', `sent, but no usable ACK came back (${last.reason})`, {
        where,
        disposition: 'ambiguous',
        hint: 'The EHR may have stored it; the same MSH-10 is resent later so the EHR can deduplicate.',
      });
  }
}
