/**
 * `loadConfig`: one YAML file → a validated, normalised {@link Config}, or one error listing every problem
 * (file:line:column and key path each), so an operator fixes the file in one pass rather than one restart
 * per mistake.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { z } from 'zod';
import type { PathSegment } from '../contract/json.ts';
import { type LocatedIssue, ScribeError } from '../errors.ts';
import { MappingRegistry } from '../map/registry.ts';
import {
  type CheckContext,
  configError,
  deepFreeze,
  type Env,
  type Problem,
  Problems,
  part,
  record,
} from './context.ts';
import { resolveDestination } from './destinations.ts';
import { checkEgress } from './egress.ts';
import { liftNestedAuth } from './nested-auth.ts';
import { resolveAudit, resolveSqs, resolveStore, resolveTenant, tokensFromEnv } from './resolve.ts';
import { checkCrossReferences } from './rules.ts';
import {
  AuthSchema,
  ConfigFileSchema,
  configErrorMap,
  EgressSchema,
  HttpSchema,
  IntakeSchema,
  S3Schema,
} from './schema.ts';
import type { Config, DestinationConfig, TenantConfig, TokenConfig } from './types.ts';
import { parseConfigYaml, type YamlSource } from './yaml-source.ts';

/** Options of {@link loadConfig}. */
export interface LoadOptions {
  /**
   * The registry to compile the destinations' mappings into, so the service that loads the config finds
   * them compiled already. Default: one registry shared by every load (it recompiles a file that changed).
   */
  readonly mappings?: MappingRegistry;
}

// Refs are resolved to absolute files before they reach the registry, so its base folder never matters.
const sharedRegistry = new MappingRegistry();

/** The environment variable naming the config file when `loadConfig` is given no path. */
export const CONFIG_ENV_VAR = 'SCRIBE_BRIDGE_CONFIG';

/** Every problem of a config error, one per line, for printing at start. */
export function describeProblems(error: ScribeError): string {
  const issues =
    error.issues.length > 0 ? error.issues : [{ where: error.where ?? '', message: error.detail }];
  return issues.map((i) => `${i.where}: ${i.message}`).join('\n');
}

/** zod issues as problems; an unrecognised-keys issue becomes one problem per key, placed at the key. */
function schemaProblems(error: z.ZodError, problems: Problems): void {
  for (const issue of error.issues) {
    const path = issue.path as PathSegment[];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.at([...path, key], `unknown key ${JSON.stringify(key)}`);
    } else if (
      issue.code === 'invalid_union' &&
      'note' in issue &&
      issue.note === 'No matching discriminator'
    ) {
      const options = 'options' in issue ? (issue.options as unknown[]).join(' | ') : '';
      problems.at(path, `must be one of: ${options}`);
    } else {
      problems.at(path, issue.message);
    }
  }
}

/** Line and column of a located problem, for sorting into file order (unplaced ones last). */
function position(where: string): [number, number] {
  const m = /:(\d+):(\d+) \(/.exec(where);
  return m ? [Number(m[1]), Number(m[2])] : [Number.MAX_SAFE_INTEGER, 0];
}

function located(
  list: readonly Problem[],
  src: YamlSource,
  inFile: (path: readonly PathSegment[]) => readonly PathSegment[],
): LocatedIssue[] {
  const seen = new Set<string>();
  const out: LocatedIssue[] = [];
  for (const p of list) {
    const where = p.path ? src.locate(inFile(p.path)) : (p.where ?? '');
    const key = `${where}\0${p.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ where, message: p.message });
  }
  return out
    .map((issue, i) => ({ issue, i, pos: position(issue.where) }))
    .sort((a, b) => a.pos[0] - b.pos[0] || a.pos[1] - b.pos[1] || a.i - b.i)
    .map((x) => x.issue);
}

/**
 * Reads, validates and normalises the service configuration. `path` defaults to `$SCRIBE_BRIDGE_CONFIG`.
 * Relative paths in the file are relative to the file's folder. Throws one ScribeError whose `issues` hold
 * every problem (schema, files, environment secrets, cross-field rules), in file order.
 */
export async function loadConfig(
  path?: string,
  env: Env = process.env,
  options: LoadOptions = {},
): Promise<Config> {
  const given = path ?? env[CONFIG_ENV_VAR];
  if (given === undefined || given === '') {
    throw new ScribeError('USAGE', 'no configuration file was given', {
      hint: `Pass --config <file> or set ${CONFIG_ENV_VAR}; without either, \`scribe-bridge serve\` runs on the embedded defaults.`,
    });
  }
  const file = resolve(given);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ScribeError(
      'FILE_UNREADABLE',
      `cannot read the configuration file (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      { where: given },
    );
  }
  const src = parseConfigYaml(text, given);
  if (src.syntaxProblems.length > 0) throw configError(given, src.syntaxProblems);

  const dir = dirname(file);
  const problems = new Problems();
  const ctx: CheckContext = { dir, env, problems, registry: options.mappings ?? sharedRegistry };
  if (src.value === null || src.value === undefined) {
    throw configError(given, [{ where: src.locate([]), message: 'the file is empty' }]);
  }
  // `auth: { type: bearer, bearer: { tokenEnv } }` is read as `auth: { type: bearer, tokenEnv }` (./nested-auth.ts).
  const { value, inFile } = liftNestedAuth(src.value);
  const whole = ConfigFileSchema.safeParse(value, { error: configErrorMap });
  if (!whole.success) schemaProblems(whole.error, problems);

  const raw = record(value);
  const store = typeof raw['store'] === 'string' ? resolveStore(raw['store'], ctx) : undefined;
  const http = part(HttpSchema.prefault({}), raw['http']);
  const auth = part(AuthSchema.prefault({}), raw['auth']);
  const intake = part(IntakeSchema.prefault({}), raw['intake']);
  const rawSqs = record(raw['intake'])['sqs'];
  const sqs = rawSqs === undefined ? undefined : resolveSqs(rawSqs, ctx);
  const s3 = part(S3Schema.optional(), raw['s3']);
  const audit =
    raw['audit'] === undefined ? undefined : resolveAudit(raw['audit'], raw['s3'] !== undefined, ctx);

  const rawTenants = Array.isArray(raw['tenants']) ? (raw['tenants'] as unknown[]) : [];
  const tenants = rawTenants.map((t, i) => resolveTenant(t, i, ctx));
  const rawDestinations = Array.isArray(raw['destinations']) ? (raw['destinations'] as unknown[]) : [];
  const destinations: Array<DestinationConfig | undefined> = [];
  // One at a time: problems are then added in a stable order, and each check is cheap.
  for (const [i, d] of rawDestinations.entries()) destinations.push(await resolveDestination(d, i, ctx));

  const envTokens = tokensFromEnv(env);
  checkCrossReferences(value, envTokens, problems);
  checkEgress(raw, problems);
  const egress = part(EgressSchema.optional(), raw['egress']);

  if (problems.list.length > 0) throw configError(given, located(problems.list, src, inFile));
  if (!whole.success || !store || !http || !auth || !intake) {
    throw new ScribeError('INTERNAL', 'a config part failed without a reported problem', { where: given });
  }
  const fileTokens: TokenConfig[] = auth.tokens.map((t) => ({ ...t, source: 'file' }));
  return deepFreeze({
    file,
    baseDir: dir,
    store,
    http,
    auth: { tokens: [...fileTokens, ...envTokens] },
    intake: { ...(sqs ? { sqs } : {}), holdSeconds: intake.holdSeconds },
    ...(s3 ? { s3 } : {}),
    ...(audit ? { audit } : {}),
    ...(egress ? { egress } : {}),
    shutdownSeconds: whole.data.shutdownSeconds,
    tenants: tenants as TenantConfig[],
    destinations: destinations as DestinationConfig[],
  });
}
