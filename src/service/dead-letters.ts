/**
 * Dead-letter inspection and replay for operators, shared by `GET /v1/dead-letters`, `POST
 * /v1/dead-letters/replay` and `scribe-bridge dead-letters list|replay`: the ledger's parked deliveries and
 * revisions (src/ledger/dead-letters.ts) and the SQS dead-letter queue's poison messages
 * (src/ingest/sqs-dead-letters.ts). Ids, codes and times only.
 */
import { z } from 'zod';
import type { Config } from '../config/index.ts';
import { ScribeError, toScribeError } from '../errors.ts';
import { type SqsDeadLetter, SqsDeadLetterQueue, type SqsReplayed } from '../ingest/sqs-dead-letters.ts';
import type { LedgerDeadLetters, ReplayResult } from '../ledger/dead-letters.ts';
import type { Ledger } from '../ledger/ledger.ts';

/** The SQS dead-letter queue the config names, or undefined when it names none. */
export function deadLetterQueueFor(
  config: Config,
  credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string },
): SqsDeadLetterQueue | undefined {
  const sqs = config.intake.sqs;
  if (!sqs?.deadLetterQueueUrl) return undefined;
  return new SqsDeadLetterQueue({
    deadLetterQueueUrl: sqs.deadLetterQueueUrl,
    queueUrl: sqs.queueUrl,
    region: sqs.region,
    ...(sqs.endpoint ? { endpoint: sqs.endpoint } : {}),
    ...(credentials ? { credentials } : {}),
  });
}

export interface DeadLetterListing {
  readonly ledger: LedgerDeadLetters;
  /** Absent when no DLQ is configured, or for a token limited to tenants (poison messages have no tenant). */
  readonly sqs?:
    | { readonly queueUrl: string; readonly messages: readonly SqsDeadLetter[] }
    | { readonly queueUrl: string; readonly error: string };
}

export async function listDeadLetters(
  ledger: Ledger,
  dlq: SqsDeadLetterQueue | undefined,
  filter: { tenants?: readonly string[]; destination?: string; limit?: number },
): Promise<DeadLetterListing> {
  const listed = await ledger.deadLetters(filter);
  if (!dlq || filter.tenants) return { ledger: listed };
  try {
    return { ledger: listed, sqs: { queueUrl: dlq.url, messages: await dlq.list(filter.limit) } };
  } catch (e) {
    return { ledger: listed, sqs: { queueUrl: dlq.url, error: toScribeError(e).code } };
  }
}

/** A replay request as the HTTP body (and the command line) gives it. */
export const ReplayRequestSchema = z
  .object({
    deliveryIds: z.array(z.number().int().positive()).optional(),
    revisionIds: z.array(z.number().int().positive()).optional(),
    sqsMessageIds: z.array(z.string().min(1).max(128)).optional(),
    /** Every SQS dead letter with this reason code. */
    sqsCode: z
      .string()
      .regex(/^[A-Z][A-Z0-9_]*$/)
      .optional(),
    /** Every SQS dead letter. */
    sqsAll: z.boolean().optional(),
  })
  .strict()
  .refine(
    (r) =>
      (r.deliveryIds?.length ?? 0) + (r.revisionIds?.length ?? 0) + (r.sqsMessageIds?.length ?? 0) > 0 ||
      r.sqsCode !== undefined ||
      r.sqsAll === true,
    { message: 'name at least one item to replay' },
  );
export type ReplayRequestBody = z.infer<typeof ReplayRequestSchema>;

export function parseReplayRequest(body: unknown): ReplayRequestBody {
  const r = ReplayRequestSchema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new ScribeError('DEAD_LETTER_REQUEST_INVALID', `the replay request is invalid: ${issue.message}`, {
      where: issue.path.length ? issue.path.join('.') : 'body',
    });
  }
  return r.data;
}

export interface DeadLetterReplay extends ReplayResult {
  readonly sqs?: { readonly replayed: readonly SqsReplayed[]; readonly notFound: readonly string[] };
}

/**
 * Replays the ledger items (all or none, each audited in the same transaction), then the SQS messages (each
 * moved back to the intake queue and audited). A token limited to tenants may replay only its tenants' ledger
 * items and no SQS messages.
 */
export async function replayDeadLetters(
  ledger: Ledger,
  dlq: SqsDeadLetterQueue | undefined,
  req: ReplayRequestBody,
  who: { readonly by: string; readonly tenants?: readonly string[] },
): Promise<DeadLetterReplay> {
  const wantsSqs = (req.sqsMessageIds?.length ?? 0) > 0 || req.sqsCode !== undefined || req.sqsAll === true;
  if (wantsSqs && who.tenants)
    throw new ScribeError('FORBIDDEN', 'a token limited to tenants may not replay SQS dead letters', {
      where: 'sqsMessageIds',
    });
  if (wantsSqs && !dlq)
    throw new ScribeError('REPLAY_REFUSED', 'no SQS dead-letter queue is configured', {
      where: 'intake.sqs.deadLetterQueueUrl',
    });
  const ledgerWork = (req.deliveryIds?.length ?? 0) + (req.revisionIds?.length ?? 0) > 0;
  const result: ReplayResult = ledgerWork
    ? await ledger.replayDeadLetters({
        ...(req.deliveryIds ? { deliveryIds: req.deliveryIds } : {}),
        ...(req.revisionIds ? { revisionIds: req.revisionIds } : {}),
        ...(who.tenants ? { tenants: who.tenants } : {}),
        by: who.by,
      })
    : { deliveries: [], revisions: [] };
  if (!wantsSqs || !dlq) return result;
  const sqs = await dlq.replay({
    ...(req.sqsMessageIds ? { messageIds: req.sqsMessageIds } : {}),
    ...(req.sqsCode ? { code: req.sqsCode } : {}),
    ...(req.sqsAll ? { all: true } : {}),
  });
  if (sqs.replayed.length > 0)
    await ledger.audit(
      sqs.replayed.map((m) => ({
        actor: 'scribe-bridge',
        action: 'dead-letter.sqs-replayed',
        details: {
          messageId: m.messageId,
          newMessageId: m.newMessageId,
          code: m.code,
          bodySha256: m.bodySha256,
          by: who.by,
        },
      })),
    );
  return { ...result, sqs };
}
