/**
 * What happens to a review-queue message after its note was recorded, and to one whose handling never ends
 * (reliability-scenarios R28, R29), against fauxqs:
 * - DeleteMessage fails after the commit (throttled, network): the message is NOT dead-lettered — it comes back,
 *   the ledger (here a recording stand-in) answers it as a duplicate, and then it is deleted;
 * - a handling stuck past the deadline stops being kept invisible: the message comes back to be handled again,
 *   with a log event, instead of its visibility being extended for ever.
 */
import { DeleteMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqsConsumer, type SqsConsumerOptions, type SqsLogEvent } from '../src/ingest/sqs.ts';
import { AWS_CREDENTIALS, type Queue, startQueue } from './support/service-harness.ts';

let queue: Queue;
beforeAll(async () => {
  queue = await startQueue('acks');
});
afterAll(async () => {
  await queue.close();
});

const options = (
  extra: Partial<SqsConsumerOptions> & Pick<SqsConsumerOptions, 'visibilityTimeoutSeconds'>,
): SqsConsumerOptions => ({
  queueUrl: queue.queueUrl,
  region: 'us-east-1',
  endpoint: queue.endpoint,
  deadLetterQueueUrl: queue.dlqUrl,
  waitTimeSeconds: 0,
  credentials: AWS_CREDENTIALS,
  ...extra,
});

async function pollUntil(consumer: SqsConsumer, done: () => boolean, seconds: number): Promise<void> {
  const end = Date.now() + seconds * 1000;
  while (!done() && Date.now() < end) {
    if ((await consumer.pollOnce()) === 0) await new Promise((r) => setTimeout(r, 200));
  }
}

describe('after the commit, and past the deadline (fauxqs)', () => {
  it('a failed delete after the commit leaves the message to come back as a duplicate, never in the DLQ', async () => {
    await queue.sqs.send(
      new SendMessageCommand({ QueueUrl: queue.queueUrl, MessageBody: '{"n": "note-1"}' }),
    );
    const real = new SQSClient({
      endpoint: queue.endpoint,
      region: 'us-east-1',
      credentials: AWS_CREDENTIALS,
    });
    let deletesRefused = 0;
    const flaky = {
      send: ((command: Parameters<SQSClient['send']>[0]) => {
        if (command instanceof DeleteMessageCommand && deletesRefused === 0) {
          deletesRefused++;
          return Promise.reject(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
        }
        return real.send(command);
      }) as SQSClient['send'],
      destroy: () => real.destroy(),
    };
    const recorded = new Set<string>();
    const outcomes: string[] = [];
    const events: SqsLogEvent[] = [];
    const consumer = new SqsConsumer(
      options({ visibilityTimeoutSeconds: 1, client: flaky, log: (e: SqsLogEvent) => events.push(e) }),
      async (body) => {
        const n = new TextDecoder().decode(body);
        const outcome = recorded.has(n) ? 'duplicate' : 'accepted';
        recorded.add(n);
        outcomes.push(outcome);
        return { outcome };
      },
    );
    await pollUntil(
      consumer,
      () => outcomes.length === 2 && events.some((e) => e.event === 'sqs.handled'),
      15,
    );
    await consumer.stop();
    expect(deletesRefused).toBe(1);
    expect(outcomes).toEqual(['accepted', 'duplicate']);
    expect(events.map((e) => e.event)).toEqual(['sqs.delete-failed', 'sqs.handled']);
    expect(events[0]).toMatchObject({ code: 'ThrottlingException' });
    expect(await queue.drainDlq()).toEqual([]);
    expect(await queue.depth()).toBe(0);
  }, 30_000);

  it('a handling stuck past its deadline is no longer extended: the message comes back', async () => {
    await queue.sqs.send(new SendMessageCommand({ QueueUrl: queue.queueUrl, MessageBody: '{"n": "stuck"}' }));
    const events: SqsLogEvent[] = [];
    let release: () => void = () => undefined;
    const stuck = new Promise<void>((r) => (release = r));
    const receives: number[] = [];
    const consumer = new SqsConsumer(
      options({
        visibilityTimeoutSeconds: 2,
        heartbeatSeconds: 1,
        handlerDeadlineSeconds: 2,
        log: (e: SqsLogEvent) => events.push(e),
      }),
      async (_body, meta) => {
        receives.push(meta.receiveCount);
        if (meta.receiveCount === 1) await stuck; // the first handling hangs
        return { outcome: 'accepted' };
      },
    );
    consumer.start();
    const end = Date.now() + 20_000;
    while (receives.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
    release();
    await consumer.stop();
    // Without the deadline the heartbeat would have kept it invisible for as long as the handling hung.
    expect(receives).toEqual([1, 2]);
    expect(events.find((e) => e.event === 'sqs.handler-timeout')).toMatchObject({ seconds: 2 });
    expect(await queue.drainDlq()).toEqual([]);
  }, 30_000);
});

describe('receive failures (R30)', () => {
  it('backs off 1 s doubling while SQS is unreachable, and 10 s at once when the credentials are refused', async () => {
    const failing = (name: string) => {
      const e = new Error('scripted');
      e.name = name;
      return { send: async () => Promise.reject(e), destroy: () => undefined };
    };
    const count = async (name: string) => {
      const events: SqsLogEvent[] = [];
      const consumer = new SqsConsumer(
        options({ visibilityTimeoutSeconds: 30, client: failing(name) as never, log: (e) => events.push(e) }),
        async () => ({ outcome: 'accepted' }),
      );
      consumer.start();
      await new Promise((r) => setTimeout(r, 3_500));
      expect(consumer.receiving()).toBe(false);
      await consumer.stop();
      return events.filter((e) => e.event === 'sqs.receive-failed').length;
    };
    // Unreachable: at 0, 1 s and 3 s (not every 100 ms).
    const [unreachable, refused] = await Promise.all([count('TimeoutError'), count('InvalidClientTokenId')]);
    expect(unreachable).toBe(3);
    expect(refused).toBe(1);
  }, 30_000);
});
