/**
 * The review-queue consumer: long polling, batches of up to 10, a visibility heartbeat while a message is being
 * verified and recorded, a per-message outcome so one bad message never holds up the others, and claim-check
 * pointers resolved from S3.
 *
 * Acknowledgement contract (README § Queue):
 * - The message is deleted only after the handler resolves — i.e. after the ledger transaction that records the
 *   note has committed (or found it a duplicate or a conflict, which are recorded and audited too).
 * - A message the handler refuses permanently (a ScribeError with disposition `reject`: unparseable, schema,
 *   signature, integrity, lifecycle) is poison: on its FIRST receive it is sent to the dead-letter queue with a
 *   `scribe-bridge-reason` attribute holding the error code (never PHI), then deleted.
 * - A transient failure (`retry`) leaves the message on the queue: its visibility is set to a backoff, so it
 *   comes back later; SQS's own redrive policy is the backstop.
 * - Anything else (`dead-letter`, `ambiguous`, an unexpected error) is dead-lettered with its code, as poison is.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { type ObjectStore, parseArtifactUri, sha256Hex } from '../contract/artifacts.ts';
import { type ErrorCode, ScribeError, toScribeError } from '../errors.ts';
import { fault } from '../service/faults.ts';

export interface SqsConsumerOptions {
  readonly queueUrl: string;
  readonly region: string;
  readonly endpoint?: string;
  readonly deadLetterQueueUrl?: string;
  readonly visibilityTimeoutSeconds: number;
  /** Long-poll wait (0–20 s). */
  readonly waitTimeSeconds: number;
  /** Batch size (1–10). */
  readonly maxMessages?: number;
  /** How often visibility is extended while a message is in progress (< visibilityTimeoutSeconds). */
  readonly heartbeatSeconds?: number;
  /**
   * Records a message refused before it reached the handler (a bad claim-check pointer, a pointed-to object
   * missing or not matching its hash), as the handler records its own refusals: code and the sha256 of the
   * message body, no content. Called before the message is dead-lettered; if it throws, the message is not
   * dead-lettered but retried later, so no refusal goes unrecorded.
   */
  readonly onRefused?: (refusal: { readonly code: ErrorCode; readonly bodySha256: string }) => Promise<void>;
  /** Resolves claim-check pointers. */
  readonly objectStore?: ObjectStore;
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Ids, codes and durations only: never bodies. */
  readonly log?: (event: SqsLogEvent) => void;
  /** Seconds a transiently failed message stays invisible, by receive count (default 5 s doubling, ≤ 12 h). */
  readonly retryDelaySeconds?: (receiveCount: number) => number;
}

export type SqsLogEvent =
  | { event: 'sqs.handled'; messageId: string; outcome: string; ms: number }
  | { event: 'sqs.dead-lettered'; messageId: string; code: ErrorCode }
  | { event: 'sqs.retry-later'; messageId: string; code: ErrorCode; delaySeconds: number }
  | { event: 'sqs.receive-failed'; code: string };

/** What the handler did with a message. Every outcome is durable by the time it resolves. */
export interface HandleResult {
  /** `rejected`: recorded and audited as refused (e.g. a revision after entered-in-error): acknowledged too. */
  readonly outcome: 'accepted' | 'waiting' | 'duplicate' | 'conflict' | 'rejected';
}

export type Handler = (
  body: Uint8Array,
  meta: { messageId: string; receiveCount: number },
) => Promise<HandleResult>;

export const REASON_ATTRIBUTE = 'scribe-bridge-reason';

/** The claim-check pointer body. */
interface Pointer {
  kind: 'signed-note-pointer';
  uri: string;
  sha256: string;
}

function asPointer(body: string): Pointer | undefined {
  if (!body.includes('"signed-note-pointer"')) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object' || (v as { kind?: unknown }).kind !== 'signed-note-pointer')
    return undefined;
  const p = v as Record<string, unknown>;
  const keys = Object.keys(p).sort().join(',');
  if (
    keys !== 'kind,sha256,uri' ||
    typeof p['uri'] !== 'string' ||
    typeof p['sha256'] !== 'string' ||
    !/^[0-9a-f]{64}$/.test(p['sha256'])
  ) {
    throw new ScribeError(
      'POINTER_INVALID',
      'the queue pointer must have exactly kind, uri and sha256 (64 lower-case hex)',
    );
  }
  return p as unknown as Pointer;
}

export class SqsConsumer {
  readonly #o: SqsConsumerOptions;
  readonly #sqs: SQSClient;
  readonly #handler: Handler;
  #running = false;
  #loop: Promise<void> | undefined;
  #abort = new AbortController();
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: SqsConsumerOptions, handler: Handler) {
    if (
      options.heartbeatSeconds !== undefined &&
      options.heartbeatSeconds >= options.visibilityTimeoutSeconds
    ) {
      throw new ScribeError('USAGE', 'heartbeatSeconds must be shorter than visibilityTimeoutSeconds');
    }
    this.#o = options;
    this.#handler = handler;
    this.#sqs = new SQSClient({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#abort = new AbortController();
    this.#loop = this.#run();
  }

  /** Stops receiving, lets in-flight messages finish (their outcome is recorded and acknowledged), then returns. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#abort.abort();
    await this.#loop;
    await Promise.allSettled([...this.#inFlight]);
    this.#sqs.destroy();
  }

  /** One receive + handle round; resolves when every message of the batch is settled (for tests and drains). */
  async pollOnce(): Promise<number> {
    const out = await this.#sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: this.#o.queueUrl,
        MaxNumberOfMessages: this.#o.maxMessages ?? 10,
        WaitTimeSeconds: this.#o.waitTimeSeconds,
        VisibilityTimeout: this.#o.visibilityTimeoutSeconds,
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      }),
      { abortSignal: this.#abort.signal },
    );
    const messages = out.Messages ?? [];
    await Promise.all(messages.map((m) => this.#track(this.#handle(m))));
    return messages.length;
  }

  async #run(): Promise<void> {
    let backoffMs = 100;
    while (this.#running) {
      try {
        await this.pollOnce();
        backoffMs = 100;
      } catch (e) {
        if (!this.#running) break;
        this.#o.log?.({ event: 'sqs.receive-failed', code: (e as Error).name });
        await new Promise((r) => setTimeout(r, backoffMs));
        backoffMs = Math.min(backoffMs * 2, 10_000);
      }
    }
  }

  #track(p: Promise<void>): Promise<void> {
    this.#inFlight.add(p);
    return p.finally(() => this.#inFlight.delete(p));
  }

  async #handle(m: Message): Promise<void> {
    const messageId = m.MessageId ?? '?';
    const receiveCount = Number(m.Attributes?.ApproximateReceiveCount ?? '1');
    const started = performance.now();
    const heartbeat = this.#heartbeat(m);
    let handled = false;
    try {
      const body = await this.#body(m.Body ?? '');
      handled = true;
      fault('after-receive-before-commit');
      const result = await this.#handler(body, { messageId, receiveCount });
      clearInterval(heartbeat);
      fault('after-commit-before-delete');
      await this.#delete(m);
      this.#o.log?.({
        event: 'sqs.handled',
        messageId,
        outcome: result.outcome,
        ms: Math.round(performance.now() - started),
      });
    } catch (e) {
      clearInterval(heartbeat);
      let err = toScribeError(e);
      if (!handled && err.disposition !== 'retry' && this.#o.onRefused) {
        try {
          await this.#o.onRefused({ code: err.code, bodySha256: sha256Hex(m.Body ?? '') });
        } catch (recordFailure) {
          err = toScribeError(recordFailure);
          if (err.disposition !== 'retry')
            err = new ScribeError('LEDGER_UNAVAILABLE', 'the refusal could not be recorded', {
              disposition: 'retry',
            });
        }
      }
      if (err.disposition === 'retry') {
        // Back off by receive count: 5 s, 10 s, 20 s … capped below the SQS maximum of 12 hours.
        const delaySeconds =
          this.#o.retryDelaySeconds?.(receiveCount) ??
          Math.min(5 * 2 ** Math.max(0, receiveCount - 1), 43_200);
        this.#o.log?.({ event: 'sqs.retry-later', messageId, code: err.code, delaySeconds });
        await this.#sqs
          .send(
            new ChangeMessageVisibilityCommand({
              QueueUrl: this.#o.queueUrl,
              ReceiptHandle: m.ReceiptHandle,
              VisibilityTimeout: delaySeconds,
            }),
          )
          .catch(() => undefined);
        return;
      }
      await this.#deadLetter(m, err.code);
    }
  }

  /** Keeps the message invisible while it is verified and recorded. */
  #heartbeat(m: Message): ReturnType<typeof setInterval> {
    const every =
      (this.#o.heartbeatSeconds ?? Math.max(1, Math.floor(this.#o.visibilityTimeoutSeconds / 3))) * 1000;
    const t = setInterval(() => {
      this.#sqs
        .send(
          new ChangeMessageVisibilityCommand({
            QueueUrl: this.#o.queueUrl,
            ReceiptHandle: m.ReceiptHandle,
            VisibilityTimeout: this.#o.visibilityTimeoutSeconds,
          }),
        )
        .catch(() => undefined);
    }, every);
    t.unref();
    return t;
  }

  async #body(text: string): Promise<Uint8Array> {
    const pointer = asPointer(text);
    if (!pointer) return new TextEncoder().encode(text);
    const loc = parseArtifactUri(pointer.uri);
    if (loc.scheme !== 's3')
      throw new ScribeError('POINTER_INVALID', 'a queue pointer must name an S3 object');
    if (!this.#o.objectStore) {
      throw new ScribeError(
        'ARTIFACT_UNAVAILABLE',
        'a queue pointer arrived and no S3 client is configured',
        {
          hint: 'Configure `s3:` for the service.',
        },
      );
    }
    const bytes = await this.#o.objectStore.getObject(loc);
    if (sha256Hex(bytes) !== pointer.sha256) {
      throw new ScribeError(
        'ARTIFACT_HASH_MISMATCH',
        "the pointed-to envelope's SHA-256 differs from the pointer's",
        {
          where: pointer.uri,
        },
      );
    }
    return bytes;
  }

  async #delete(m: Message): Promise<void> {
    await this.#sqs.send(
      new DeleteMessageCommand({ QueueUrl: this.#o.queueUrl, ReceiptHandle: m.ReceiptHandle }),
    );
  }

  async #deadLetter(m: Message, code: ErrorCode): Promise<void> {
    const messageId = m.MessageId ?? '?';
    if (this.#o.deadLetterQueueUrl) {
      await this.#sqs.send(
        new SendMessageCommand({
          QueueUrl: this.#o.deadLetterQueueUrl,
          MessageBody: m.Body ?? '',
          MessageAttributes: {
            [REASON_ATTRIBUTE]: { DataType: 'String', StringValue: code },
            'scribe-bridge-source-message-id': { DataType: 'String', StringValue: messageId },
          },
        }),
      );
      await this.#delete(m);
    }
    // Without a DLQ the message stays; the queue's own redrive policy moves it after maxReceiveCount.
    this.#o.log?.({ event: 'sqs.dead-lettered', messageId, code });
  }
}
