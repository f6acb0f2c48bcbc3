/**
 * FIFO review queues (reliability-scenarios R31: per-group order, a poison message blocks only its own group and
 * only until it is dead-lettered).
 *
 * Against fauxqs with FIFO queues: each message group is handled in send order — a transient failure holds its
 * group's later messages back until it is handled — while another group goes on; poison goes to the FIFO
 * dead-letter queue on its first receive, in its own message group, with its reason code; the queue drains; and
 * an operator's replay sends it back to the FIFO intake queue in the same group.
 *
 * fauxqs hands out one message per group per receive; SQS may hand out several of a group in one batch. That
 * case is scripted (a stub client answering one batch): the group's messages are handled one after another in
 * batch order, and when one is left for later the rest of its group are released unhandled.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFifoQueue } from '../src/config/resolve.ts';
import { ScribeError } from '../src/errors.ts';
import { REASON_ATTRIBUTE, SqsConsumer } from '../src/ingest/sqs.ts';
import { SqsDeadLetterQueue } from '../src/ingest/sqs-dead-letters.ts';
import { AWS_CREDENTIALS, type Queue, startQueue } from './support/service-harness.ts';

let queue: Queue;

beforeAll(async () => {
  queue = await startQueue('signed-notes.fifo', { VisibilityTimeout: '30' });
});
afterAll(async () => {
  await queue.close();
});

/** A stand-in handler: `{"n": …}` is recorded; `poison` is refused; `transient` fails its first time. */
function recordingHandler() {
  const handled: string[] = [];
  const failedOnce = new Set<string>();
  const handler = async (body: Uint8Array) => {
    const v = JSON.parse(new TextDecoder().decode(body)) as { n: string; poison?: true; transient?: true };
    if (v.poison) throw new ScribeError('ENVELOPE_SCHEMA', 'not a signed note');
    if (v.transient && !failedOnce.has(v.n)) {
      failedOnce.add(v.n);
      handled.push(`${v.n}:retry`);
      throw new ScribeError('ARTIFACT_UNAVAILABLE', 'store down');
    }
    handled.push(v.n);
    return { outcome: 'accepted' as const };
  };
  return { handled, handler };
}

describe('FIFO review queue (fauxqs)', () => {
  it('keeps each group in order across a retry, dead-letters poison into its group, replays it back', async () => {
    expect(isFifoQueue(queue.queueUrl) && isFifoQueue(queue.dlqUrl)).toBe(true);
    const sends: Array<[string, object]> = [
      ['patient-1', { n: 'p1-a' }],
      ['patient-1', { n: 'p1-b', transient: true }],
      ['patient-1', { n: 'p1-c' }],
      ['patient-1', { n: 'p1-poison', poison: true }],
      ['patient-1', { n: 'p1-d' }],
      ['patient-2', { n: 'p2-a' }],
      ['patient-2', { n: 'p2-b' }],
    ];
    for (const [i, [group, body]] of sends.entries())
      await queue.sqs.send(
        new SendMessageCommand({
          QueueUrl: queue.queueUrl,
          MessageBody: JSON.stringify(body),
          MessageGroupId: group,
          MessageDeduplicationId: `m${i}`,
        }),
      );
    const { handled, handler } = recordingHandler();
    const consumer = new SqsConsumer(
      {
        queueUrl: queue.queueUrl,
        region: 'us-east-1',
        endpoint: queue.endpoint,
        deadLetterQueueUrl: queue.dlqUrl,
        visibilityTimeoutSeconds: 10,
        waitTimeSeconds: 0,
        credentials: AWS_CREDENTIALS,
        retryDelaySeconds: () => 1,
      },
      handler,
    );
    for (let rounds = 0; handled.filter((h) => !h.endsWith(':retry')).length < 6 && rounds < 40; rounds++) {
      if ((await consumer.pollOnce()) === 0) await new Promise((r) => setTimeout(r, 250));
    }
    await consumer.stop();

    expect(handled.filter((h) => h.startsWith('p1-'))).toEqual([
      'p1-a',
      'p1-b:retry',
      'p1-b',
      'p1-c',
      'p1-d',
    ]);
    expect(handled.filter((h) => h.startsWith('p2-'))).toEqual(['p2-a', 'p2-b']);
    // patient-2 was not held up by patient-1's retry: both of its notes were handled before p1-b's second try.
    expect(handled.indexOf('p2-b')).toBeLessThan(handled.indexOf('p1-b'));
    expect(await queue.depth()).toBe(0);

    const dlq = await queue.drainDlq();
    expect(
      dlq.map((m) => [
        m.Body,
        m.Attributes?.['MessageGroupId'],
        m.MessageAttributes?.[REASON_ATTRIBUTE]?.StringValue,
      ]),
    ).toEqual([[JSON.stringify({ n: 'p1-poison', poison: true }), 'patient-1', 'ENVELOPE_SCHEMA']]);
    // Make it visible again, then replay it to the intake queue: same body, same group.
    await queue.sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: queue.dlqUrl,
        ReceiptHandle: dlq[0]!.ReceiptHandle,
        VisibilityTimeout: 0,
      }),
    );
    const dead = new SqsDeadLetterQueue({
      deadLetterQueueUrl: queue.dlqUrl,
      queueUrl: queue.queueUrl,
      region: 'us-east-1',
      endpoint: queue.endpoint,
      credentials: AWS_CREDENTIALS,
    });
    try {
      const r = await dead.replay({ all: true });
      expect(r.replayed.map((x) => [x.messageId, x.code])).toEqual([[dlq[0]!.MessageId, 'ENVELOPE_SCHEMA']]);
    } finally {
      dead.destroy();
    }
    const back = await queue.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queue.queueUrl,
        MaxNumberOfMessages: 10,
        MessageSystemAttributeNames: ['MessageGroupId'],
      }),
    );
    expect(back.Messages?.map((m) => [m.Body, m.Attributes?.['MessageGroupId']])).toEqual([
      [JSON.stringify({ n: 'p1-poison', poison: true }), 'patient-1'],
    ]);
    await queue.sqs.send(
      new DeleteMessageCommand({ QueueUrl: queue.queueUrl, ReceiptHandle: back.Messages![0]!.ReceiptHandle }),
    );
  }, 60_000);
});

describe('FIFO: several messages of one group in one batch (scripted SQS answer)', () => {
  it('handles them in order; after one is left for later, releases the rest unhandled', async () => {
    const msg = (id: string, group: string, body: object): Message => ({
      MessageId: id,
      ReceiptHandle: `rh-${id}`,
      Body: JSON.stringify(body),
      Attributes: { MessageGroupId: group, ApproximateReceiveCount: '1' },
    });
    const batch = [
      msg('1', 'g', { n: 'g-1' }),
      msg('2', 'g', { n: 'g-2', transient: true }),
      msg('3', 'g', { n: 'g-3' }),
      msg('4', 'h', { n: 'h-1' }),
      msg('5', 'g', { n: 'g-4' }),
    ];
    const calls: string[] = [];
    const client = {
      send: async (command: object) => {
        const input = (command as { input: Record<string, unknown> }).input;
        if (command instanceof ReceiveMessageCommand) return { Messages: batch };
        if (command instanceof DeleteMessageCommand) calls.push(`delete ${input['ReceiptHandle']}`);
        if (command instanceof ChangeMessageVisibilityCommand)
          calls.push(`visibility ${input['ReceiptHandle']} ${input['VisibilityTimeout']}`);
        return {};
      },
      destroy: () => undefined,
    };
    const { handled, handler } = recordingHandler();
    const consumer = new SqsConsumer(
      {
        queueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/notes.fifo',
        region: 'us-east-1',
        visibilityTimeoutSeconds: 30,
        waitTimeSeconds: 0,
        retryDelaySeconds: () => 7,
        client: client as never,
      },
      handler,
    );
    expect(await consumer.pollOnce()).toBe(5);
    expect(handled.filter((h) => h.startsWith('g-'))).toEqual(['g-1', 'g-2:retry']);
    expect(handled).toContain('h-1');
    expect(
      calls.filter(
        (c) => c.includes('rh-1') || c.includes('rh-2') || c.includes('rh-3') || c.includes('rh-5'),
      ),
    ).toEqual(['delete rh-1', 'visibility rh-2 7', 'visibility rh-3 0', 'visibility rh-5 0']);
    expect(calls).toContain('delete rh-4');
  });

  it('a standard queue handles a batch at once, group ids or not', async () => {
    const started: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const client = {
      send: async (command: object) =>
        command instanceof ReceiveMessageCommand
          ? {
              Messages: ['a', 'b'].map((n) => ({
                MessageId: n,
                ReceiptHandle: n,
                Body: JSON.stringify({ n }),
                Attributes: { MessageGroupId: 'same' },
              })),
            }
          : {},
      destroy: () => undefined,
    };
    const consumer = new SqsConsumer(
      {
        queueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/notes',
        region: 'us-east-1',
        visibilityTimeoutSeconds: 30,
        waitTimeSeconds: 0,
        client: client as never,
      },
      async (body) => {
        started.push(new TextDecoder().decode(body));
        if (started.length === 2) release();
        await gate; // both must have started before either finishes
        return { outcome: 'accepted' };
      },
    );
    expect(await consumer.pollOnce()).toBe(2);
    expect(started).toHaveLength(2);
  });
});
