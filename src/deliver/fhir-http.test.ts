/**
 * HttpTransport and a server that closes a keep-alive connection as the client reuses it (what Node's server
 * does after its 5 s keepAliveTimeout, racing a request just written): an idempotent request — GET, PUT, a
 * conditional create — is sent once more on a new connection; a plain POST, or a reset on a fresh connection,
 * is answered as failed (written: the caller treats it as ambiguous). A real HTTP server on port 0.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpTransport } from './fhir-http.ts';

interface Seen {
  readonly method: string;
  readonly connection: number;
  readonly nth: number;
}

/** Answers 200 `{}`; resets the connection instead of answering when `reset(seen)` says so. */
async function server(reset: (s: Seen) => boolean) {
  const seen: Seen[] = [];
  const ids = new WeakMap<Socket, { id: number; n: number }>();
  let connections = 0;
  const srv = http.createServer((req, res) => {
    const c = ids.get(req.socket) ?? { id: ++connections, n: 0 };
    ids.set(req.socket, c);
    const s = { method: req.method ?? '', connection: c.id, nth: ++c.n };
    seen.push(s);
    req.resume();
    req.on('end', () => {
      if (reset(s)) req.socket.resetAndDestroy();
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  srv.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const url = new URL(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/fhir/DocumentReference`);
  return {
    url,
    seen,
    close: () => {
      srv.closeAllConnections();
      return new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function setup(reset: (s: Seen) => boolean) {
  const s = await server(reset);
  const t = new HttpTransport();
  cleanups.push(() => t.close(), s.close);
  return { ...s, t };
}

const spec = (url: URL, method: 'GET' | 'POST' | 'PUT', headers: Record<string, string> = {}) => ({
  method,
  url,
  headers: { 'content-type': 'application/fhir+json', ...headers },
  ...(method === 'GET' ? {} : { body: '{"resourceType":"DocumentReference"}' }),
  timeoutMs: 5_000,
});

describe('HttpTransport on a keep-alive connection the server closes', () => {
  // The second request on the first connection meets the close.
  const staleSecond = (s: Seen) => s.connection === 1 && s.nth === 2;

  for (const [label, method, headers] of [
    ['PUT', 'PUT', {}],
    ['GET', 'GET', {}],
    ['a conditional create', 'POST', { 'If-None-Exist': 'identifier=urn:t|1' }],
  ] as const) {
    it(`sends ${label} once more on a new connection`, async () => {
      const { url, seen, t } = await setup(staleSecond);
      expect(await t.exchange(spec(url, method, headers))).toMatchObject({ kind: 'response', status: 200 });
      expect(await t.exchange(spec(url, method, headers))).toMatchObject({ kind: 'response', status: 200 });
      expect(seen.map((s) => [s.connection, s.nth])).toEqual([
        [1, 1],
        [1, 2],
        [2, 1],
      ]);
    });
  }

  it('answers a plain POST as failed after it was written, without resending it', async () => {
    const { url, seen, t } = await setup(staleSecond);
    expect(await t.exchange(spec(url, 'POST'))).toMatchObject({ kind: 'response', status: 200 });
    expect(await t.exchange(spec(url, 'POST'))).toMatchObject({
      kind: 'failed',
      connected: true,
      written: true,
      errorCode: 'ECONNRESET',
    });
    expect(seen).toHaveLength(2);
  });

  it('does not resend when a new connection is reset', async () => {
    const { url, seen, t } = await setup((s) => s.connection === 1);
    expect(await t.exchange(spec(url, 'PUT'))).toMatchObject({ kind: 'failed', errorCode: 'ECONNRESET' });
    expect(seen).toHaveLength(1);
  });

  it('resends once only', async () => {
    const { url, seen, t } = await setup((s) => s.connection > 1 || s.nth === 2);
    expect(await t.exchange(spec(url, 'PUT'))).toMatchObject({ kind: 'response', status: 200 });
    expect(await t.exchange(spec(url, 'PUT'))).toMatchObject({ kind: 'failed', errorCode: 'ECONNRESET' });
    expect(seen).toHaveLength(3);
  });
});
