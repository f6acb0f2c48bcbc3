/**
 * MLLP delivery against a real receiver on 127.0.0.1 (test/support/mllp-server.ts, framing by @medplum/hl7).
 *
 * Promise checked: every receiver answer ends in the state the ACK table of PRODUCT.md §5 gives, with the
 * number of sends the table implies — AA/CA delivered after 1; AE/CR rejected after exactly 1; AR/CE retried
 * to maxAttempts then failed; an ACK for another MSH-10 discarded with a warning while we keep waiting; no
 * ACK or a reset after writing → ambiguous after 1 (never a blind resend); nothing written → retry. Also: the
 * per-destination override, reconnection, one outstanding message per connection, TLS, backoff timing.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AckCode } from '../src/deliver/ack.ts';
import { MllpClient, type MllpClientOptions, type MllpLogEntry } from '../src/deliver/mllp.ts';
import { deliverMllp, mllpDeliveryError } from '../src/deliver/mllp-deliver.ts';
import {
  type MllpTestServer,
  type ServerAction,
  selfSignedCert,
  startMllpServer,
} from './support/mllp-server.ts';

const CONTROL_ID = 'SB7Q2M4K9X3HZ5W8N1PD'; // 20 characters, the MSH-10 maximum
const NOTE_LINE = 'Pt c/o knee pain \\F\\ 7/10 \\S\\ worse on stairs';

/** A hand-built MDM^T02 (segments separated by \r) with the given MSH-10. */
function mdm(controlId = CONTROL_ID): string {
  return [
    `MSH|^~\\&|SCRIBE-BRIDGE|RIVERSIDE|EHR|HOSP|20261120164512||MDM^T02^MDM_T02|${controlId}|P|2.5.1|||AL|NE||UNICODE UTF-8`,
    'EVN|T02|20261120164512',
    'PID|1||MRN4471^^^HOSP^MR||Doe^Jane||19800101|F',
    'PV1|1|O|||||||||||||||||ENC-4471',
    'TXA|1|HP|TX|20261120160000|DR1^Smith^Alex||||||||DOC4471HP1^SCRIBE-BRIDGE||||||LA||AV|||DR1^Smith^Alex^^^^^^^^^^^^20261120164512',
    `OBX|1|TX|11506-3^Progress note^LN|1|${NOTE_LINE}||||||F`,
  ].join('\r');
}

const FAST = { ackTimeoutMs: 250, connectTimeoutMs: 1000 } as const;
const RETRY = { maxAttempts: 3, initialDelayMs: 5, maxDelayMs: 20 } as const;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(
  script: readonly (readonly ServerAction[])[] | ((i: number) => readonly ServerAction[]),
  clientOptions: Partial<MllpClientOptions> = {},
): Promise<{ server: MllpTestServer; client: MllpClient; logs: MllpLogEntry[] }> {
  const server = await startMllpServer({
    script: typeof script === 'function' ? (_m, i) => script(i) : script,
  });
  const logs: MllpLogEntry[] = [];
  const client = new MllpClient({
    host: server.host,
    port: server.port,
    ...FAST,
    logger: (e) => logs.push(e),
    ...clientOptions,
  });
  cleanups.push(
    () => server.close(),
    () => client.close(),
  );
  return { server, client, logs };
}

const always =
  (...actions: ServerAction[]) =>
  () =>
    actions;

describe('MLLP: the default ACK table, end to end', () => {
  const table: Array<[AckCode, 'delivered' | 'rejected' | 'failed', number]> = [
    ['AA', 'delivered', 1],
    ['CA', 'delivered', 1],
    ['AE', 'rejected', 1],
    ['CR', 'rejected', 1],
    ['AR', 'failed', RETRY.maxAttempts],
    ['CE', 'failed', RETRY.maxAttempts],
  ];
  it.each(table)('%s → %s after %i send(s)', async (code, state, sends) => {
    const { server, client } = await setup(always({ ack: code }));
    const d = await deliverMllp(client, mdm(), CONTROL_ID, RETRY);
    expect(d.state).toBe(state);
    expect(server.received).toHaveLength(sends);
    expect(d.attempts).toHaveLength(sends);
    expect(d.attempts.every((a) => a.ackCode === code)).toBe(true);
    // Every resend carries the same bytes, so the same MSH-10.
    expect(new Set(server.received.map((m) => m.raw))).toEqual(new Set([mdm()]));
    expect(d.last).toMatchObject({ ackCode: code, ackControlId: CONTROL_ID, written: true, reason: 'ack' });
    expect(d.last.rawAck).toMatch(new RegExp(`\\rMSA\\|${code}\\|${CONTROL_ID}`));
    expect(d.last.timings.waitMs).toBeGreaterThanOrEqual(0);
    if (state === 'delivered') expect(mllpDeliveryError(d)).toBeUndefined();
    else expect(mllpDeliveryError(d)?.disposition).toBe(state === 'rejected' ? 'reject' : 'dead-letter');
  });

  it('carries MSA-3 and the ERR segment of a rejection', async () => {
    const err = 'ERR||PID^1^3|204^Unknown key identifier^HL70357|E||||Patient not found';
    const { client } = await setup([[{ ack: 'AE', text: 'Unknown patient', err }]]);
    const r = await client.send(mdm(), CONTROL_ID);
    expect(r).toMatchObject({ outcome: 'rejected', ackText: 'Unknown patient' });
    expect(r.errors).toEqual([
      {
        location: 'PID^1^3',
        hl7ErrorCode: '204^Unknown key identifier^HL70357',
        severity: 'E',
        userMessage: 'Patient not found',
      },
    ]);
  });
});

describe('MLLP: answers that are not a plain ACK', () => {
  it('discards an ACK for another MSH-10 with a warning, then takes the right one', async () => {
    const { server, client, logs } = await setup([
      [{ ack: 'AE', controlId: 'SOMEONE-ELSES-MSG-01' }, { delayMs: 20 }, { ack: 'AA' }],
    ]);
    const d = await deliverMllp(client, mdm(), CONTROL_ID, RETRY);
    expect(d.state).toBe('delivered');
    expect(server.received).toHaveLength(1);
    const warnings = logs.filter((l) => l.level === 'warn');
    expect(warnings).toEqual([
      {
        level: 'warn',
        event: 'mllp.ack.unmatched',
        controlId: CONTROL_ID,
        ackControlId: 'SOMEONE-ELSES-MSG-01',
        ackCode: 'AE',
      },
    ]);
    // Ids and codes only: nothing of the message reaches the log.
    const logged = JSON.stringify(logs);
    for (const phi of ['Doe', 'MRN4471', 'knee', 'Smith']) expect(logged).not.toContain(phi);
  });

  it('a wrong MSA-2 and then nothing → ambiguous after 1 send', async () => {
    const { server, client, logs } = await setup([[{ ack: 'AA', controlId: 'X' }]]);
    const d = await deliverMllp(client, mdm(), CONTROL_ID, RETRY);
    expect(d.state).toBe('ambiguous');
    expect(d.last.reason).toBe('ack-timeout');
    expect(server.received).toHaveLength(1);
    expect(logs.some((l) => l.event === 'mllp.ack.unmatched')).toBe(true);
  });

  it('no ACK within ackTimeoutMs → ambiguous after 1 send, no resend', async () => {
    const { server, client } = await setup(always());
    const t0 = performance.now();
    const d = await deliverMllp(client, mdm(), CONTROL_ID, RETRY);
    expect(d.state).toBe('ambiguous');
    expect(d.last).toMatchObject({ reason: 'ack-timeout', written: true });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(FAST.ackTimeoutMs - 5);
    expect(server.received).toHaveLength(1);
    expect(mllpDeliveryError(d)?.disposition).toBe('ambiguous');
  });

  it('connection reset after the message was written → ambiguous after 1 send', async () => {
    const { server, client } = await setup(always({ reset: true }));
    const d = await deliverMllp(client, mdm(), CONTROL_ID, RETRY);
    expect(d.state).toBe('ambiguous');
    expect(d.last).toMatchObject({ reason: 'connection-lost', written: true });
    expect(server.received).toHaveLength(1);
  });

  it('graceful close without an ACK → ambiguous after 1 send', async () => {
    const { server, client } = await setup(always({ close: true }));
    const d = await deliverMllp(client, mdm(), CONTROL_ID, RETRY);
    expect(d).toMatchObject({ state: 'ambiguous', last: { reason: 'connection-lost' } });
    expect(server.received).toHaveLength(1);
  });

  it('nothing written (connection refused) → retry, then failed after maxAttempts', async () => {
    const port = await closedPort();
    const client = new MllpClient({ host: '127.0.0.1', port, ...FAST });
    cleanups.push(() => client.close());
    const d = await deliverMllp(client, mdm(), CONTROL_ID, RETRY);
    expect(d.state).toBe('failed');
    expect(d.attempts.map((a) => a.outcome)).toEqual(['retry', 'retry', 'retry']);
    expect(d.last).toMatchObject({ reason: 'connect-failed', written: false, errorCode: 'ECONNREFUSED' });
  });

  it('an unknown MSA-1 for our MSH-10 → ambiguous (neither delivered nor resent)', async () => {
    // @medplum/core only builds table-0008 ACKs, so answer by hand through a raw socket.
    const raw = net.createServer((s) => {
      s.on('data', () =>
        s.write(`\x0bMSH|^~\\&|EHR|HOSP|||20261120||ACK|1|P|2.5.1\rMSA|ZZ|${CONTROL_ID}\x1c\r`),
      );
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => raw.close(() => r())));
    const logs: MllpLogEntry[] = [];
    const client = new MllpClient({
      host: '127.0.0.1',
      port: (raw.address() as net.AddressInfo).port,
      ...FAST,
      logger: (e) => logs.push(e),
    });
    cleanups.push(() => client.close());
    const r = await client.send(mdm(), CONTROL_ID);
    expect(r).toMatchObject({ outcome: 'ambiguous', reason: 'ack-unknown-code', ackCode: 'ZZ' });
    expect(logs.some((l) => l.event === 'mllp.ack.unknown-code')).toBe(true);
  });
});

describe('MLLP: per-destination override of the table', () => {
  it('an EHR whose AE means "try again" gets AE retried, and its AR rejected', async () => {
    const { server, client } = await setup(always({ ack: 'AE' }), {
      ackCodes: { AE: 'retry', AR: 'rejected' },
    });
    expect(client.table).toMatchObject({ AE: 'retry', AR: 'rejected', AA: 'delivered', CE: 'retry' });
    const d = await deliverMllp(client, mdm(), CONTROL_ID, RETRY);
    expect(d.state).toBe('failed');
    expect(server.received).toHaveLength(RETRY.maxAttempts);

    server.setScript(always({ ack: 'AR' }));
    const before = server.received.length;
    const d2 = await deliverMllp(client, mdm(), CONTROL_ID, RETRY);
    expect(d2.state).toBe('rejected');
    expect(server.received.length - before).toBe(1);
  });
});

describe('MLLP: connections', () => {
  it('reuses one connection across sends', async () => {
    const { server, client } = await setup(always({ ack: 'AA' }));
    for (const id of ['A1', 'A2', 'A3']) expect((await client.send(mdm(id), id)).outcome).toBe('delivered');
    expect(server.connections()).toBe(1);
  });

  it('reconnects when the receiver drops the connection between two sends', async () => {
    const { server, client, logs } = await setup(always({ ack: 'AA' }));
    const first = await client.send(mdm('B1'), 'B1');
    expect(first.timings.connectMs).toBeGreaterThanOrEqual(0);
    await server.dropConnections();
    await until(() => logs.some((l) => l.event === 'mllp.closed'));
    const second = await client.send(mdm('B2'), 'B2');
    expect(second).toMatchObject({ outcome: 'delivered', ackControlId: 'B2' });
    expect(second.timings.connectMs).toBeGreaterThanOrEqual(0);
    expect(server.connections()).toBe(2);
    expect(server.received.map((m) => [m.controlId, m.connection])).toEqual([
      ['B1', 0],
      ['B2', 1],
    ]);
  });

  it('reconnects after a reset: the next message goes out on a new connection', async () => {
    const { server, client } = await setup([[{ reset: true }], [{ ack: 'AA' }]]);
    expect((await client.send(mdm('C1'), 'C1')).outcome).toBe('ambiguous');
    expect((await client.send(mdm('C2'), 'C2')).outcome).toBe('delivered');
    expect(server.connections()).toBe(2);
  });

  it.each([true, false])(
    'a receiver that hangs up after every ACK: 40 messages all delivered (keepConnection %s)',
    async (keepConnection) => {
      const { server, client } = await setup(always({ ack: 'AA' }, { close: true }), { keepConnection });
      const outcomes = [];
      for (let i = 0; i < 40; i++) outcomes.push((await client.send(mdm(`E${i}`), `E${i}`)).outcome);
      expect(outcomes.every((o) => o === 'delivered')).toBe(true);
      expect(server.received).toHaveLength(40);
      expect(server.connections()).toBe(40);
    },
  );

  it('keeps one message outstanding per connection: concurrent sends are serialised', async () => {
    const { server, client } = await setup(always({ delayMs: 60 }, { ack: 'AA' }));
    const results = await Promise.all(['D1', 'D2', 'D3'].map((id) => client.send(mdm(id), id)));
    expect(results.map((r) => [r.outcome, r.ackControlId])).toEqual([
      ['delivered', 'D1'],
      ['delivered', 'D2'],
      ['delivered', 'D3'],
    ]);
    expect(server.connections()).toBe(1);
    // Each message reached the receiver only after the previous one was acknowledged.
    for (let i = 1; i < server.received.length; i++) {
      expect(server.received[i]!.receivedAt).toBeGreaterThanOrEqual(server.received[i - 1]!.ackedAt!);
    }
  });

  it('times out a connect that never completes → retry, nothing written', async () => {
    // A listener with a zero backlog that never accepts still completes the TCP handshake on Linux, so
    // use TLS against a plain TCP server that never answers the ClientHello.
    const held: net.Socket[] = [];
    const silent = net.createServer((s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      for (const s of held) s.destroy();
      return new Promise((r) => silent.close(() => r()));
    });
    const client = new MllpClient({
      host: '127.0.0.1',
      port: (silent.address() as net.AddressInfo).port,
      connectTimeoutMs: 100,
      tls: {},
    });
    cleanups.push(() => client.close());
    const r = await client.send(mdm(), CONTROL_ID);
    expect(r).toMatchObject({ outcome: 'retry', reason: 'connect-timeout', written: false });
  });

  it('rejects a controlId that is not the MSH-10, and sends after close()', async () => {
    const { server, client } = await setup(always({ ack: 'AA' }));
    await expect(client.send(mdm(), 'OTHER')).rejects.toMatchObject({ code: 'INTERNAL' });
    await client.close();
    await expect(client.send(mdm(), CONTROL_ID)).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    expect(server.received).toHaveLength(0);
  });
});

describe('MLLP over TLS', () => {
  const pair = selfSignedCert();
  it.skipIf(!pair)('delivers to a receiver whose certificate the destination trusts', async () => {
    const server = await startMllpServer({ tls: pair!, script: () => [{ ack: 'AA' }] });
    const client = new MllpClient({ host: server.host, port: server.port, ...FAST, tls: { ca: pair!.cert } });
    cleanups.push(
      () => server.close(),
      () => client.close(),
    );
    const r = await client.send(mdm(), CONTROL_ID);
    expect(r).toMatchObject({ outcome: 'delivered', ackCode: 'AA' });
    expect(server.received.map((m) => m.raw)).toEqual([mdm()]);
  });

  it.skipIf(!pair)(
    'refuses an untrusted certificate: retry, nothing written, no plaintext fallback',
    async () => {
      const server = await startMllpServer({ tls: pair!, script: () => [{ ack: 'AA' }] });
      const client = new MllpClient({ host: server.host, port: server.port, ...FAST, tls: {} });
      cleanups.push(
        () => server.close(),
        () => client.close(),
      );
      const r = await client.send(mdm(), CONTROL_ID);
      expect(r).toMatchObject({ outcome: 'retry', reason: 'tls-failed', written: false });
      expect(r.errorCode).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY/);
      expect(server.received).toHaveLength(0);
    },
  );

  it.skipIf(!pair)(
    'checks the name: a certificate for localhost does not pass for another servername',
    async () => {
      const server = await startMllpServer({ tls: pair!, script: () => [{ ack: 'AA' }] });
      const client = new MllpClient({
        host: server.host,
        port: server.port,
        ...FAST,
        tls: { ca: pair!.cert, servername: 'ehr.example.org' },
      });
      cleanups.push(
        () => server.close(),
        () => client.close(),
      );
      const r = await client.send(mdm(), CONTROL_ID);
      expect(r).toMatchObject({
        outcome: 'retry',
        reason: 'tls-failed',
        errorCode: 'ERR_TLS_CERT_ALTNAME_INVALID',
      });
    },
  );
});

describe('MLLP: backoff between retries', () => {
  it('waits random(0, min(max, initial·2^n)) before retry n, with an injected random', async () => {
    const { server, client } = await setup(always({ ack: 'AR' }));
    const slept: number[] = [];
    const d = await deliverMllp(client, mdm(), CONTROL_ID, {
      maxAttempts: 4,
      initialDelayMs: 100,
      maxDelayMs: 250,
      random: () => 0.5,
      sleep: async (ms) => {
        slept.push(ms);
      },
    });
    // ceilings 100, 200, 250 (capped) → half of each
    expect(slept).toEqual([50, 100, 125]);
    expect(d.attempts.map((a) => a.delayBeforeMs)).toEqual([0, 50, 100, 125]);
    expect(d.state).toBe('failed');
    expect(server.received).toHaveLength(4);
  });

  it('really waits: sends reach the receiver at least the backoff apart', async () => {
    const { server, client } = await setup(always({ ack: 'CE' }));
    const d = await deliverMllp(client, mdm(), CONTROL_ID, {
      maxAttempts: 3,
      initialDelayMs: 40,
      maxDelayMs: 60,
      random: () => 0.999,
    });
    expect(d.attempts.map((a) => a.delayBeforeMs)).toEqual([0, 40, 60]);
    const at = server.received.map((m) => m.receivedAt);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(39);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(59);
  });

  it('stops at maxElapsedMs even with attempts left', async () => {
    const { server, client } = await setup(always({ ack: 'AR' }));
    const d = await deliverMllp(client, mdm(), CONTROL_ID, {
      maxAttempts: 10,
      initialDelayMs: 1000,
      maxDelayMs: 1000,
      maxElapsedMs: 500,
      random: () => 0.999,
      sleep: async () => {},
    });
    expect(d.state).toBe('failed');
    expect(server.received).toHaveLength(1);
  });
});

/** A port on 127.0.0.1 with nothing listening. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeoutMs) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}
