/**
 * Promise: every kind of mistake in a config file is refused at start with file:line:column and the key
 * path, and all mistakes of one file are reported together, in file order, in one error.
 */
import { exportJWK, exportPKCS8, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { describeProblems, loadConfig } from './load.ts';
import { hashToken } from './resolve.ts';
import { configFile, MINIMAL, problems, refusal, SPEC_EXAMPLE } from './testdata/support.ts';

/** `config.yaml:line:col` of the first occurrence of `needle` in `text` (1-based, like the loader). */
function at(text: string, needle: string, nth = 1): string {
  let index = -1;
  for (let i = 0; i < nth; i++) index = text.indexOf(needle, index + 1);
  if (index < 0) throw new Error(`no ${needle} in the text`);
  const before = text.slice(0, index).split('\n');
  return `config.yaml:${before.length}:${before.at(-1)!.length + 1}`;
}

/** The spec example with `from` replaced by `to` (which must occur). */
function spec(from: string, to: string): string {
  expect(SPEC_EXAMPLE).toContain(from);
  return SPEC_EXAMPLE.replace(from, to);
}

describe('config mistakes, each located', () => {
  it('an unknown key at the top level', async () => {
    const text = `${MINIMAL}htpp: { port: 9090 }\n`;
    expect(await problems(text)).toEqual([`${at(text, 'htpp')} (htpp): unknown key "htpp"`]);
  });

  it('an unknown key nested in a destination, and one deeper still', async () => {
    const text = `${MINIMAL}    retyr: { maxAttempts: 3 }\n    tls: { ca: ./ca.pem, crt: ./c.pem }\n`;
    expect(await problems(text, {}, { 'ca.pem': 'x' })).toEqual([
      `${at(text, 'retyr')} (destinations[0].retyr): unknown key "retyr"`,
      `${at(text, 'crt')} (destinations[0].tls.crt): unknown key "crt"`,
    ]);
  });

  it('a value of the wrong type', async () => {
    const text = spec('port: 2575', 'port: "2575"');
    expect(await problems(text)).toEqual([
      `${at(text, 'port: "2575"')} (destinations[1].port): Invalid input: expected number, received string`,
    ]);
  });

  it('a required key missing, placed at the object that lacks it', async () => {
    const text = spec('    mapping: mdm\n', '');
    expect(await problems(text)).toEqual([
      `${at(text, 'id: ehr-mdm')} (destinations[1].mapping): required, but missing`,
    ]);
  });

  it('an unknown destination type and auth type', async () => {
    const text = spec('type: mllp', 'type: hl7').replace('{ type: none }', '{ type: basic }');
    expect(await problems(text)).toEqual([
      `${at(text, 'type: basic')} (destinations[0].auth.type): must be one of: none | bearer | client-credentials | smart-backend | mtls`,
      `${at(text, 'type: hl7')} (destinations[1].type): must be one of: fhir | mllp | file`,
    ]);
  });

  it("an unknown destination type does not hide the entry's other mistakes", async () => {
    const text = spec(
      '  - id: archive\n    type: file\n    directory: ./out\n',
      '  - id: archive\n    type: ftp\n    directory: true\n    concurrency: 0\n    retry: { maxAttempts: "three" }\n    colour: blue\n',
    );
    expect(await problems(text)).toEqual([
      `${at(text, 'type: ftp')} (destinations[2].type): must be one of: fhir | mllp | file`,
      `${at(text, 'directory: true')} (destinations[2].directory): Invalid input: expected string, received boolean`,
      `${at(text, 'concurrency: 0')} (destinations[2].concurrency): Too small: expected number to be >=1`,
      `${at(text, 'maxAttempts: "three"')} (destinations[2].retry.maxAttempts): Invalid input: expected number, received string`,
      `${at(text, 'colour')} (destinations[2].colour): unknown key "colour"`,
    ]);
  });

  it('a bad tenant id', async () => {
    const text = spec('id: riverside-clinic', 'id: Riverside_Clinic');
    const [p, ...rest] = await problems(text);
    expect(rest).toEqual([]);
    expect(p).toMatch(/^config\.yaml:19:5 \(tenants\[0\]\.id\): must match \[a-z0-9\]/);
    expect(p!.startsWith(at(text, 'id: Riverside_Clinic'))).toBe(true);
  });

  it('a tenant naming a destination that does not exist', async () => {
    const text = spec('[ehr-fhir, ehr-mdm]', '[ehr-fhir, ehr-mdn]');
    expect(await problems(text)).toEqual([
      `${at(text, 'ehr-mdn')} (tenants[0].destinations[1]): no destination has the id ehr-mdn (the destinations are: ehr-fhir, ehr-mdm, archive)`,
    ]);
  });

  it('duplicate destination and tenant ids', async () => {
    const tenant =
      '  - id: riverside-clinic\n    reviewKeys: ./keys/riverside-clinic.jwks.json\n    destinations: [archive]\n';
    const text = spec('  - id: archive', '  - id: ehr-fhir').replace(
      'destinations:\n  - id: ehr-fhir',
      `${tenant}destinations:\n  - id: ehr-fhir`,
    );
    expect(await problems(text)).toEqual([
      `${at(text, 'id: riverside-clinic', 2)} (tenants[1].id): duplicate id riverside-clinic: tenants[0] has it already`,
      `${at(text, 'archive]')} (tenants[1].destinations[0]): no destination has the id archive (the destinations are: ehr-fhir, ehr-mdm)`,
      `${at(text, 'id: ehr-fhir', 2)} (destinations[2].id): duplicate id ehr-fhir: destinations[0] has it already`,
    ]);
  });

  it('a mapping whose format does not fit the destination type', async () => {
    const text = spec('mapping: fhir-transaction', 'mapping: mdm').replace(
      'mapping: mdm\n    #',
      'mapping: us-core-docref\n    #',
    );
    expect(await problems(text)).toEqual([
      `${at(text, 'mapping: mdm')} (destinations[0].mapping): a fhir destination needs a mapping with format: fhir; mdm has format: hl7v2`,
      `${at(text, 'mapping: us-core-docref')} (destinations[1].mapping): a mllp destination needs a mapping with format: hl7v2; us-core-docref has format: fhir`,
    ]);
  });

  it('a mapping that does not exist, and one that is invalid', async () => {
    const text = spec('mapping: fhir-transaction', 'mapping: fhir-transactoin').replace(
      'mapping: fhir-document',
      'mapping: ./broken.yaml',
    );
    const found = await problems(text, {}, { 'broken.yaml': 'id: broken\nversion: 1.0.0\n' });
    expect(found).toHaveLength(2);
    expect(found[0]).toMatch(
      /\(destinations\[0\]\.mapping\): no mapping "fhir-transactoin": not a shipped id/,
    );
    expect(found[1]).toMatch(
      /\(destinations\[2\]\.mapping\): mapping \.\/broken\.yaml is invalid: .*broken\.yaml:/,
    );
  });

  it('an environment secret that is not set, or empty', async () => {
    const text = spec('{ type: none }', '{ type: bearer, tokenEnv: EHR_TOKEN }');
    const where = `${at(text, 'tokenEnv')} (destinations[0].auth.tokenEnv)`;
    expect(await problems(text)).toEqual([
      `${where}: the environment variable EHR_TOKEN is not set (secrets come only from the environment)`,
    ]);
    expect(await problems(text, { EHR_TOKEN: '' })).toEqual([
      `${where}: the environment variable EHR_TOKEN is empty`,
    ]);
  });

  it('mistakes inside a nested auth block (`bearer: { tokenEnv }`) are placed where the file has them', async () => {
    const text = spec('{ type: none }', '{ type: bearer, bearer: { tokenEnvv: EHR_TOKEN } }');
    expect(await problems(text, { EHR_TOKEN: 't' })).toEqual([
      `${at(text, 'bearer: {')} (destinations[0].auth.bearer.tokenEnv): required, but missing`,
      `${at(text, 'tokenEnvv')} (destinations[0].auth.bearer.tokenEnvv): unknown key "tokenEnvv"`,
    ]);
    const unset = spec('{ type: none }', '{ type: bearer, bearer: { tokenEnv: EHR_TOKEN } }');
    expect(await problems(unset)).toEqual([
      `${at(unset, 'tokenEnv')} (destinations[0].auth.bearer.tokenEnv): the environment variable EHR_TOKEN is not set (secrets come only from the environment)`,
    ]);
    // Both forms at once is ambiguous: the nested block is then an unknown key beside the flat one.
    const both = spec('{ type: none }', '{ type: bearer, tokenEnv: A, bearer: { tokenEnv: B } }');
    expect(await problems(both, { A: 'a', B: 'b' })).toEqual([
      `${at(both, 'bearer: {')} (destinations[0].auth.bearer): unknown key "bearer"`,
    ]);
  });

  it('a heartbeat not shorter than the visibility timeout', async () => {
    const text = spec('    waitTimeSeconds: 5\n', '    waitTimeSeconds: 5\n    heartbeatSeconds: 30\n');
    expect(await problems(text)).toEqual([
      `${at(text, 'heartbeatSeconds')} (intake.sqs.heartbeatSeconds): heartbeatSeconds (30) must be shorter than visibilityTimeoutSeconds (30), or a message in progress becomes visible to other workers before it is extended`,
    ]);
    const short = spec('visibilityTimeoutSeconds: 30', 'visibilityTimeoutSeconds: 1');
    const [p] = await problems(short);
    expect(p).toMatch(/\(intake\.sqs\.visibilityTimeoutSeconds\): heartbeatSeconds \(1\) must be shorter/);
  });

  it('SQS limits and a dead-letter queue equal to the queue', async () => {
    const text = spec('waitTimeSeconds: 5', 'waitTimeSeconds: 25\n    maxMessages: 11').replace(
      'signed-notes-dlq',
      'signed-notes',
    );
    const found = await problems(text);
    expect(found).toEqual([
      expect.stringMatching(
        /^config\.yaml:\d+:5 \(intake\.sqs\.deadLetterQueueUrl\): the dead-letter queue must differ/,
      ),
      expect.stringMatching(/\(intake\.sqs\.waitTimeSeconds\): Too big: expected number to be <=20$/),
      expect.stringMatching(/\(intake\.sqs\.maxMessages\): Too big: expected number to be <=10$/),
    ]);
  });

  it('a FIFO queue with a standard dead-letter queue, and the other way round', async () => {
    const fifo = spec('000000000000/signed-notes\n', '000000000000/signed-notes.fifo\n');
    expect(await problems(fifo)).toEqual([
      `${at(fifo, 'deadLetterQueueUrl')} (intake.sqs.deadLetterQueueUrl): the queue is a FIFO queue (.fifo), so its dead-letter queue must be one too`,
    ]);
    const standard = spec('signed-notes-dlq', 'signed-notes-dlq.fifo');
    expect(await problems(standard)).toEqual([
      `${at(standard, 'deadLetterQueueUrl')} (intake.sqs.deadLetterQueueUrl): the queue is a standard queue, so its dead-letter queue must be one too (not .fifo)`,
    ]);
    const both = spec('000000000000/signed-notes\n', '000000000000/signed-notes.fifo\n').replace(
      'signed-notes-dlq',
      'signed-notes-dlq.fifo',
    );
    await expect(loadConfig(configFile(both))).resolves.toBeDefined();
  });

  it('a bad store URL', async () => {
    const line = `${at(SPEC_EXAMPLE, 'store')} (store)`;
    expect(await problems(spec('postgres://postgres@', 'mysql://postgres@'))).toEqual([
      `${line}: unknown store; expected postgres://…, postgresql://…, pglite://<dir relative to this file> or pglite:///<absolute dir>`,
    ]);
    expect(await problems(spec('postgres://postgres@', 'postgresql://postgres:hunter2@'))).toEqual([
      `${line}: the URL must not carry a password: set it in the environment as PGPASSWORD`,
    ]);
    expect((await problems(spec('postgres://postgres@127.0.0.1:5432/scribe', 'pglite://')))[0]).toMatch(
      /\(store\): pglite:\/\/ needs a directory/,
    );
  });

  it('review keys that are missing, fetched over plain http, or not a JWK Set', async () => {
    const missing = spec('./keys/riverside-clinic.jwks.json', './keys/other.jwks.json');
    expect((await problems(missing))[0]).toMatch(
      /\(tenants\[0\]\.reviewKeys\): no such file: .*other\.jwks\.json$/,
    );
    const http = spec('./keys/riverside-clinic.jwks.json', 'http://keys.example.org/jwks.json');
    expect(await problems(http)).toEqual([
      `${at(http, 'reviewKeys')} (tenants[0].reviewKeys): a JWKS URL must be https://`,
    ]);
    // Read at start: a broken file stops the start instead of failing every note of the tenant later.
    const broken = spec('./keys/riverside-clinic.jwks.json', './keys/broken.jwks.json');
    expect(await problems(broken, {}, { 'keys/broken.jwks.json': '{"keys": [' })).toEqual([
      `${at(broken, 'reviewKeys')} (tenants[0].reviewKeys): the JWKS file is not JSON`,
    ]);
    expect(await problems(broken, {}, { 'keys/broken.jwks.json': '{"kty": "EC"}' })).toEqual([
      `${at(broken, 'reviewKeys')} (tenants[0].reviewKeys): the JWKS file is not a JWK Set: it needs a "keys" array`,
    ]);
  });

  it('tokens: an unknown tenant, a bad hash, one token twice', async () => {
    const intake = hashToken('intake-token-for-tests');
    const text = spec(
      `{ role: intake,   sha256: "${intake}" }`,
      `{ role: intake, sha256: "${intake}", tenants: [harbor] }`,
    )
      .replace(
        /sha256: "[0-9a-f]{64}" \}\n {4}- \{ role: auditor/,
        `sha256: "${intake}" }\n    - { role: auditor`,
      )
      .replace(/role: auditor, {2}sha256: "[0-9a-f]{64}"/, 'role: auditor, sha256: "ABC"');
    expect(await problems(text, { SCRIBE_BRIDGE_TOKEN_AUDITOR: 'intake-token-for-tests' })).toEqual([
      `${at(text, 'harbor')} (auth.tokens[0].tenants[0]): no tenant has the id harbor (the tenants are: riverside-clinic)`,
      `${at(text, 'sha256', 3)} (auth.tokens[1].sha256): the same token as auth.tokens[0]: list each token once`,
      `${at(text, 'sha256', 4)} (auth.tokens[2].sha256): must be the sha256 of the token as 64 lower-case hex digits`,
      'environment SCRIBE_BRIDGE_TOKEN_AUDITOR: the same token as auth.tokens[0]: list each token once, with one role',
    ]);
  });

  it('FHIR auth: secrets over plain http, mtls without a client certificate, smart-backend key problems', async () => {
    const { privateKey } = await generateKeyPair('ES384', { extractable: true });
    const pem = await exportPKCS8(privateKey);
    const text = `${MINIMAL.replace('{ type: none }', '{ type: bearer, tokenEnv: T }').replace('127.0.0.1', 'ehr.example.org')}
  - id: mtls
    type: fhir
    baseUrl: https://ehr.example.org/fhir
    mapping: fhir-transaction
    auth: { type: mtls }
    tls: { cert: ./c.pem }
  - id: smart-both
    type: fhir
    baseUrl: https://ehr.example.org/fhir
    mapping: fhir-transaction
    auth: { type: smart-backend, tokenUrl: https://ehr.example.org/t, clientId: c, kid: k, alg: ES384, privateKeyFile: ./k.pem, privateKeyEnv: K }
  - id: smart-alg
    type: fhir
    baseUrl: https://ehr.example.org/fhir
    mapping: fhir-transaction
    auth: { type: smart-backend, tokenUrl: https://ehr.example.org/t, clientId: c, kid: k, alg: RS384, privateKeyFile: ./k.pem }
  - id: smart-jwk
    type: fhir
    baseUrl: https://ehr.example.org/fhir
    mapping: fhir-transaction
    auth: { type: smart-backend, tokenUrl: http://ehr.example.org/t, clientId: c, kid: k, alg: ES384, privateKeyEnv: K }
`;
    const publicJwk = JSON.stringify(await exportJWK((await generateKeyPair('ES384')).publicKey));
    expect(await problems(text, { T: 't', K: publicJwk }, { 'k.pem': pem, 'c.pem': 'x' })).toEqual([
      `${at(text, 'baseUrl')} (destinations[0].baseUrl): the bearer token would travel in clear text: use https (plain http is allowed only to localhost / 127.0.0.1 / ::1)`,
      `${at(text, 'type: mtls')} (destinations[1].auth.type): mtls needs the destination to have tls.cert and tls.key`,
      `${at(text, 'cert: ./c.pem')} (destinations[1].tls.cert): cert and key go together: give both`,
      `${at(text, 'auth', 3)} (destinations[2].auth): smart-backend needs exactly one of privateKeyFile and privateKeyEnv`,
      `${at(text, 'privateKeyFile', 2)} (destinations[3].auth.privateKeyFile): not a PKCS#8 PEM private key or private JWK usable with RS384`,
      `${at(text, 'tokenUrl: http:')} (destinations[4].auth.tokenUrl): the access token would travel in clear text: use https (plain http is allowed only to localhost / 127.0.0.1 / ::1)`,
      `${at(text, 'privateKeyEnv: K }', 2)} (destinations[4].auth.privateKeyEnv): not a PKCS#8 PEM private key or private JWK usable with ES384`,
    ]);
  });

  it('an auth block the schema refuses still has its key file and secrets checked', async () => {
    const text = spec(
      '{ type: none }',
      '{ type: smart-backend, tokenUrl: http://127.0.0.1:9/t, clientId: c, kid: k, alg: HS256, privateKeyFile: ./missing.pem }',
    );
    const found = await problems(text);
    expect(found).toHaveLength(2);
    expect(found[0]).toBe(
      `${at(text, 'alg')} (destinations[0].auth.alg): Invalid option: expected one of "RS384"|"ES384"`,
    );
    expect(found[1]).toMatch(/\(destinations\[0\]\.auth\.privateKeyFile\): no such file: .*missing\.pem$/);
    const cc = spec(
      '{ type: none }',
      '{ type: client-credentials, tokenUrl: not-a-url, clientId: c, clientSecretEnv: CC_SECRET }',
    );
    expect(await problems(cc)).toEqual([
      `${at(cc, 'tokenUrl')} (destinations[0].auth.tokenUrl): must be an absolute http:// or https:// URL`,
      `${at(cc, 'clientSecretEnv')} (destinations[0].auth.clientSecretEnv): the environment variable CC_SECRET is not set (secrets come only from the environment)`,
    ]);
  });

  it('MLLP: an unknown ACK code, a bad outcome, an HD with a field separator; retry delays reversed', async () => {
    const text = spec(
      '    mapping: mdm\n',
      '    mapping: mdm\n    sendingFacility: "A|B"\n    ackCodes: { AR: rejected, CE: later, XX: retry }\n    retry: { initialDelayMs: 5000, maxDelayMs: 1000 }\n',
    );
    expect(await problems(text)).toEqual([
      `${at(text, 'sendingFacility')} (destinations[1].sendingFacility): must not contain |, ~, \\ or a line break`,
      `${at(text, 'CE: later')} (destinations[1].ackCodes.CE): Invalid option: expected one of "delivered"|"rejected"|"retry"`,
      `${at(text, 'XX')} (destinations[1].ackCodes.XX): unknown key "XX"`,
      `${at(text, 'initialDelayMs: 5000')} (destinations[1].retry.initialDelayMs): initialDelayMs (5000) must not exceed maxDelayMs (1000)`,
    ]);
  });

  it('a rendering the mapping lacks, and a file destination whose directory is a file', async () => {
    const text = spec('{ type: none }', '{ type: none }\n    renderings: [plain, pdf]').replace(
      'directory: ./out',
      'directory: ./out.txt',
    );
    expect(await problems(text, {}, { 'out.txt': 'x' })).toEqual([
      `${at(text, 'pdf')} (destinations[0].renderings[1]): mapping fhir-transaction has no rendering pdf (it has: plain, html)`,
      expect.stringMatching(/\(destinations\[2\]\.directory\): .*out\.txt is not a directory/),
    ]);
  });

  it('an endpoint at a link-local or instance-metadata address, whatever the allow-list says (SSRF)', async () => {
    const text = spec(
      'baseUrl: http://127.0.0.1:8103/fhir/R4',
      'baseUrl: http://169.254.169.254/latest/meta-data',
    )
      .replace('    host: 127.0.0.1\n', '    host: "[fe80::1]"\n')
      .replace(
        'reviewKeys: ./keys/riverside-clinic.jwks.json',
        'reviewKeys: https://metadata.google.internal/jwks',
      )
      .replace('endpoint: http://127.0.0.1:4566 ', 'endpoint: http://[::ffff:169.254.0.9]:4566 ');
    const never = 'scribe-bridge never connects there';
    expect(await problems(`${text}egress: { allowHosts: ["0.0.0.0/0", "::/0", "*.internal"] }\n`)).toEqual([
      `${at(text, 'endpoint: http://[::ffff')} (intake.sqs.endpoint): ::ffff:a9fe:9 is a link-local address, where cloud instance metadata (and its credentials) is served: ${never}`,
      `${at(text, 'reviewKeys: https://metadata')} (tenants[0].reviewKeys): metadata.google.internal is a cloud instance-metadata host name: ${never}`,
      `${at(text, 'baseUrl: http://169.254')} (destinations[0].baseUrl): 169.254.169.254 is a link-local address, where cloud instance metadata (and its credentials) is served: ${never}`,
      `${at(text, 'host: "[fe80')} (destinations[1].host): fe80::1 is a link-local address, where cloud instance metadata (and its credentials) is served: ${never}`,
    ]);
  });

  it('an MLLP host written as a number, in hex or octal, or with a trailing dot is read as the address it names', async () => {
    const never =
      'is a link-local address, where cloud instance metadata (and its credentials) is served: scribe-bridge never connects there';
    for (const host of ['"2852039166"', '"0xa9fea9fe"', '"0251.0376.0251.0376"', '169.254.169.254.']) {
      const text = spec('    host: 127.0.0.1\n', `    host: ${host}\n`);
      expect(await problems(text)).toEqual([
        `${at(text, `host: ${host}`)} (destinations[1].host): 169.254.169.254 ${never}`,
      ]);
    }
  });

  it('egress.allowHosts: every endpoint the file names must match it, and each entry must be a pattern', async () => {
    const allow = (hosts: string) => `${SPEC_EXAMPLE}egress:\n  allowHosts: [${hosts}]\n`;
    // The spec example names 127.0.0.1 only (queue, DLQ, S3 endpoint, EHR, MLLP receiver).
    await expect(loadConfig(configFile(allow('127.0.0.1')))).resolves.toMatchObject({
      egress: { allowHosts: ['127.0.0.1'] },
    });
    await expect(loadConfig(configFile(allow('"127.0.0.0/8"')))).resolves.toBeDefined();
    const other = allow('"*.example.org", 10.0.0.0/8');
    const notListed =
      'is not in egress.allowHosts: add it (or a *.domain or CIDR covering it) if this endpoint is meant';
    expect(await problems(other)).toEqual([
      `${at(other, 'queueUrl:')} (intake.sqs.queueUrl): 127.0.0.1 ${notListed}`,
      `${at(other, 'endpoint: http://127.0.0.1:4566 ')} (intake.sqs.endpoint): 127.0.0.1 ${notListed}`,
      `${at(other, 'deadLetterQueueUrl:')} (intake.sqs.deadLetterQueueUrl): 127.0.0.1 ${notListed}`,
      `${at(other, 'endpoint: http://127.0.0.1:4566,')} (s3.endpoint): 127.0.0.1 ${notListed}`,
      `${at(other, 'baseUrl:')} (destinations[0].baseUrl): 127.0.0.1 ${notListed}`,
      `${at(other, 'host: 127.0.0.1\n')} (destinations[1].host): 127.0.0.1 ${notListed}`,
    ]);
    const bad = allow('"bad host!", 10.0.0.0/33, "*.", 127.0.0.1');
    expect(await problems(bad)).toEqual([
      `${at(bad, '"bad host!"')} (egress.allowHosts[0]): bad host! is not a host name, *.domain, IP address or CIDR range`,
      `${at(bad, '10.0.0.0/33')} (egress.allowHosts[1]): 10.0.0.0/33 has a prefix longer than the address`,
      `${at(bad, '"*."')} (egress.allowHosts[2]): *. is not a host name, *.domain, IP address or CIDR range`,
    ]);
    const empty = `${SPEC_EXAMPLE}egress: { allowHosts: [] }\n`;
    expect(await problems(empty)).toEqual([
      `${at(empty, 'allowHosts')} (egress.allowHosts): must list at least one host; leave egress out to allow any host`,
    ]);
  });

  it('YAML syntax errors and a key given twice', async () => {
    const text = `${MINIMAL}http: { port: 1 }\nhttp: { port: 2 }\n`;
    const [p] = await problems(text);
    expect(p).toMatch(/^config\.yaml:13:1: not valid YAML: Map keys must be unique/);
    const bad = await problems(`${MINIMAL}  - [unclosed\n`);
    expect(bad[0]).toMatch(/^config\.yaml:\d+:\d+: not valid YAML/);
  });
});

describe('several mistakes in one file', () => {
  it('are all reported together, in file order, in one error', async () => {
    const text = spec('postgres://postgres@', 'mysql://postgres@')
      .replace('port: 8080', 'port: 80800')
      .replace('id: riverside-clinic', 'id: Riverside')
      .replace('[ehr-fhir, ehr-mdm]', '[ehr-fhir, nowhere]')
      .replace('mapping: fhir-transaction', 'mapping: mdm')
      .replace('{ type: none }', '{ type: none, token: x }');
    const e = await refusal(text);
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.disposition).toBe('dead-letter');
    const lines = e.issues.map((i) => i.where.replace(/^.*[\\/]config\.yaml/, 'config.yaml'));
    expect(lines).toEqual([
      `${at(text, 'store')} (store)`,
      `${at(text, 'port: 80800')} (http.port)`,
      `${at(text, 'id: Riverside')} (tenants[0].id)`,
      `${at(text, 'nowhere')} (tenants[0].destinations[1])`,
      `${at(text, 'mapping: mdm')} (destinations[0].mapping)`,
      `${at(text, 'token: x')} (destinations[0].auth.token)`,
    ]);
    expect(e.message).toMatch(/has 6 problems; the first: unknown store/);
    expect(e.where).toBe(e.issues[0]!.where);
    expect(describeProblems(e).split('\n')).toHaveLength(6);
    expect(e.toOperationOutcome().issue).toHaveLength(6);
  });
});
