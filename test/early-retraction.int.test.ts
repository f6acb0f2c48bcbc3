/**
 * A retraction that arrives before the revision it retracts, through a running service: `POST /v1/notes` answers
 * 202 waiting (the spec: "a revision whose predecessor has not arrived is recorded as waiting"), and once the
 * revision it retracts is in, the service's own housekeeping renders it and its workers deliver it after that
 * revision — here to a file-drop destination, so the order and content on arrival are on disk to read.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashToken } from '../src/config/index.ts';
import { createService, type Service } from '../src/service/service.ts';
import { fileDropConfig, queueableFixture } from './support/notes.ts';
import { until } from './support/service-harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'sb-early-retraction-'));
let service: Service | undefined;

afterAll(async () => {
  await service?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('early retraction through the service', () => {
  it('is recorded as waiting, then rendered and delivered after the revision it retracts', async () => {
    const config = await fileDropConfig(dir, {
      head: `http: { host: 127.0.0.1, port: 0 }
auth:
  tokens:
    - { role: intake, sha256: "${hashToken('early-intake')}" }
`,
    });
    service = await createService(config, { housekeepingMs: 200 });
    const svc = service;
    const noteId = 'enc-4471-early-svc';
    const post = async (file: string) => {
      const body = await queueableFixture(file, (e) => {
        e['noteId'] = noteId;
      });
      const res = await fetch(`${svc.url}/v1/notes`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', authorization: 'Bearer early-intake' },
      });
      return { status: res.status, body: (await res.json()) as { outcome: string } };
    };
    const out = (revision: number) => join(dir, 'out', 'riverside-clinic', noteId, `r${revision}.json`);

    expect(await post('hp-typical.json')).toMatchObject({ status: 202, body: { outcome: 'accepted' } });
    await until(async () => existsSync(out(1)), 30_000, 'revision 1 delivered');
    expect(await post('hp-typical.r3-entered-in-error.json')).toEqual({
      status: 202,
      body: { outcome: 'waiting', deliveries: [] },
    });
    // Nothing of revision 3 goes out while revision 2 is missing, however long housekeeping runs.
    await new Promise((r) => setTimeout(r, 800));
    expect(existsSync(out(3))).toBe(false);
    expect(await post('hp-typical.r2-amended.json')).toMatchObject({
      status: 202,
      body: { outcome: 'accepted' },
    });
    await until(async () => existsSync(out(3)), 30_000, 'the retraction delivered');
    // Revision 2 went first; the retraction re-sends it as entered-in-error (US Core DocumentReference).
    expect(existsSync(out(2))).toBe(true);
    const r2 = JSON.parse(readFileSync(out(2), 'utf8'));
    const r3 = JSON.parse(readFileSync(out(3), 'utf8'));
    expect(r3.status).toBe('entered-in-error');
    expect(r3.identifier).toEqual(r2.identifier);
    const st = await svc.ledger.revisionStatus('riverside-clinic', noteId);
    expect(st?.revisions.map((r) => [r.revision, r.state, r.deliveries.map((d) => d.state)])).toEqual([
      [1, 'accepted', ['delivered']],
      [2, 'accepted', ['delivered']],
      [3, 'accepted', ['delivered']],
    ]);
  }, 120_000);
});
