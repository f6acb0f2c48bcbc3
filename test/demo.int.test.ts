/**
 * `scribe-bridge demo` as a user runs it: the real launcher in a child process (no config, no network), with
 * `--json` and `--keep`. Checked from its summary and, independently, from the ledger it kept: every fixture
 * revision delivered exactly once to each destination (one delivered attempt each, the receipts the summary
 * printed), the sinks' own counts, the poison message dead-lettered with its code and never recorded, and no
 * names from the fixtures anywhere in its output.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { DemoResult } from '../src/demo/run.ts';
import { Ledger } from '../src/ledger/ledger.ts';

const root = new URL('../', import.meta.url).pathname;
const keep = mkdtempSync(join(tmpdir(), 'sb-demo-test-'));

afterAll(() => rmSync(keep, { recursive: true, force: true }));

interface ManifestEntry {
  file: string;
  tenant: string;
  noteId: string;
  revision: number;
  status: string;
}

describe('scribe-bridge demo', () => {
  it('sends every fixture through the queue to both EHRs exactly once and dead-letters the poison message', async () => {
    const run = await promisify(execFile)(
      process.execPath,
      ['bin/scribe-bridge.js', 'demo', '--json', '--keep', keep],
      {
        cwd: root,
        env: { ...process.env, SCRIBE_BRIDGE_PROFILES: '' },
        maxBuffer: 16 * 1024 * 1024,
        timeout: 110_000,
      },
    ).catch((e: { code?: number; stdout?: string; stderr?: string }) => {
      throw new Error(`demo exited ${e.code}: ${e.stderr}`);
    });
    const result = JSON.parse(run.stdout) as DemoResult;
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    // Not a terminal: plain progress lines, and the missing profiles said.
    expect(run.stderr).toMatch(/sent 13\/13/);
    expect(run.stderr).toMatch(/deliveries ended 24\/24/);
    expect(result.profiles).toEqual([]);

    // Every fixture revision, in revision order per note, delivered to both destinations.
    const manifest = (
      JSON.parse(readFileSync(join(root, 'fixtures/envelopes/valid.manifest.json'), 'utf8')) as {
        envelopes: ManifestEntry[];
      }
    ).envelopes;
    expect(result.notes.map((n) => `${n.tenant}/${n.noteId}/${n.revision}`).sort()).toEqual(
      manifest.map((e) => `${e.tenant}/${e.noteId}/${e.revision}`).sort(),
    );
    const order = result.notes.map((n) => `${n.noteId}/${n.revision}`);
    expect(order.indexOf('enc-4471-hp/1')).toBeLessThan(order.indexOf('enc-4471-hp/2'));
    expect(order.indexOf('enc-4471-hp/2')).toBeLessThan(order.indexOf('enc-4471-hp/3'));
    expect(new Set(result.notes.map((n) => n.sentAs))).toEqual(
      new Set(['s3-artifacts', 'pointer', 'inline']),
    );
    for (const n of result.notes) {
      expect(n.deliveries.map((d) => [d.destination, d.state])).toEqual([
        ['ehr-fhir', 'delivered'],
        ['ehr-mdm', 'delivered'],
      ]);
      const fhir = n.deliveries[0]!.fhir!;
      const mllp = n.deliveries[1]!.mllp!;
      // The sinks' own counts: one resource per identifier, one message per MSH-10.
      expect(fhir.onServer).toBe(1);
      expect(mllp.received).toBe(1);
      expect(mllp.ackCode).toBe('AA');
      expect(fhir.resourceType).toBe('DocumentReference');
      if (n.status === 'entered-in-error') {
        expect(fhir.status).toBe('entered-in-error');
        expect(mllp.event).toBe('MDM^T03^MDM_T01');
        expect(mllp.documentNumber).toBe(`${n.noteId}-r${n.revision - 1}`);
      } else {
        expect(mllp.documentNumber).toBe(`${n.noteId}-r${n.revision}`);
        expect(mllp.event).toBe(n.revision === 1 ? 'MDM^T02^MDM_T02' : 'MDM^T10^MDM_T02');
      }
      // The trace module's view: found again from both EHRs' ids, signature and hashes re-checked.
      expect(n.trace.error).toBeUndefined();
      expect([n.trace.signatureVerified, n.trace.hashesOk]).toEqual([true, true]);
      expect(n.trace.resolvedFrom).toEqual([`DocumentReference/${fhir.id}`, `MSH-10 ${mllp.controlId}`]);
      expect(n.trace.sentences).toBe(Object.values(n.provenance.sentences).reduce((a, b) => a + b, 0));
      expect(n.trace.url).toContain(`/v1/trace?tenant=${n.tenant}&noteId=${n.noteId}&revision=${n.revision}`);
    }
    // r2 replaced r1 and r3 retracted r2: the FHIR resource of r3 is r2's, in a later version.
    const hp = result.notes.filter((n) => n.noteId === 'enc-4471-hp');
    expect(hp[2]!.deliveries[0]!.fhir!.id).toBe(hp[1]!.deliveries[0]!.fhir!.id);
    expect(hp[2]!.deliveries[0]!.fhir!.versionId).not.toBe(hp[1]!.deliveries[0]!.fhir!.versionId);

    // The poison message: in the DLQ with its reason code; the queue drained.
    expect(result.deadLetters).toHaveLength(1);
    expect(result.deadLetters[0]!.code).toBe('SIGNATURE_INVALID');
    expect(result.queueDepth).toBe(0);

    // Independently, the kept ledger: one delivered attempt per (revision, destination), the printed receipts.
    expect(result.kept?.config).toBe(join(keep, 'serve.yaml'));
    const ledger = await Ledger.open(`pglite://${join(keep, 'ledger')}`);
    try {
      const rows = await ledger.db.query<{
        tenant: string;
        note_id: string;
        revision: number;
        destination: string;
        state: string;
        delivered: number;
        receipt: { id?: string; controlId?: string };
      }>(
        `select d.tenant, d.note_id, d.revision::int as revision, d.destination, d.state, d.receipt,
           (select count(*)::int from delivery_attempts a where a.delivery_id = d.id and a.outcome = 'delivered') as delivered
         from deliveries d order by d.tenant, d.note_id, d.revision, d.destination`,
      );
      expect(rows).toHaveLength(manifest.length * 2);
      for (const r of rows) {
        expect([r.state, r.delivered]).toEqual(['delivered', 1]);
        const printed = result.notes
          .find((n) => n.tenant === r.tenant && n.noteId === r.note_id && n.revision === r.revision)!
          .deliveries.find((d) => d.destination === r.destination)!;
        if (r.destination === 'ehr-fhir') expect(r.receipt.id).toBe(printed.fhir!.id);
        else expect(r.receipt.controlId).toBe(printed.mllp!.controlId);
      }
      const tampered = await ledger.db.query(`select 1 from note_revisions where note_id like '%-tampered'`);
      expect(tampered).toHaveLength(0);
    } finally {
      await ledger.close();
    }

    // No PHI of the fixtures in the output: no patient or author family name appears.
    const names = new Set<string>();
    for (const e of manifest) {
      const env = JSON.parse(readFileSync(join(root, 'fixtures/envelopes/valid', e.file), 'utf8')) as {
        patient: { name?: { family?: string } };
        author: { name?: { family?: string } };
      };
      for (const n of [env.patient.name?.family, env.author.name?.family]) if (n) names.add(n);
    }
    expect(names.size).toBeGreaterThan(2);
    for (const n of names) expect(`${run.stdout}${run.stderr}`).not.toContain(n);
  }, 120_000);
});
