/**
 * Promise: the configuration of PRODUCT.md loads exactly as written, with every optional key and every
 * default, relative paths resolved against the config file's folder, and secrets taken from the environment.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportPKCS8, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { SHIPPED_MAPPINGS_DIR } from '../map/registry.ts';
import { loadConfig } from './load.ts';
import { hashToken } from './resolve.ts';
import { configFile, FULL_EXAMPLE, JWKS, MINIMAL, refusal, SPEC_EXAMPLE, tree } from './testdata/support.ts';
import type { FhirDestinationConfig, MllpDestinationConfig } from './types.ts';

describe('loadConfig: the spec example', () => {
  it('is the YAML block of PRODUCT.md "Configuration", placeholders aside', () => {
    const spec = readFileSync(new URL('../../../shared/spec/PRODUCT.md', import.meta.url), 'utf8');
    const block = /Configuration: one YAML file[\s\S]*?```yaml\n([\s\S]*?)```/.exec(spec)?.[1];
    expect(block).toBeDefined();
    expect(SPEC_EXAMPLE.replace(/"[0-9a-f]{64}"/g, '"<64 hex>"')).toBe(block);
  });

  it('loads, with every default applied', async () => {
    const dir = tree({ 'config.yaml': SPEC_EXAMPLE, 'keys/riverside-clinic.jwks.json': JWKS });
    const config = await loadConfig(join(dir, 'config.yaml'), {});
    expect(config.file).toBe(join(dir, 'config.yaml'));
    expect(config.baseDir).toBe(dir);
    expect(config.store).toEqual({ kind: 'postgres', url: 'postgres://postgres@127.0.0.1:5432/scribe' });
    expect(config.http).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config.auth.tokens.map((t) => [t.role, t.source])).toEqual([
      ['intake', 'file'],
      ['operator', 'file'],
      ['auditor', 'file'],
    ]);
    expect(config.auth.tokens[0]!.sha256).toBe(hashToken('intake-token-for-tests'));
    expect(config.intake).toEqual({
      holdSeconds: 3600,
      sqs: {
        queueUrl: 'http://127.0.0.1:4566/000000000000/signed-notes',
        region: 'us-east-1',
        endpoint: 'http://127.0.0.1:4566',
        deadLetterQueueUrl: 'http://127.0.0.1:4566/000000000000/signed-notes-dlq',
        visibilityTimeoutSeconds: 30,
        waitTimeSeconds: 5,
        maxMessages: 10,
        heartbeatSeconds: 10,
      },
    });
    expect(config.s3).toEqual({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:4566',
      forcePathStyle: true,
    });
    expect(config.tenants).toEqual([
      {
        id: 'riverside-clinic',
        reviewKeys: { kind: 'file', path: join(dir, 'keys/riverside-clinic.jwks.json') },
        destinations: ['ehr-fhir', 'ehr-mdm'],
      },
    ]);
    const retry = { maxAttempts: 8, initialDelayMs: 1000, maxDelayMs: 300000 };
    const mapping = (id: string, format: string) => ({
      ref: id,
      file: join(SHIPPED_MAPPINGS_DIR, `${id}.yaml`),
      format,
    });
    expect(config.destinations).toEqual([
      {
        id: 'ehr-fhir',
        type: 'fhir',
        baseUrl: 'http://127.0.0.1:8103/fhir/R4',
        mapping: mapping('fhir-transaction', 'fhir'),
        auth: { type: 'none' },
        write: 'conditional-create',
        references: 'logical',
        retry,
        concurrency: 4,
        timeoutMs: 30000,
      },
      {
        id: 'ehr-mdm',
        type: 'mllp',
        host: '127.0.0.1',
        port: 2575,
        mapping: mapping('mdm', 'hl7v2'),
        ackTimeoutMs: 30000,
        ackCodes: {},
        retry,
        concurrency: 1,
      },
      {
        id: 'archive',
        type: 'file',
        directory: join(dir, 'out'),
        mapping: mapping('fhir-document', 'fhir'),
        retry,
        concurrency: 4,
      },
    ]);
    expect(Object.isFrozen(config.destinations[0])).toBe(true);
  });

  it('adds the tokens of SCRIBE_BRIDGE_TOKEN_* (hashed, for every tenant)', async () => {
    const file = configFile(SPEC_EXAMPLE);
    const config = await loadConfig(file, { SCRIBE_BRIDGE_TOKEN_OPERATOR: 'an operator token from env' });
    const fromEnv = config.auth.tokens.filter((t) => t.source === 'env');
    expect(fromEnv).toEqual([
      { role: 'operator', sha256: hashToken('an operator token from env'), source: 'env' },
    ]);
    expect(JSON.stringify(config)).not.toContain('an operator token from env');
  });
});

describe('loadConfig: every optional key', () => {
  it('loads full.yaml and keeps each value', async () => {
    const { privateKey } = await generateKeyPair('ES384', { extractable: true });
    const dir = tree({
      'config.yaml': FULL_EXAMPLE,
      'keys/riverside-clinic.jwks.json': JWKS,
      'tls/ca.pem': 'ca',
      'tls/client.pem': 'cert',
      'tls/client.key': 'key',
      'smart.pem': await exportPKCS8(privateKey),
    });
    const env = { EHR_BEARER_TOKEN: 'bearer-secret', EHR_CLIENT_SECRET: 'client-secret' };
    const config = await loadConfig(join(dir, 'config.yaml'), env);
    expect(config.store).toEqual({ kind: 'pglite', dir: join(dir, 'state/ledger') });
    expect(config.http).toEqual({ host: '0.0.0.0', port: 9090 });
    expect(config.auth.tokens[0]).toMatchObject({ role: 'intake', tenants: ['riverside-clinic'] });
    expect(config.auth.tokens[1]!.tenants).toBeUndefined();
    expect(config.intake.sqs).toMatchObject({ maxMessages: 5, heartbeatSeconds: 45, waitTimeSeconds: 20 });
    expect(config.intake.sqs!.endpoint).toBeUndefined();
    expect(config.intake.holdSeconds).toBe(600);
    expect(config.s3).toEqual({ region: 'eu-west-1', forcePathStyle: false });
    expect(config.shutdownSeconds).toBe(10);
    expect(config.egress).toEqual({
      allowHosts: ['*.amazonaws.com', 'ehr.example.org', 'review.example.org', '10.0.0.0/24'],
    });
    expect(config.tenants[1]!.reviewKeys).toEqual({
      kind: 'url',
      url: 'https://review.example.org/.well-known/jwks.json',
    });

    const [bearer, cc, smart, mtls, mdm, drop] = config.destinations as [
      FhirDestinationConfig,
      FhirDestinationConfig,
      FhirDestinationConfig,
      FhirDestinationConfig,
      MllpDestinationConfig,
      (typeof config.destinations)[number],
    ];
    expect(bearer).toMatchObject({
      write: 'put',
      references: 'resolve',
      retry: { maxAttempts: 20, initialDelayMs: 500, maxDelayMs: 60000 },
      concurrency: 8,
      timeoutMs: 10000,
      tls: { ca: join(dir, 'tls/ca.pem') },
      renderings: ['plain', 'html'],
    });
    expect(bearer.auth.type === 'bearer' && bearer.auth.token.reveal()).toBe('bearer-secret');
    expect(cc.auth.type === 'client-credentials' && cc.auth.clientSecret.reveal()).toBe('client-secret');
    expect(cc.auth).toMatchObject({ scope: 'system/DocumentReference.write', clientId: 'scribe-bridge' });
    expect(smart.auth).toMatchObject({
      type: 'smart-backend',
      kid: 'key-2026',
      alg: 'ES384',
      privateKeySource: { file: join(dir, 'smart.pem') },
    });
    expect(smart.auth.type === 'smart-backend' && smart.auth.privateKey.reveal()).toContain('PRIVATE KEY');
    expect(mtls.tls).toEqual({
      ca: join(dir, 'tls/ca.pem'),
      cert: join(dir, 'tls/client.pem'),
      key: join(dir, 'tls/client.key'),
      servername: 'ehr.example.org',
    });
    expect(mdm).toMatchObject({
      sendingApplication: 'SCRIBE-BRIDGE',
      receivingFacility: 'RIVERSIDE^1.2.3^ISO',
      ackTimeoutMs: 5000,
      concurrency: 2,
      retry: { maxAttempts: 3, initialDelayMs: 1000, maxDelayMs: 300000 },
      ackCodes: { AR: 'rejected', CE: 'rejected' },
    });
    expect(drop).toMatchObject({ type: 'file', directory: join(dir, 'drop'), mapping: { format: 'hl7v2' } });
  });

  it('reads the auth keys nested under the type name (`bearer: { tokenEnv }`) as the flat form', async () => {
    const flat = MINIMAL.replace('auth: { type: none }', 'auth: { type: bearer, tokenEnv: EHR_TOKEN }');
    const nested = MINIMAL.replace(
      'auth: { type: none }',
      'auth: { type: bearer, bearer: { tokenEnv: EHR_TOKEN } }',
    );
    expect(nested).not.toBe(MINIMAL);
    const env = { EHR_TOKEN: 'a bearer token' };
    const a = (await loadConfig(configFile(flat), env)).destinations[0] as FhirDestinationConfig;
    const b = (await loadConfig(configFile(nested), env)).destinations[0] as FhirDestinationConfig;
    expect(b.auth).toMatchObject({ type: 'bearer', tokenEnv: 'EHR_TOKEN' });
    expect(b.auth.type === 'bearer' && b.auth.token.reveal()).toBe('a bearer token');
    expect({ ...b, auth: { ...b.auth, token: null } }).toEqual({ ...a, auth: { ...a.auth, token: null } });

    const cc = MINIMAL.replace(
      'auth: { type: none }',
      'auth:\n      type: client-credentials\n      client-credentials:\n        tokenUrl: http://127.0.0.1:9/token\n        clientId: c\n        clientSecretEnv: CS\n',
    );
    const c = (await loadConfig(configFile(cc), { CS: 's' })).destinations[0] as FhirDestinationConfig;
    expect(c.auth).toMatchObject({ type: 'client-credentials', clientId: 'c' });
  });

  it('takes a smart-backend private key from the environment as a private JWK', async () => {
    const { privateKey } = await generateKeyPair('RS384', { extractable: true });
    const { exportJWK } = await import('jose');
    const jwk = JSON.stringify(await exportJWK(privateKey));
    const text = MINIMAL.replace(
      'auth: { type: none }',
      'auth: { type: smart-backend, tokenUrl: https://ehr.example.org/token, clientId: c, privateKeyEnv: SMART_KEY, kid: k, alg: RS384 }',
    ).replace('http://127.0.0.1:8103', 'https://ehr.example.org');
    const config = await loadConfig(configFile(text), { SMART_KEY: jwk });
    const auth = (config.destinations[0] as FhirDestinationConfig).auth;
    expect(auth).toMatchObject({ type: 'smart-backend', privateKeySource: { env: 'SMART_KEY' } });
  });
});

describe('loadConfig: paths', () => {
  it('resolves every relative path against the config file, not the working directory', async () => {
    const mapping = readFileSync(join(SHIPPED_MAPPINGS_DIR, 'mdm.yaml'), 'utf8').replace(
      'imports: [common/fhir-common.yaml]',
      `imports: [${join(SHIPPED_MAPPINGS_DIR, 'common/fhir-common.yaml')}]`,
    );
    const dir = tree({
      'shared/keys/t.jwks.json': JWKS,
      'etc/mappings/my-mdm.yaml': mapping,
      'etc/config.yaml': `store: pglite://../var/db
tenants:
  - { id: t, reviewKeys: ../shared/keys/t.jwks.json, destinations: [drop] }
destinations:
  - { id: drop, type: file, directory: outbox, mapping: ./mappings/my-mdm.yaml }
`,
    });
    const config = await loadConfig(join(dir, 'etc/config.yaml'), {});
    expect(config.store).toEqual({ kind: 'pglite', dir: join(dir, 'var/db') });
    expect(config.tenants[0]!.reviewKeys).toEqual({
      kind: 'file',
      path: join(dir, 'shared/keys/t.jwks.json'),
    });
    expect(config.destinations[0]).toMatchObject({
      directory: join(dir, 'etc/outbox'),
      mapping: {
        ref: './mappings/my-mdm.yaml',
        file: join(dir, 'etc/mappings/my-mdm.yaml'),
        format: 'hl7v2',
      },
    });
  });

  it('takes pglite:///abs/dir as an absolute directory', async () => {
    const abs = tree({});
    const config = await loadConfig(configFile(MINIMAL.replace('pglite://./data', `pglite://${abs}/db`)), {});
    expect(config.store).toEqual({ kind: 'pglite', dir: join(abs, 'db') });
  });

  it('uses $SCRIBE_BRIDGE_CONFIG when no path is given, and says what to do when neither is', async () => {
    const file = configFile(MINIMAL);
    await expect(loadConfig(undefined, { SCRIBE_BRIDGE_CONFIG: file })).resolves.toMatchObject({ file });
    await expect(loadConfig(undefined, {})).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('reports an unreadable file as FILE_UNREADABLE with its path', async () => {
    const file = join(tree({}), 'nope.yaml');
    await expect(loadConfig(file, {})).rejects.toMatchObject({ code: 'FILE_UNREADABLE', where: file });
  });

  it('an empty file is one located problem', async () => {
    const e = await refusal('');
    expect(e.issues).toHaveLength(1);
    expect(e.issues[0]!.message).toBe('the file is empty');
  });

  it('a file is read again on each load (no stale cache)', async () => {
    const file = configFile(MINIMAL);
    expect((await loadConfig(file, {})).http.port).toBe(8080);
    writeFileSync(file, `${MINIMAL}http: { port: 9999 }\n`);
    expect((await loadConfig(file, {})).http.port).toBe(9999);
  });
});
