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
 *
 * FIFO queues (`.fifo`): the messages of one message group in a batch are handled one after another, in order;
 * when one is left for later (a transient failure), the group's later messages of the batch are released
 * unhandled, so SQS gives them again only after it. A poison message goes to the (FIFO) dead-letter queue in its
 * own message group, deduplicated by its message id.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { isFifoQueue } from '../config/resolve.ts';
import { type ObjectStore, parseArtifactUri, sha256Hex } from '../contract/artifacts.ts';
import { causeSummary, type ErrorCode, ScribeError, toScribeError } from '../errors.ts';
import { fault } from '../service/faults.ts';
import { awsRequestHandler, REQUEST_TIMEOUT_MS } from './aws-http.ts';

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
  /**
   * Receives a message whose S3 object is missing gets before it is dead-lettered (default 3): the producer may
   * have sent the pointer before its upload finished (reliability-scenarios R23: "missing → retry, then DLQ").
   */
  readonly missingObjectReceives?: number;
  /**
   * How long one message may be in progress before it is no longer kept invisible (default 600 s): a stuck
   * handling then lets the message come back instead of extending it for ever (reliability-scenarios R28).
   */
  readonly handlerDeadlineSeconds?: number;
  /**
   * Tests only: the client to use instead of one made from these options (to script what SQS answers where no
   * local server does, e.g. several messages of one FIFO group in one batch).
   */
  readonly client?: Pick<SQSClient, 'send' | 'destroy'>;
}

export type SqsLogEvent =
  | { event: 'sqs.handled'; messageId: string; outcome: string; ms: number }
  | { event: 'sqs.delete-failed'; messageId: string; code: string }
  | { event: 'sqs.handler-timeout'; messageId: string; seconds: number }
  | { event: 'sqs.dead-lettered'; messageId: string; code: ErrorCode }
  | { event: 'sqs.retry-later'; messageId: string; code: ErrorCode; delaySeconds: number }
  | { event: 'sqs.receive-failed'; code: string; cause?: string; httpStatus?: number };

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

/** The first and the longest wait after a failed receive, ms. */
const RECEIVE_BACKOFF_MS = [1_000, 10_000] as const;
/** Error names that mean the credentials were refused or are missing: no point retrying soon. */
const AUTH_ERRORS: ReadonlySet<string> = new Set([
  'CredentialsProviderError',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'ExpiredTokenException',
  'AccessDenied',
  'AccessDeniedException',
  'InvalidSecurity',
]);

/** Receives of a message whose S3 object is missing, the last one dead-letters it (R23). */
const DEFAULT_MISSING_RECEIVES = 3;

/** Ten minutes: verifying and recording even a 60-minute encounter's note takes well under a second. */
const DEFAULT_HANDLER_DEADLINE_SECONDS = 600;

/** The message group of a message sent on to a FIFO queue without one of its own (from a standard queue). */
const DEFAULT_GROUP = 'scribe-bridge';

/**
 * What a FIFO queue requires of a message sent on: its message group (the one it came in, so order per group is
 * kept), and a deduplication id — `dedupId`, a message id: resending after a crash within SQS's 5-minute window
 * then adds no second copy.
 */
export function fifoSendAttributes(
  m: Message,
  dedupId: string,
): { MessageGroupId: string; MessageDeduplicationId: string } {
  return {
    MessageGroupId: m.Attributes?.['MessageGroupId'] ?? DEFAULT_GROUP,
    MessageDeduplicationId: dedupId.replace(/[^\x21-\x7e]/g, '_').slice(0, 128),
  };
}

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
  readonly #sqs: Pick<SQSClient, 'send' | 'destroy'>;
  readonly #handler: Handler;
  readonly #fifo: boolean;
  #running = false;
  #receiveFailing = false;
  #loop: Promise<void> | undefined;
  #abort = new AbortController();
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(options: SqsConsumerOptions, handler: Handler) {
    if (
      options.heartbeatSeconds !== undefined &&
      options.heartbeatSeconds >= options.visibilityTimeoutSeconds
    ) {
      throw new ScribeError('USAGE', 'heartbeatSeconds must be shorter than visibilityTimeoutSeconds');
    }
    this.#o = options;
    this.#handler = handler;
    this.#fifo = isFifoQueue(options.queueUrl);
    this.#sqs =
      options.client ??
      new SQSClient({
        region: options.region,
        ...(options.endpoint ? { endpoint: options.endpoint } : {}),
        ...(options.credentials ? { credentials: options.credentials } : {}),
        // A long poll is silent for up to waitTimeSeconds by design: the deadline is past it.
        requestHandler: awsRequestHandler(options.waitTimeSeconds * 1000 + REQUEST_TIMEOUT_MS),
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
    const out = await this.#sqs
      .send(
        new ReceiveMessageCommand({
          QueueUrl: this.#o.queueUrl,
          MaxNumberOfMessages: this.#o.maxMessages ?? 10,
          WaitTimeSeconds: this.#o.waitTimeSeconds,
          VisibilityTimeout: this.#o.visibilityTimeoutSeconds,
          MessageSystemAttributeNames: ['ApproximateReceiveCount', 'MessageGroupId'],
        }),
        { abortSignal: this.#abort.signal },
      )
      .then(
        (o) => {
          this.#receiveFailing = false;
          return o;
        },
        (e: unknown) => {
          if (this.#running) this.#receiveFailing = true;
          throw e;
        },
      );
    const messages = out.Messages ?? [];
    // Standard queues: every message at once. FIFO: each message group in order, the groups at once.
    const groups = new Map<string, Message[]>();
    const handling: Promise<unknown>[] = [];
    for (const m of messages) {
      const group = m.Attributes?.['MessageGroupId'];
      if (group === undefined || !this.#fifo) handling.push(this.#track(this.#handle(m)));
      else if (groups.has(group)) groups.get(group)!.push(m);
      else groups.set(group, [m]);
    }
    for (const group of groups.values()) handling.push(this.#track(this.#handleGroup(group)));
    await Promise.all(handling);
    return messages.length;
  }

  /**
   * One FIFO message group's messages of a batch, in order. The ones waiting their turn are kept invisible; when
   * one is left on the queue for later, the rest are released at once — SQS hands out a group's messages in
   * order, so they come back after it.
   */
  async #handleGroup(messages: readonly Message[]): Promise<void> {
    const waiting = messages.slice(1).map((m) => this.#heartbeat(m));
    try {
      for (const [i, m] of messages.entries()) {
        if (i > 0) clearInterval(waiting[i - 1]);
        if ((await this.#handle(m)) === 'kept') {
          for (const rest of messages.slice(i + 1)) await this.#setVisibility(rest, 0);
          return;
        }
      }
    } finally {
      for (const t of waiting) clearInterval(t);
    }
  }

  #setVisibility(m: Message, seconds: number): Promise<unknown> {
    return this.#sqs
      .send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.#o.queueUrl,
          ReceiptHandle: m.ReceiptHandle,
          VisibilityTimeout: seconds,
        }),
      )
      .catch(() => undefined);
  }

  /**
   * False while the queue cannot be read: the last receive failed (unreachable, credentials, throttled) and none
   * has succeeded since. For readiness (`/readyz`).
   */
  receiving(): boolean {
    return !this.#receiveFailing;
  }

  /**
   * Receives until stopped. A failed receive backs off: 1 s doubling to 10 s while SQS is unreachable, and 10 s at
   * once when the credentials are refused (R30, as bbc/sqs-consumer's authenticationErrorTimeout): retrying
   * those sooner only fills the log and the account's error metrics.
   */
  async #run(): Promise<void> {
    let backoffMs: number = RECEIVE_BACKOFF_MS[0];
    while (this.#running) {
      try {
        await this.pollOnce();
        backoffMs = RECEIVE_BACKOFF_MS[0];
      } catch (e) {
        if (!this.#running) break;
        const code = (e as Error).name;
        // Why, without the message: the system error (ECONNREFUSED…) or the service's HTTP status.
        const cause = causeSummary((e as { cause?: unknown }).cause ?? e);
        const httpStatus = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        this.#o.log?.({
          event: 'sqs.receive-failed',
          code,
          ...(cause ? { cause } : {}),
          ...(httpStatus ? { httpStatus } : {}),
        });
        const wait = AUTH_ERRORS.has(code) ? RECEIVE_BACKOFF_MS[1] : backoffMs;
        await new Promise((r) => setTimeout(r, wait));
        backoffMs = Math.min(backoffMs * 2, RECEIVE_BACKOFF_MS[1]);
      }
    }
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    return p.finally(() => this.#inFlight.delete(p));
  }

  /** Handles one message: 'done' when it left the queue (deleted or dead-lettered), 'kept' when it stays. */
  async #handle(m: Message): Promise<'done' | 'kept'> {
    const messageId = m.MessageId ?? '?';
    const receiveCount = Number(m.Attributes?.ApproximateReceiveCount ?? '1');
    const started = performance.now();
    const heartbeat = this.#heartbeat(m);
    let handled = false;
    const work = (async () => {
      const body = await this.#body(m.Body ?? '');
      handled = true;
      fault('after-receive-before-commit');
      return this.#handler(body, { messageId, receiveCount });
    })();
    // A hard deadline (R28): past it the message is no longer kept invisible and this batch stops waiting for
    // it, so it comes back to be handled again instead of being extended for ever (and a stuck handling does
    // not stop the consumer receiving). Should the stuck handling still record the note, the copy that comes
    // back is a duplicate; it then deletes the message if it still can.
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      deadline = setTimeout(() => resolve('timeout'), this.#deadlineSeconds() * 1000);
      deadline.unref();
    });
    let result: HandleResult;
    try {
      const first = await Promise.race([work, timedOut]);
      if (first === 'timeout') {
        clearInterval(heartbeat);
        this.#o.log?.({ event: 'sqs.handler-timeout', messageId, seconds: this.#deadlineSeconds() });
        void this.#track(work.then(() => this.#delete(m)).catch(() => undefined));
        return 'kept';
      }
      result = first;
    } catch (e) {
      clearInterval(heartbeat);
      clearTimeout(deadline);
      work.catch(() => undefined);
      let err = toScribeError(e);
      // An object not there (yet): retried a few receives, then dead-lettered like any refusal.
      if (
        err.code === 'ARTIFACT_MISSING' &&
        receiveCount < (this.#o.missingObjectReceives ?? DEFAULT_MISSING_RECEIVES)
      )
        err = new ScribeError('ARTIFACT_MISSING', err.detail, {
          disposition: 'retry',
          ...(err.where ? { where: err.where } : {}),
        });
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
        await this.#setVisibility(m, delaySeconds);
        return 'kept';
      }
      return (await this.#deadLetter(m, err.code)) ? 'done' : 'kept';
    }
    // Recorded: from here on nothing may dead-letter the message. If the delete fails it comes back, and the
    // ledger answers it as a duplicate (R29).
    clearInterval(heartbeat);
    clearTimeout(deadline);
    try {
      fault('after-commit-before-delete');
      await this.#delete(m);
    } catch (e) {
      this.#o.log?.({ event: 'sqs.delete-failed', messageId, code: (e as Error).name });
      return 'kept';
    }
    this.#o.log?.({
      event: 'sqs.handled',
      messageId,
      outcome: result.outcome,
      ms: Math.round(performance.now() - started),
    });
    return 'done';
  }

  #deadlineSeconds(): number {
    return this.#o.handlerDeadlineSeconds ?? DEFAULT_HANDLER_DEADLINE_SECONDS;
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

  /** Sends the message to the DLQ and deletes it (true); without a DLQ it stays for the queue's redrive (false). */
  async #deadLetter(m: Message, code: ErrorCode): Promise<boolean> {
    const messageId = m.MessageId ?? '?';
    const dlq = this.#o.deadLetterQueueUrl;
    if (dlq) {
      await this.#sqs.send(
        new SendMessageCommand({
          QueueUrl: dlq,
          MessageBody: m.Body ?? '',
          MessageAttributes: {
            [REASON_ATTRIBUTE]: { DataType: 'String', StringValue: code },
            'scribe-bridge-source-message-id': { DataType: 'String', StringValue: messageId },
          },
          ...(isFifoQueue(dlq) ? fifoSendAttributes(m, messageId) : {}),
        }),
      );
      await this.#delete(m);
    }
    // Without a DLQ the message stays; the queue's own redrive policy moves it after maxReceiveCount.
    this.#o.log?.({ event: 'sqs.dead-lettered', messageId, code });
    return dlq !== undefined;
  }
}
