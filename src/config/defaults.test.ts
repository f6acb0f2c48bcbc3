/**
 * Promise: `scribe-bridge serve` without a config runs on the embedded defaults of PRODUCT.md — PGlite in
 * ./data, HTTP on 127.0.0.1:8080, a file drop in ./out with fhir-document, one tenant per ./keys/<id>.jwks.json
 * — with bearer tokens from SCRIBE_BRIDGE_TOKEN_* or, when unset, random ones returned once to print.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { SHIPPED_MAPPINGS_DIR } from '../map/registry.ts';
import { defaultConfig } from './defaults.ts';
import { hashToken } from './resolve.ts';
import { JWKS, tree } from './testdata/support.ts';

describe('defaultConfig', () => {
  it('has the embedded defaults, relative to the working directory', () => {
    const cwd = tree({});
    const { config } = defaultConfig(cwd, {});
    expect(config.file).toBeUndefined();
    expect(config.baseDir).toBe(cwd);
    expect(config.store).toEqual({ kind: 'pglite', dir: join(cwd, 'data') });
    expect(config.http).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config.intake).toEqual({ holdSeconds: 3600 });
    expect(config.shutdownSeconds).toBe(25);
    expect(config.s3).toBeUndefined();
    expect(config.destinations).toEqual([
      {
        id: 'file-drop',
        type: 'file',
        directory: join(cwd, 'out'),
        mapping: {
          ref: 'fhir-document',
          file: join(SHIPPED_MAPPINGS_DIR, 'fhir-document.yaml'),
          format: 'fhir',
        },
        retry: { maxAttempts: 8, initialDelayMs: 1000, maxDelayMs: 300000 },
        concurrency: 4,
      },
    ]);
    expect(Object.isFrozen(config.destinations)).toBe(true);
  });

  it('finds one tenant per ./keys/<tenant>.jwks.json, ignoring other files', () => {
    const cwd = tree({
      'keys/riverside-clinic.jwks.json': JWKS,
      'keys/harbor-health.jwks.json': JWKS,
      'keys/riverside-clinic.private.jwks.json': JWKS,
      'keys/Upper.jwks.json': JWKS,
      'keys/readme.txt': 'x',
    });
    mkdirSync(join(cwd, 'keys/folder.jwks.json'));
    const { config } = defaultConfig(cwd, {});
    expect(config.tenants).toEqual([
      {
        id: 'harbor-health',
        reviewKeys: { kind: 'file', path: join(cwd, 'keys/harbor-health.jwks.json') },
        destinations: ['file-drop'],
      },
      {
        id: 'riverside-clinic',
        reviewKeys: { kind: 'file', path: join(cwd, 'keys/riverside-clinic.jwks.json') },
        destinations: ['file-drop'],
      },
    ]);
    expect(defaultConfig(tree({}), {}).config.tenants).toEqual([]);
  });

  it('takes the tokens from SCRIBE_BRIDGE_TOKEN_* and generates none', () => {
    const env = {
      SCRIBE_BRIDGE_TOKEN_INTAKE: 'intake-secret',
      SCRIBE_BRIDGE_TOKEN_OPERATOR: 'operator-secret',
      SCRIBE_BRIDGE_TOKEN_AUDITOR: 'auditor-secret',
    };
    const { config, generatedTokens } = defaultConfig(tree({}), env);
    expect(generatedTokens).toEqual([]);
    expect(config.auth.tokens).toEqual([
      { role: 'intake', sha256: hashToken('intake-secret'), source: 'env' },
      { role: 'operator', sha256: hashToken('operator-secret'), source: 'env' },
      { role: 'auditor', sha256: hashToken('auditor-secret'), source: 'env' },
    ]);
  });

  it('generates a random token for each role whose variable is unset, returned once and redacted', () => {
    const { config, generatedTokens } = defaultConfig(tree({}), { SCRIBE_BRIDGE_TOKEN_OPERATOR: 'op' });
    expect(generatedTokens.map((t) => [t.role, t.envVar])).toEqual([
      ['intake', 'SCRIBE_BRIDGE_TOKEN_INTAKE'],
      ['auditor', 'SCRIBE_BRIDGE_TOKEN_AUDITOR'],
    ]);
    const values = generatedTokens.map((t) => t.token.reveal());
    for (const v of values) expect(v).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 random bytes, base64url
    expect(new Set(values).size).toBe(2);
    expect(config.auth.tokens.map((t) => [t.role, t.source])).toEqual([
      ['operator', 'env'],
      ['intake', 'generated'],
      ['auditor', 'generated'],
    ]);
    expect(config.auth.tokens[1]!.sha256).toBe(hashToken(values[0]!));
    const printed = JSON.stringify({ config, generatedTokens }) + inspect(generatedTokens, { depth: null });
    for (const v of values) expect(printed).not.toContain(v);
    // A second start generates new ones: nothing is kept between runs.
    const again = defaultConfig(tree({}), {}).generatedTokens.map((t) => t.token.reveal());
    expect(again.some((v) => values.includes(v))).toBe(false);
  });

  it('refuses the same token for two roles', () => {
    expect(() =>
      defaultConfig(tree({}), { SCRIBE_BRIDGE_TOKEN_INTAKE: 'same', SCRIBE_BRIDGE_TOKEN_AUDITOR: 'same' }),
    ).toThrow(/the same token as another role/);
  });
});
