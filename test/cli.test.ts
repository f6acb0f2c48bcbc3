/**
 * The command line as users run it: a real process, real files, exit codes and output.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { fieldText, parseEr7, segmentsNamed } from './support/hl7-parse.ts';
import { startMllpServer } from './support/mllp-server.ts';
import { SHARED_PROFILES } from './support/profiles.ts';

const root = new URL('../', import.meta.url).pathname;
const bin = join(root, 'bin/scribe-bridge.js');
const run = async (args: string[], o: { cwd?: string } = {}) => {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], {
      cwd: o.cwd ?? root,
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
};
const valid = 'fixtures/envelopes/valid';

describe('scribe-bridge verify', () => {
  it('prints a one-line summary for a valid envelope', async () => {
    const r = await run([
      'verify',
      `${valid}/hp-typical.json`,
      '--keys',
      'fixtures/keys/riverside-clinic.jwks.json',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^OK riverside-clinic\/enc-4471-hp r1 final HISTORY_AND_PHYSICAL: 47 sentence\(s\) \(39 ai-verbatim, 5 clinician-edited, 3 clinician-added\), 2 draft sentence\(s\) removed; signed by riverside-review-es256-TEST \(ES256\)\n$/,
    );
  });

  it('fails with the code and a located message', async () => {
    const r = await run([
      'verify',
      'fixtures/envelopes/invalid/evidence-unknown-segment.json',
      '--keys',
      'fixtures/keys',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error EVIDENCE_UNKNOWN_SEGMENT: sentence "s\d+" cites segment .* \(at \$\.note\.sections\[\d+\]\.sentences\[\d+\]\.evidence\[\d+\]\)\. /,
    );
  });

  it('checks a folder with per-tenant keys and summarises by code', async () => {
    const ok = await run(['verify', valid, '--keys', 'fixtures/keys']);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toContain('checked 12 envelope(s): 12 valid, 0 invalid');
    const bad = await run(['verify', 'fixtures/envelopes/invalid', '--keys', 'fixtures/keys']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/checked 36 envelope\(s\): 0 valid, 36 invalid \(.*LIFECYCLE_INVALID×4.*\)/);
  });

  it('gives usage errors exit code 2', async () => {
    const r = await run(['verify', `${valid}/hp-typical.json`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--keys/);
    // Also those a command finds itself (USAGE), not only the argument parser's.
    const send = await run([
      'send',
      '--mllp',
      'nohostport',
      `${valid}/hp-typical.json`,
      '--keys',
      'fixtures/keys',
    ]);
    expect([send.code, send.stderr]).toEqual([2, expect.stringContaining('error USAGE')]);
    const replay = await run(['dead-letters', 'replay', '--delivery', 'abc']);
    expect([replay.code, replay.stderr]).toEqual([2, expect.stringContaining('error USAGE')]);
    const nothing = await run(['dead-letters', 'replay']);
    expect([nothing.code, nothing.stderr]).toEqual([
      2,
      expect.stringContaining('error USAGE: name what to replay'),
    ]);
  });
});

describe('scribe-bridge map', () => {
  it('prints the payload, and --out writes the same exact bytes', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'sb-map-')), 'docref.json');
    const printed = await run(['map', `${valid}/hp-typical.json`, '--mapping', 'us-core-docref']);
    expect(printed.code).toBe(0);
    const written = await run([
      'map',
      `${valid}/hp-typical.json`,
      '--mapping',
      'us-core-docref',
      '--out',
      out,
    ]);
    expect(written.code).toBe(0);
    const bytes = readFileSync(out);
    expect(`${bytes.toString('utf8')}\n`).toBe(printed.stdout);
    expect(written.stderr).toContain(createHash('sha256').update(bytes).digest('hex'));
    expect(JSON.parse(bytes.toString('utf8')).resourceType).toBe('DocumentReference');
  });

  it('--out into a missing folder, or onto a folder: FILE_UNWRITABLE naming the path, nothing left behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-map-out-'));
    for (const [out, why] of [
      [join(dir, 'no-such-folder', 'x.hl7'), 'its folder does not exist'],
      [dir, 'it is a folder'],
    ] as const) {
      const r = await run(['map', `${valid}/hp-typical.json`, '--mapping', 'mdm', '--out', out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`FILE_UNWRITABLE: cannot write the output file (${why}) (at ${out})`);
      expect(r.stderr).not.toContain('INTERNAL');
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('renders a retraction from the revision found beside it', async () => {
    const r = await run([
      'map',
      `${valid}/hp-typical.r3-entered-in-error.json`,
      '--mapping',
      'fhir-transaction',
    ]);
    expect(r.code).toBe(0);
    const bundle = JSON.parse(r.stdout);
    expect(bundle.entry[0].request).toEqual({
      method: 'PUT',
      url: 'DocumentReference?identifier=urn:scribe-bridge:riverside-clinic:note|enc-4471-hp-r2',
    });
    expect(bundle.entry[0].resource.status).toBe('entered-in-error');
  });

  it('says when it is the retracted revision (--prior) that fails, naming its file', async () => {
    const prior = join(mkdtempSync(join(tmpdir(), 'sb-prior-')), 'r2.json');
    writeFileSync(
      prior,
      readFileSync(`${valid}/hp-typical.r2-amended.json`, 'utf8').replace('Chest', 'Chest (tampered)'),
    );
    const r = await run([
      'map',
      `${valid}/hp-typical.r3-entered-in-error.json`,
      '--mapping',
      'mdm',
      '--prior',
      prior,
      '--keys',
      'fixtures/keys/riverside-clinic.jwks.json',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('SIGNATURE_INVALID: the retracted revision: the signature does not verify');
    expect(r.stderr).toContain(`(at ${prior}: $.signature.jws)`);
  });

  it('refuses --rendering for an HL7 mapping, which carries its own, as MAPPING_UNSUPPORTED', async () => {
    const r = await run([
      'map',
      `${valid}/hp-typical.json`,
      '--mapping',
      'mdm',
      '--rendering',
      'html',
      '--keys',
      'fixtures/keys',
    ]);
    expect([r.code, r.stderr]).toEqual([
      1,
      expect.stringContaining('error MAPPING_UNSUPPORTED: --rendering chooses'),
    ]);
  });

  it('refuses an unknown mapping with a located error', async () => {
    const r = await run(['map', `${valid}/hp-typical.json`, '--mapping', 'no-such-mapping']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error MAPPING_NOT_FOUND: /);
  });
});

describe('scribe-bridge mappings', () => {
  it('check names file:line for a broken mapping', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'sb-mc-')), 'broken.yaml');
    writeFileSync(
      file,
      'id: broken\nversion: 1.0.0\ndescription: x\nformat: fhir\noutput:\n  new:\n    resourceType: Basic\n    id: "{{ %nope }}"\n',
    );
    const r = await run(['mappings', 'check', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}:8:5 (output.new.id)`);
    const ok = await run(['mappings', 'check', 'us-core-docref']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^OK us-core-docref \d+\.\d+\.\d+ \(sha256 [0-9a-f]{64}\)/);
  });

  it('check validates what a mapping produces, as the service does before using it', async () => {
    // Compiles and renders every probe, but its output is not a conformant US Core DocumentReference.
    const file = join(mkdtempSync(join(tmpdir(), 'sb-mc-')), 'draft.yaml');
    writeFileSync(
      file,
      'id: draft-docref\nversion: 1.0.0\ndescription: x\nformat: fhir\noutput:\n  new:\n    resourceType: DocumentReference\n    status: draft\n    content:\n      - attachment: { contentType: text/plain, data: aGk= }\n',
    );
    const us = join(new URL(SHARED_PROFILES).pathname, 'us-core-8.0.0');
    const r = await run(['mappings', 'check', file, '--profiles', us]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`FAIL ${file}`);
    expect(r.stderr).toMatch(
      /OUTPUT_INVALID: mapping draft-docref 1\.0\.0 produces non-conformant FHIR for probe/,
    );
    expect(r.stderr).toMatch(/DocumentReference\.status: Value "draft" is not in the required value set/);
    const ok = await run(['mappings', 'check', 'us-core-docref', '--profiles', us]);
    expect(ok.code).toBe(0);
    expect(ok.stderr).not.toContain('base FHIR R4 and scribe-bridge profiles only');
  }, 60_000);

  it('test passes against the checked-in goldens and reports coverage', async () => {
    const r = await run([
      'mappings',
      'test',
      '--mapping',
      'us-core-docref',
      '--keys',
      'fixtures/keys',
      '--coverage',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('golden: 12 passed, 0 failed');
    expect(r.stdout).toMatch(
      /PASS us-core-docref × hp-typical\n {2}sentences\s+47 \/ 47\s+carried\n {2}evidence links\s+0 \/ 269\s+carried/,
    );
    const noLedger = await run(['trace', '--tenant', 'riverside-clinic', '--note', 'x'], {
      cwd: mkdtempSync(join(tmpdir(), 'sb-noledger-')),
    });
    expect([noLedger.code, noLedger.stderr]).toEqual([
      1,
      expect.stringContaining('the ledger directory does not exist'),
    ]);
    const missing = await run(['mappings', 'test', '--envelopes', 'no/such/folder']);
    expect([missing.code, missing.stderr]).toEqual([1, expect.stringContaining('FILE_UNREADABLE')]);
  });
});

describe('scribe-bridge send (MLLP, one-off)', () => {
  it('delivers the T02 to a real MLLP receiver and reports the ACK; AE is rejected after one send', async () => {
    const server = await startMllpServer({ script: [[{ ack: 'AA' }], [{ ack: 'AE', err: 'bad patient' }]] });
    try {
      const ok = await run([
        'send',
        `${valid}/hp-typical.json`,
        '--mllp',
        `127.0.0.1:${server.port}`,
        '--keys',
        'fixtures/keys',
      ]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout).toMatch(
        /^delivered riverside-clinic\/enc-4471-hp r1 → 127\.0\.0\.1:\d+: MSH-10 [A-Z2-7]{20}, 1 attempt\(s\), ACK AA\n$/,
      );
      const msg = parseEr7(server.received[0]!.raw);
      expect(fieldText(segmentsNamed(msg, 'MSH')[0]!, 9, 2)).toBe('T02');
      expect(fieldText(segmentsNamed(msg, 'TXA')[0]!, 12)).toBe('enc-4471-hp-r1');
      const bad = await run([
        'send',
        `${valid}/hp-typical.json`,
        '--mllp',
        `127.0.0.1:${server.port}`,
        '--keys',
        'fixtures/keys',
      ]);
      expect(bad.code).toBe(1);
      expect(bad.stdout).toMatch(/^rejected /);
      expect(bad.stderr).toMatch(/error MLLP_REJECTED: /);
      expect(server.received).toHaveLength(2);
    } finally {
      await server.close();
    }
  });

  it('refuses to send an envelope whose signature does not verify', async () => {
    const server = await startMllpServer();
    try {
      const r = await run([
        'send',
        'fixtures/envelopes/invalid/signature-text-changed.json',
        '--mllp',
        `127.0.0.1:${server.port}`,
        '--keys',
        'fixtures/keys',
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^error SIGNATURE_INVALID/);
      expect(server.received).toHaveLength(0);
    } finally {
      await server.close();
    }
  });
});
