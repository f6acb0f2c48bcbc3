import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CpuTurns } from './cpu-turns.ts';

/** Busy CPU for `ms`: a stage of intake work. */
const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
};

describe('CpuTurns', () => {
  let server: Server | undefined;
  let client: Socket | undefined;
  afterEach(async () => {
    client?.destroy();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
  });

  /**
   * Five CPU stages queued while a database-like answer is on its way over a real socket: where does the answer
   * get read, among the stages? `schedule` decides how each stage waits to run.
   */
  async function whenIoIsRead(schedule: (stage: () => void) => Promise<void>): Promise<string[]> {
    const log: string[] = [];
    server = createServer((s) => s.on('data', () => log.push('io')));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    client = connect(port, '127.0.0.1');
    await once(client, 'connect');
    await new Promise((r) => setTimeout(r, 20)); // the server side is accepted and reading
    const stages = Array.from({ length: 5 }, (_, i) =>
      schedule(() => {
        log.push(`cpu${i}`);
        busy(15);
      }),
    );
    client.write('answer');
    await Promise.all(stages);
    await new Promise((r) => setTimeout(r, 20));
    return log;
  }

  it('runs one stage per turn of the event loop, so I/O that arrives meanwhile is read between stages', async () => {
    const turns = new CpuTurns();
    const log = await whenIoIsRead(async (stage) => {
      await turns.turn();
      stage();
    });
    expect(log.filter((e) => e.startsWith('cpu'))).toEqual(['cpu0', 'cpu1', 'cpu2', 'cpu3', 'cpu4']);
    expect(log.indexOf('io')).toBeGreaterThan(-1);
    expect(log.indexOf('io')).toBeLessThan(log.indexOf('cpu4'));
  });

  it('(without turns, stages whose awaits resolve together run back to back and the answer waits for all of them)', async () => {
    const log = await whenIoIsRead(async (stage) => {
      await Promise.resolve();
      stage();
    });
    expect(log.indexOf('io')).toBe(log.length - 1);
  });
});
