/**
 * The egress guard at connection time, over real sockets: a configured host name that resolves to a link-local
 * address is refused before any connection is made (the resolver is injected, as no DNS here answers with one),
 * and ordinary names still connect — through Node's own lookup, with the `all` form that Node's happy-eyeballs
 * connect asks for and the single-address form.
 */
import type { LookupAddress } from 'node:dns';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpTransport } from '../deliver/fhir-http.ts';
import { openSocket } from '../deliver/mllp-socket.ts';
import { guardedLookup, guardLookup, HostAllowList, neverReason, patternProblem } from './egress.ts';

let server: net.Server;
let port: number;
let connections = 0;
const sockets = new Set<net.Socket>();

beforeAll(async () => {
  server = net.createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('error', () => {}); // clients here hang up at once
    s.on('close', () => sockets.delete(s));
    s.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

const answering =
  (addresses: LookupAddress[]) =>
  (_h: string, _o: unknown, cb: (e: NodeJS.ErrnoException | null, a: LookupAddress[]) => void) =>
    cb(null, addresses);

function connect(host: string, lookup: net.LookupFunction): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, lookup });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

describe('egress guard', () => {
  it('refuses a name resolving to a link-local address, even beside a good one; no connection is made', async () => {
    const before = connections;
    const bad = guardLookup(
      answering([
        { address: '127.0.0.1', family: 4 },
        { address: '169.254.169.254', family: 4 },
      ]),
    );
    expect(await connect('ehr.test', bad)).toBe('EGRESS_REFUSED');
    const v6 = guardLookup(answering([{ address: 'fe80::1', family: 6 }]));
    expect(await connect('ehr.test', v6)).toBe('EGRESS_REFUSED');
    const good = guardLookup(answering([{ address: '127.0.0.1', family: 4 }]));
    expect(await connect('ehr.test', good)).toBe('connected');
    expect(connections).toBe(before + 1);
  });

  it('lets ordinary names through Node’s own lookup: a raw socket, the FHIR transport and the MLLP socket', async () => {
    expect(await connect('localhost', guardedLookup)).toBe('connected');
    const http = new HttpTransport();
    try {
      const ex = await http.exchange({
        method: 'GET',
        url: new URL(`http://localhost:${port}/metadata`),
        headers: {},
        timeoutMs: 5_000,
      });
      expect(ex).toMatchObject({ kind: 'response', status: 204 });
    } finally {
      http.close();
    }
    const mllp = await openSocket({ host: 'localhost', port, connectTimeoutMs: 5_000 });
    expect(mllp.ok).toBe(true);
    if (mllp.ok) mllp.socket.destroy();
  });

  it('knows the never-addresses and matches allow-list patterns', () => {
    for (const h of ['169.254.169.254', '169.254.0.1', 'fe80::1', 'fd00:ec2::254', '::ffff:169.254.169.254'])
      expect(neverReason(h), h).toMatch(/link-local/);
    expect(neverReason('metadata.google.internal.')).toMatch(/metadata/);
    for (const h of ['127.0.0.1', '10.0.0.1', '::1', 'ehr.example.org', '169.255.0.1'])
      expect(neverReason(h), h).toBeUndefined();
    const allow = new HostAllowList(['*.example.org', 'EHR.Local', '10.0.0.0/8', '::1', '2001:db8::/32']);
    for (const h of [
      'a.example.org',
      'a.b.example.org',
      'ehr.local',
      'ehr.local.',
      '10.9.8.7',
      '::1',
      '2001:db8::5',
    ])
      expect(allow.allows(h), h).toBe(true);
    for (const h of ['example.org', 'badexample.org', 'ehr.local.evil', '11.0.0.1', '::2', '127.0.0.1'])
      expect(allow.allows(h), h).toBe(false);
    for (const p of ['*.example.org', 'ehr', '10.0.0.0/8', '::/0', '[::1]', 'a-b.c'])
      expect(patternProblem(p), p).toBeUndefined();
    for (const p of ['*', '*.', 'a..b', '[2001:db8::]/32', '-a.b', 'a_b', 'http://x', '10.0.0.0/33', 'x/8'])
      expect(patternProblem(p), p).toBeDefined();
  });
});
