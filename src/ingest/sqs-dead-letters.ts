/**
 * The SQS dead-letter queue, for operators: list what the consumer parked there (poison messages, each with the
 * `scribe-bridge-reason` code attribute `SqsConsumer` set) and move chosen messages back to the intake queue.
 *
 * Listing never consumes: messages are received with a short visibility timeout to page through the queue, then
 * made visible again at once (ChangeMessageVisibility 0). A replay sends the exact body to the intake queue
 * first and deletes it from the DLQ after, so a crash in between duplicates rather than loses it (the ledger
 * acknowledges a duplicate without delivering it twice). Listings carry ids, codes, sizes, hashes and times —
 * never the body, which may carry PHI.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { isFifoQueue } from '../config/resolve.ts';
import { sha256Hex } from '../contract/artifacts.ts';
import { ScribeError } from '../errors.ts';
import { awsRequestHandler } from './aws-http.ts';
import { fifoSendAttributes, REASON_ATTRIBUTE } from './sqs.ts';

/** Set on a replayed message: the DLQ message id it came from (the consumer ignores attributes). */
export const REPLAY_OF_ATTRIBUTE = 'scribe-bridge-replay-of';
const SOURCE_ATTRIBUTE = 'scribe-bridge-source-message-id';
/** Seconds a listed message stays hidden while the listing pages on (then it is made visible at once). */
const PEEK_VISIBILITY_SECONDS = 30;

export interface SqsDeadLetterOptions {
  readonly deadLetterQueueUrl: string;
  /** The intake queue replays go back to. */
  readonly queueUrl: string;
  readonly region: string;
  readonly endpoint?: string;
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/** One parked message, without its body. */
export interface SqsDeadLetter {
  readonly messageId: string;
  /** The reason code the consumer recorded (`SIGNATURE_INVALID`, `ENVELOPE_JSON`, …); `unknown` without one. */
  readonly code: string;
  /** The id the message had on the intake queue. */
  readonly sourceMessageId?: string;
  /** When it was put in the DLQ. */
  readonly deadLetteredAt?: string;
  readonly receiveCount?: number;
  readonly bodyBytes: number;
  readonly bodySha256: string;
  /** What the body looks like (without parsing it further): a claim-check pointer, an envelope, or other. */
  readonly kind: 'pointer' | 'envelope' | 'other';
}

export interface SqsReplaySelection {
  readonly messageIds?: readonly string[];
  /** Every message with this reason code. */
  readonly code?: string;
  /** Every message. */
  readonly all?: boolean;
}

export interface SqsReplayed {
  readonly messageId: string;
  readonly code: string;
  readonly bodySha256: string;
  /** Its id on the intake queue. */
  readonly newMessageId: string;
}

export class SqsDeadLetterQueue {
  readonly #o: SqsDeadLetterOptions;
  readonly #sqs: SQSClient;

  constructor(options: SqsDeadLetterOptions) {
    this.#o = options;
    this.#sqs = new SQSClient({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: { ...options.credentials } } : {}),
      requestHandler: awsRequestHandler(),
    });
  }

  get url(): string {
    return this.#o.deadLetterQueueUrl;
  }

  /** Every parked message (up to `limit`), oldest first; the queue is left as it was. */
  async list(limit = 1000): Promise<SqsDeadLetter[]> {
    const messages = await this.#receiveAll(limit);
    await this.#release(messages);
    return messages
      .map(describe)
      .sort((a, b) => (a.deadLetteredAt ?? '').localeCompare(b.deadLetteredAt ?? ''));
  }

  /**
   * Moves the selected messages back to the intake queue (the exact body), then deletes them from the DLQ; the
   * others are left as they were. Ids not found in the DLQ are returned in `notFound`.
   */
  async replay(
    selection: SqsReplaySelection,
    limit = 1000,
  ): Promise<{ replayed: SqsReplayed[]; notFound: string[] }> {
    const ids = new Set(selection.messageIds ?? []);
    const messages = await this.#receiveAll(limit);
    const chosen = messages.filter(
      (m) =>
        selection.all === true ||
        ids.has(m.MessageId ?? '') ||
        (selection.code !== undefined && codeOf(m) === selection.code),
    );
    await this.#release(messages.filter((m) => !chosen.includes(m)));
    const replayed: SqsReplayed[] = [];
    try {
      for (const m of chosen) {
        const sent = await this.#sqs.send(
          new SendMessageCommand({
            QueueUrl: this.#o.queueUrl,
            MessageBody: m.Body ?? '',
            MessageAttributes: {
              [REPLAY_OF_ATTRIBUTE]: { DataType: 'String', StringValue: m.MessageId ?? '' },
            },
            ...(isFifoQueue(this.#o.queueUrl) ? fifoSendAttributes(m, `replay-${m.MessageId ?? ''}`) : {}),
          }),
        );
        await this.#sqs.send(
          new DeleteMessageCommand({ QueueUrl: this.#o.deadLetterQueueUrl, ReceiptHandle: m.ReceiptHandle }),
        );
        replayed.push({
          messageId: m.MessageId ?? '',
          code: codeOf(m),
          bodySha256: sha256Hex(m.Body ?? ''),
          newMessageId: sent.MessageId ?? '',
        });
      }
    } catch (e) {
      await this.#release(chosen.filter((m) => !replayed.some((r) => r.messageId === m.MessageId))).catch(
        () => undefined,
      );
      throw unavailable(e, this.#o.deadLetterQueueUrl);
    }
    const found = new Set(messages.map((m) => m.MessageId));
    return { replayed, notFound: [...ids].filter((id) => !found.has(id)) };
  }

  destroy(): void {
    this.#sqs.destroy();
  }

  /** Pages through the queue, each message hidden briefly so the next page shows others. */
  async #receiveAll(limit: number): Promise<Message[]> {
    const byId = new Map<string, Message>();
    try {
      for (let empty = 0; byId.size < limit && empty < 2; ) {
        const r = await this.#sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: this.#o.deadLetterQueueUrl,
            MaxNumberOfMessages: Math.min(10, limit - byId.size),
            VisibilityTimeout: PEEK_VISIBILITY_SECONDS,
            // Short polls sample the queue; the second empty answer waits a moment to be sure it is empty.
            WaitTimeSeconds: empty === 0 ? 0 : 1,
            MessageAttributeNames: ['All'],
            MessageSystemAttributeNames: ['SentTimestamp', 'ApproximateReceiveCount', 'MessageGroupId'],
          }),
        );
        const got = r.Messages ?? [];
        if (got.length === 0) empty++;
        else empty = 0;
        for (const m of got) if (m.MessageId) byId.set(m.MessageId, m);
      }
    } catch (e) {
      await this.#release([...byId.values()]).catch(() => undefined);
      throw unavailable(e, this.#o.deadLetterQueueUrl);
    }
    return [...byId.values()];
  }

  /** Makes received messages visible again now. */
  async #release(messages: readonly Message[]): Promise<void> {
    for (let i = 0; i < messages.length; i += 10) {
      const batch = messages.slice(i, i + 10);
      await this.#sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.#o.deadLetterQueueUrl,
          Entries: batch.map((m, k) => ({
            Id: String(k),
            ReceiptHandle: m.ReceiptHandle,
            VisibilityTimeout: 0,
          })),
        }),
      );
    }
  }
}

function codeOf(m: Message): string {
  return m.MessageAttributes?.[REASON_ATTRIBUTE]?.StringValue ?? 'unknown';
}

function describe(m: Message): SqsDeadLetter {
  const body = m.Body ?? '';
  const sent = Number(m.Attributes?.['SentTimestamp']);
  const count = Number(m.Attributes?.['ApproximateReceiveCount']);
  const source = m.MessageAttributes?.[SOURCE_ATTRIBUTE]?.StringValue;
  return {
    messageId: m.MessageId ?? '',
    code: codeOf(m),
    ...(source ? { sourceMessageId: source } : {}),
    ...(Number.isFinite(sent) && sent > 0 ? { deadLetteredAt: new Date(sent).toISOString() } : {}),
    ...(Number.isFinite(count) ? { receiveCount: count } : {}),
    bodyBytes: Buffer.byteLength(body),
    bodySha256: sha256Hex(body),
    kind: body.includes('"signed-note-pointer"')
      ? 'pointer'
      : body.includes('"signed-note"')
        ? 'envelope'
        : 'other',
  };
}

function unavailable(e: unknown, url: string): ScribeError {
  if (e instanceof ScribeError) return e;
  const name = (e as { name?: string }).name ?? 'Error';
  return new ScribeError('DEAD_LETTER_QUEUE_UNAVAILABLE', `the dead-letter queue did not answer (${name})`, {
    where: url,
  });
}
