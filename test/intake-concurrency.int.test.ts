/**
 * Intake verifies and renders a few envelopes at a time (IntakeDeps.verifyingAtOnce), first come first served,
 * and a refused envelope gives its turn back. Real ledger (PGlite in memory), real verification and rendering.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JsonValue } from '../src/contract/json.ts';
import type { ScribeError } from '../src/errors.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { Intake } from '../src/service/intake.ts';
import type { Conformance } from '../src/validate/conformance.ts';
import { fileDropConfig, queueableFixture } from './support/notes.ts';
import { testConformance } from './support/profiles.ts';

describe('Intake concurrency', () => {
  let dir: string;
  let ledger: Ledger | undefined;
  let conformance: Conformance;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-intake-concurrency-'));
    conformance = await testConformance();
  }, 120_000);

  afterAll(async () => {
    await ledger?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('renders at most verifyingAtOnce envelopes at once, admitted in arrival order, and a refusal frees its turn', async () => {
    const config = await fileDropConfig(dir);
    ledger = await Ledger.open('pglite://memory');
    const ids = ['cc-1', 'cc-2', 'cc-3', 'cc-4', 'cc-5', 'cc-6'];
    const bodies = await Promise.all(
      ids.map((id) =>
        queueableFixture('girpp-anxiety.json', (e: { [k: string]: JsonValue }) => {
          e['noteId'] = id;
        }),
      ),
    );
    // Rendering awaits the mapping's proof: hold each there a little, counting who is inside at once.
    let active = 0;
    let most = 0;
    const order: string[] = [];
    const prove = conformance.prove.bind(conformance);
    conformance.prove = (async (m: Parameters<Conformance['prove']>[0]) => {
      active++;
      most = Math.max(most, active);
      await new Promise((r) => setTimeout(r, 15));
      active--;
      return prove(m);
    }) as Conformance['prove'];
    const check = conformance.check.bind(conformance);
    conformance.check = ((r: Parameters<Conformance['check']>[0]) => {
      order.push(JSON.parse(r.body).identifier?.[0]?.value ?? r.body.slice(0, 0));
      return check(r);
    }) as Conformance['check'];

    const intake = new Intake({
      config,
      ledger,
      mappings: new MappingRegistry(),
      conformance,
      verifyingAtOnce: 2,
    });
    const enc = (s: string) => new TextEncoder().encode(s);
    const results = await Promise.allSettled([
      intake.ingest(enc('{"not": "an envelope"}'), 'sqs'),
      ...bodies.map((b) => intake.ingest(enc(b), 'sqs')),
    ]);
    expect(results[0]!.status).toBe('rejected');
    expect(((results[0] as PromiseRejectedResult).reason as ScribeError).code).toBe('ENVELOPE_SCHEMA');
    expect(results.slice(1).map((r) => (r.status === 'fulfilled' ? r.value.outcome : r.reason))).toEqual(
      ids.map(() => 'accepted'),
    );
    expect(most).toBe(2);
    expect(order).toHaveLength(ids.length);
    // First come, first served with two turns: the i-th envelope to finish is one of the first i + 2 to arrive
    // (two admitted together may finish in either order), and each is checked exactly once.
    const finished = order.map((value) => value.replace(/-r\d+$/, ''));
    expect([...finished].sort()).toEqual(ids);
    for (const [i, id] of finished.entries()) expect(ids.slice(0, i + 2)).toContain(id);
  }, 120_000);
});
