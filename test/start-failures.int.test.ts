/**
 * `scribe-bridge serve` failing to start because of its environment says what and where, exits 1 (not 70, an
 * internal defect), and leaves nothing locked: the HTTP port in use, a PostgreSQL database that does not exist,
 * a PGlite directory that cannot be created. (Found by a black-box audit: each was "INTERNAL".) And a stop that
 * cannot finish — a send to a destination that never answers — gives up at `shutdownSeconds` (exit 1) instead
 * of keeping the process up; the failed attempts before it are logged at level warn with their code.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashToken, loadConfig } from '../src/config/index.ts';
import { ScribeError } from '../src/errors.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { createService } from '../src/service/service.ts';
import { until } from './support/service-harness.ts';

const root = new URL('../', import.meta.url).pathname;
const keys = join(root, 'fixtures/keys/riverside-clinic.jwks.json');
const dir = mkdtempSync(join(tmpdir(), 'sb-start-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function config(name: string, store: string, port: number): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `store: ${store}
http: { host: 127.0.0.1, port: ${port} }
tenants:
  - id: riverside-clinic
    reviewKeys: ${keys}
    destinations: [archive]
destinations:
  - id: archive
    type: file
    directory: ./out-${name}
    mapping: us-core-docref
`,
  );
  return file;
}

function serve(configFile: string): Promise<{ code: number | null; stderr: string }> {
  const child: ChildProcess = spawn(
    process.execPath,
    [join(root, 'bin/scribe-bridge.js'), 'serve', '--config', configFile],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += String(d);
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
}

describe('serve: a stop that cannot finish', () => {
  it('gives up at shutdownSeconds with exit 1; failed attempts are logged at warn with their code', async () => {
    // An EHR that takes every request and never answers; the destination's timeout is far away.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => undefined);
      sock.resume();
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const ehrPort = (silent.address() as net.AddressInfo).port;
    const file = join(dir, 'stuck.yaml');
    writeFileSync(
      file,
      `store: pglite://./data-stuck
http: { host: 127.0.0.1, port: 0 }
shutdownSeconds: 2
auth:
  tokens:
    - { role: intake, sha256: "${hashToken('in-tok')}" }
tenants:
  - id: riverside-clinic
    reviewKeys: ${keys}
    destinations: [slow, refused]
destinations:
  - id: slow
    type: fhir
    baseUrl: http://127.0.0.1:${ehrPort}/fhir/R4
    mapping: us-core-docref
    auth: { type: none }
    timeoutMs: 600000
  - id: refused
    type: fhir
    baseUrl: http://127.0.0.1:9/fhir/R4
    mapping: us-core-docref
    auth: { type: none }
    retry: { maxAttempts: 20, initialDelayMs: 100, maxDelayMs: 200 }
`,
    );
    const child = spawn(process.execPath, [join(root, 'bin/scribe-bridge.js'), 'serve', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => {
      out += String(d);
    });
    child.stderr!.on('data', (d) => {
      err += String(d);
    });
    try {
      const url = await until(async () => /listening on (\S+)/.exec(out)?.[1], 60_000, 'listening');
      const envelope = readFileSync(join(root, 'fixtures/envelopes/valid/dap-depression.json'), 'utf8');
      const posted = await fetch(`${url}/v1/notes`, {
        method: 'POST',
        body: envelope,
        headers: { authorization: 'Bearer in-tok' },
      });
      expect(posted.status).toBe(202);
      // The slow EHR has the request; the refused one has failed attempts logged.
      await until(async () => sockets.size > 0 && /"event":"delivery.attempt"/.test(err), 30_000, 'attempts');
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      expect(code).toBe(1);
      expect(Date.now() - t0).toBeLessThan(15_000);
      const lines = err
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: number; event: string; outcome?: string; errorCode?: string });
      expect(lines.find((l) => l.event === 'service.stop-deadline')).toMatchObject({ level: 50, seconds: 2 });
      const failed = lines.find((l) => l.event === 'delivery.attempt' && l.outcome !== 'delivered');
      expect(failed).toMatchObject({ level: 40, errorCode: 'ECONNREFUSED' });
      expect(lines.find((l) => l.event === 'service.started')).toMatchObject({ level: 30 });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  }, 120_000);
});

describe('serve: start-up failures from the environment', () => {
  it('the HTTP port in use: HTTP_LISTEN_FAILED, exit 1; the PGlite store is released', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const file = config('port', 'pglite://./data-port', port);
      const r = await serve(file);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `HTTP_LISTEN_FAILED: cannot listen on 127.0.0.1:${port}: the port is in use`,
      );
      expect(r.stderr).not.toContain('INTERNAL');
      // In process too: the error is thrown and the store it had opened is closed again (its lock released).
      const e = await createService(await loadConfig(file, {})).catch((x: unknown) => x);
      expect((e as ScribeError).code).toBe('HTTP_LISTEN_FAILED');
      const again = await Ledger.open(`pglite://${join(dir, 'data-port')}`);
      await again.close();
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  }, 120_000);

  it('a destination TLS file gone since the config was read: FILE_UNREADABLE, nothing left listening', async () => {
    const ca = join(dir, 'gone-ca.pem');
    writeFileSync(ca, 'not used');
    const file = join(dir, 'tls-gone.yaml');
    writeFileSync(
      file,
      `store: pglite://./data-tls
http: { host: 127.0.0.1, port: 0 }
tenants:
  - id: riverside-clinic
    reviewKeys: ${keys}
    destinations: [ehr-mdm]
destinations:
  - id: ehr-mdm
    type: mllp
    host: 127.0.0.1
    port: 2575
    mapping: mdm
    tls: { ca: ./gone-ca.pem }
`,
    );
    const loaded = await loadConfig(file, {});
    rmSync(ca);
    const e = await createService(loaded).catch((x: unknown) => x);
    expect((e as ScribeError).code).toBe('FILE_UNREADABLE');
    expect((e as ScribeError).where).toBe(ca);
    // The store it had opened is closed again (its lock released).
    const again = await Ledger.open(`pglite://${join(dir, 'data-tls')}`);
    await again.close();
  }, 120_000);

  it('a PostgreSQL database that does not exist, and a PGlite directory that cannot be made: LEDGER_UNAVAILABLE', async () => {
    const missing = await serve(config('nodb', 'postgres://postgres@127.0.0.1:5432/sb_no_such_database', 0));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      'LEDGER_UNAVAILABLE: the PostgreSQL database in the store URL does not exist',
    );
    expect(missing.stderr).toContain('SQLSTATE 3D000');
    expect(missing.stderr).not.toContain('INTERNAL');
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const e = await Ledger.open(`pglite://${file}/ledger`).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ScribeError);
    expect((e as ScribeError).message).toContain('cannot create the PGlite data directory (ENOTDIR)');
  }, 120_000);
});
