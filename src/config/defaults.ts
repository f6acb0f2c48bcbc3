/**
 * `defaultConfig`: what `scribe-bridge serve` runs on when no config file is given (PRODUCT.md "Command
 * line"): PGlite in `./data`, HTTP on 127.0.0.1:8080, one file-drop destination `file-drop` writing the
 * `fhir-document` mapping's output to `./out`, and one tenant per review-key file in `./keys`.
 *
 * Tenant discovery: every regular file in `./keys` named `<tenant>.jwks.json`, where `<tenant>` matches the
 * tenant pattern `[a-z0-9][a-z0-9-]{0,62}`, is one tenant with that JWKS; other files (such as
 * `riverside-clinic.private.jwks.json`, whose stem has a dot) are ignored. Discovery happens once, at start:
 * a key file added later takes a restart. No `./keys` folder means no tenants (every note is refused as
 * from an unknown tenant).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MappingRegistry, resolveMappingRef } from '../map/registry.ts';
import { configError, deepFreeze, type Env } from './context.ts';
import { hashToken, TOKEN_ENV_VARS, tokensFromEnv } from './resolve.ts';
import { DEFAULTS, ID_PATTERN, ROLES } from './schema.ts';
import { Secret } from './secret.ts';
import type { Config, FileDestinationConfig, Role, TenantConfig, TokenConfig } from './types.ts';

/** The id of the embedded defaults' one destination. */
export const DEFAULT_DESTINATION_ID = 'file-drop';
/** The mapping the embedded defaults' destination uses. */
export const DEFAULT_MAPPING = 'fhir-document';

/** A bearer token made at start because its environment variable was unset. */
export interface GeneratedToken {
  readonly role: Role;
  /** The variable that would have supplied it, so the operator knows how to pin it next time. */
  readonly envVar: string;
  /** The token; print it once with `token.reveal()`, never log it. */
  readonly token: Secret;
}

/** The embedded defaults and the tokens generated for them. */
export interface DefaultConfig {
  readonly config: Config;
  /** One per role whose SCRIBE_BRIDGE_TOKEN_* variable was unset or empty; empty when all were set. */
  readonly generatedTokens: readonly GeneratedToken[];
}

/** `<tenant>.jwks.json` files in `keysDir`, sorted by tenant id. */
function discoverTenants(keysDir: string): TenantConfig[] {
  let names: string[];
  try {
    names = readdirSync(keysDir);
  } catch {
    return [];
  }
  const tenants: TenantConfig[] = [];
  for (const name of names.sort()) {
    const m = /^(.+)\.jwks\.json$/.exec(name);
    if (!m || !ID_PATTERN.test(m[1]!)) continue;
    const path = join(keysDir, name);
    try {
      if (!statSync(path).isFile()) continue;
    } catch {
      continue;
    }
    tenants.push({ id: m[1]!, reviewKeys: { kind: 'file', path }, destinations: [DEFAULT_DESTINATION_ID] });
  }
  return tenants;
}

/**
 * The configuration `serve` uses without `--config`, relative to `cwd`. Tokens come from
 * SCRIBE_BRIDGE_TOKEN_INTAKE / _OPERATOR / _AUDITOR; each one unset is generated (32 random bytes,
 * base64url) and returned in `generatedTokens` for the caller to print once.
 */
export function defaultConfig(cwd: string = process.cwd(), env: Env = process.env): DefaultConfig {
  const baseDir = resolve(cwd);
  const fromEnv = tokensFromEnv(env);
  // One token, one role: the same value in two variables would make the role ambiguous.
  const dup = fromEnv.find((t, i) => fromEnv.findIndex((u) => u.sha256 === t.sha256) !== i);
  if (dup) {
    throw configError('environment', [
      {
        where: `environment ${TOKEN_ENV_VARS[dup.role]}`,
        message: 'the same token as another role: give each role its own token',
      },
    ]);
  }
  const generatedTokens: GeneratedToken[] = [];
  const tokens: TokenConfig[] = [...fromEnv];
  for (const role of ROLES) {
    if (fromEnv.some((t) => t.role === role)) continue;
    const token = randomBytes(32).toString('base64url');
    generatedTokens.push({ role, envVar: TOKEN_ENV_VARS[role], token: new Secret(token) });
    tokens.push({ role, sha256: hashToken(token), source: 'generated' });
  }

  const mappingFile = resolveMappingRef(DEFAULT_MAPPING);
  const destination: FileDestinationConfig = {
    id: DEFAULT_DESTINATION_ID,
    type: 'file',
    directory: join(baseDir, 'out'),
    mapping: {
      ref: DEFAULT_MAPPING,
      file: mappingFile,
      format: new MappingRegistry(baseDir).get(mappingFile).format,
    },
    retry: { ...DEFAULTS.retry },
    concurrency: DEFAULTS.file.concurrency,
  };
  const config: Config = {
    file: undefined,
    baseDir,
    store: { kind: 'pglite', dir: join(baseDir, 'data') },
    http: { ...DEFAULTS.http },
    auth: { tokens },
    intake: { holdSeconds: DEFAULTS.holdSeconds },
    shutdownSeconds: DEFAULTS.shutdownSeconds,
    tenants: discoverTenants(join(baseDir, 'keys')),
    destinations: [destination],
  };
  return deepFreeze({ config, generatedTokens });
}
