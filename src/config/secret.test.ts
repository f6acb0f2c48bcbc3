/**
 * Promise: a secret resolved from the environment (or a key file) can never be printed by accident —
 * JSON, string conversion, util.inspect at any depth, util.format and pino all show `[redacted]` for it,
 * for a Secret alone and for the whole Config — and error messages never quote one.
 */
import { Writable } from 'node:stream';
import { format, inspect } from 'node:util';
import { exportPKCS8, generateKeyPair } from 'jose';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './load.ts';
import { REDACTED, Secret } from './secret.ts';
import { configFile, FULL_EXAMPLE, JWKS, MINIMAL, refusal, tree } from './testdata/support.ts';

const BEARER = 'canary-bearer-7f3a91';
const CLIENT = 'canary-client-secret-52bd0e';
const INTAKE = 'canary-intake-token-c41e8d';

/** Every way a value commonly ends up in a log line or a response. */
async function renderings(value: unknown): Promise<string[]> {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const log = pino({ level: 'info' }, sink);
  log.info({ config: value }, 'loaded');
  log.info(value as object);
  await new Promise((r) => setImmediate(r));
  return [
    JSON.stringify(value),
    JSON.stringify(structuredClone(value)),
    String(value),
    `${value}`,
    inspect(value, { depth: Number.POSITIVE_INFINITY, showHidden: true, getters: true }),
    format('%s %o %O %j', value, value, value, value),
    ...lines,
  ];
}

describe('Secret', () => {
  it('redacts itself in every printed form and gives its value only to reveal()', async () => {
    const s = new Secret('hunter2-canary');
    expect(s.reveal()).toBe('hunter2-canary');
    for (const text of await renderings(s)) expect(text).not.toContain('hunter2-canary');
    expect(String(s)).toBe(REDACTED);
    expect(JSON.stringify({ s })).toBe(`{"s":"${REDACTED}"}`);
    expect(Object.keys(s)).toEqual([]);
    expect({ ...s }).toEqual({});
  });
});

describe('a whole Config', () => {
  it('never prints a secret it holds', async () => {
    const { privateKey } = await generateKeyPair('ES384', { extractable: true });
    const pem = await exportPKCS8(privateKey);
    const keyBody = pem.split('\n')[1]!;
    const dir = tree({
      'config.yaml': FULL_EXAMPLE,
      'keys/riverside-clinic.jwks.json': JWKS,
      'tls/ca.pem': 'ca',
      'tls/client.pem': 'cert',
      'tls/client.key': 'key',
      'smart.pem': pem,
    });
    const config = await loadConfig(`${dir}/config.yaml`, {
      EHR_BEARER_TOKEN: BEARER,
      EHR_CLIENT_SECRET: CLIENT,
      SCRIBE_BRIDGE_TOKEN_INTAKE: INTAKE,
    });
    // The secrets are there, for the code that needs them…
    expect(inspect(config, { depth: null })).toContain(REDACTED);
    // …and nowhere in any printed form.
    for (const text of await renderings(config)) {
      for (const secret of [BEARER, CLIENT, INTAKE, keyBody]) expect(text).not.toContain(secret);
    }
  });

  it('a refused config does not quote the secrets it read', async () => {
    const text = MINIMAL.replace(
      'auth: { type: none }',
      'auth: { type: smart-backend, tokenUrl: https://ehr.example.org/t, clientId: c, privateKeyEnv: K, kid: k, alg: ES384 }',
    ).replace('http://127.0.0.1:8103', 'https://ehr.example.org');
    const e = await refusal(text, { K: 'canary-not-a-key-9d2f' });
    expect(e.issues).toHaveLength(1);
    expect(JSON.stringify([e.message, e.issues, e.toOperationOutcome(), inspect(e)])).not.toContain(
      'canary-not-a-key-9d2f',
    );
  });

  it('a config with no secrets loads without any Secret in it', async () => {
    const config = await loadConfig(configFile(MINIMAL), {});
    expect(inspect(config, { depth: null })).not.toContain(REDACTED);
  });
});
