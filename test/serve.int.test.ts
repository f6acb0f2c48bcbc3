/**
 * `scribe-bridge serve` as an operator runs it: a real process with a config file (PGlite in a temp folder,
 * HTTP on a free port, a file-drop destination), a note POSTed with the intake token and delivered by the
 * service's own workers, status read with the operator token, then SIGTERM → graceful stop, exit 0. And the
 * embedded defaults: no config, keys from ./keys, tokens generated and printed once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashToken } from '../src/config/index.ts';
import { signEnvelope } from '../src/contract/signature.ts';

const root = new URL('../', import.meta.url).pathname;
const fixtures = join(root, 'fixtures');
const bin = join(root, 'bin/scribe-bridge.js');

function start(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): { child: ChildProcess; url: Promise<string>; stdout: () => string; stderr: () => string } {
  const child = spawn(process.execPath, [bin, 'serve', ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const url = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
  return { child, url, stdout: () => out, stderr: () => err };
}

async function until<T>(f: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((r) => child.on('exit', (code) => r(code)));

describe('scribe-bridge serve', () => {
  it('takes a note over HTTP, delivers it with its own workers, and stops gracefully on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-serve-'));
    writeFileSync(
      join(dir, 'config.yaml'),
      `store: pglite://./data
http: { host: 127.0.0.1, port: 0 }
auth:
  tokens:
    - { role: intake, sha256: "${hashToken('in-tok')}" }
    - { role: operator, sha256: "${hashToken('op-tok')}" }
tenants:
  - id: riverside-clinic
    reviewKeys: ${fixtures}/keys/riverside-clinic.jwks.json
    destinations: [archive]
destinations:
  - id: archive
    type: file
    directory: ./out
    mapping: fhir-document
`,
    );
    const s = start(['--config', join(dir, 'config.yaml')], dir);
    const url = await s.url;
    const envelope = readFileSync(join(fixtures, 'envelopes/valid/dap-depression.json'), 'utf8');
    const noteId = JSON.parse(envelope).noteId as string;
    const posted = await fetch(`${url}/v1/notes`, {
      method: 'POST',
      body: envelope,
      headers: { authorization: 'Bearer in-tok' },
    });
    expect(posted.status).toBe(202);
    const delivered = await until(async () => {
      const r = await fetch(`${url}/v1/notes/riverside-clinic/${noteId}`, {
        headers: { authorization: 'Bearer op-tok' },
      });
      const b = (await r.json()) as { revisions: Array<{ deliveries: Array<{ state: string }> }> };
      return b.revisions[0]!.deliveries[0]!.state === 'delivered' ? b : undefined;
    });
    expect(delivered.revisions).toHaveLength(1);
    expect(existsSync(join(dir, 'out', 'riverside-clinic', noteId, 'r1.json'))).toBe(true);
    // Prometheus metrics: the attempt, the latency histogram, intake by outcome; the backlog is empty again.
    const metrics = await (
      await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer op-tok' } })
    ).text();
    expect(metrics).toContain(
      'scribe_bridge_delivery_attempts_total{destination="archive",outcome="delivered"} 1',
    );
    expect(metrics).toContain('scribe_bridge_intake_total{source="http",outcome="accepted"} 1');
    // A conflict (same note and revision, other signed content) is counted once, as a conflict.
    const priv = JSON.parse(readFileSync(join(fixtures, 'keys/riverside-clinic.private.jwks.json'), 'utf8'));
    const changed = JSON.parse(envelope);
    changed.note.sections[0].sentences[0].text += ' (changed)';
    const resigned = await signEnvelope(
      changed,
      priv.keys.find((k: { kid: string }) => k.kid === 'riverside-review-es256-TEST'),
      { kid: 'riverside-review-es256-TEST', alg: 'ES256' },
    );
    const conflict = await fetch(`${url}/v1/notes`, {
      method: 'POST',
      body: JSON.stringify(resigned),
      headers: { authorization: 'Bearer in-tok' },
    });
    expect(conflict.status).toBe(409);
    const after = await (
      await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer op-tok' } })
    ).text();
    expect(after).toContain('scribe_bridge_intake_total{source="http",outcome="conflict"} 1');
    expect(after).not.toContain('outcome="NOTE_CONFLICT"');
    expect(metrics).toMatch(/scribe_bridge_intake_to_delivered_seconds_count\{destination="archive"\} 1/);
    expect(metrics).toContain('scribe_bridge_oldest_pending_age_seconds 0');
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    s.child.kill('SIGTERM');
    expect(await exited(s.child)).toBe(0);
    // Logs are JSON lines with ids and codes; the note's text never appears.
    expect(s.stderr()).toContain('"event":"service.started"');
    expect(s.stderr()).not.toContain(JSON.parse(envelope).note.sections[0].sentences[0].text);
  }, 90_000);

  it('runs on the embedded defaults with no config and prints generated tokens once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-serve-default-'));
    mkdirSync(join(dir, 'keys'));
    copyFileSync(
      join(fixtures, 'keys/riverside-clinic.jwks.json'),
      join(dir, 'keys/riverside-clinic.jwks.json'),
    );
    const s = start([], dir, { SCRIBE_BRIDGE_TOKEN_OPERATOR: 'fixed-operator' });
    const url = await s.url;
    expect(url).toBe('http://127.0.0.1:8080');
    expect(s.stdout()).toMatch(/intake token \(set SCRIBE_BRIDGE_TOKEN_INTAKE to keep it\): \S{20,}/);
    expect(s.stdout()).not.toContain('operator token');
    const token = /intake token \(set SCRIBE_BRIDGE_TOKEN_INTAKE to keep it\): (\S+)/.exec(s.stdout())![1]!;
    const posted = await fetch(`${url}/v1/notes`, {
      method: 'POST',
      body: readFileSync(join(fixtures, 'envelopes/valid/dap-depression.json'), 'utf8'),
      headers: { authorization: `Bearer ${token}` },
    });
    expect(posted.status).toBe(202);
    await until(async () => (existsSync(join(dir, 'out')) ? true : undefined));
    expect(s.stderr()).not.toContain(token);
    s.child.kill('SIGTERM');
    expect(await exited(s.child)).toBe(0);
    expect(existsSync(join(dir, 'data'))).toBe(true);
  }, 90_000);
});
