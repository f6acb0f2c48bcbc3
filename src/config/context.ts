/**
 * What the checks of a config share: the folder relative paths resolve against, the environment secrets
 * come from, and the list every problem is added to (so all of them are reported at once, never the first).
 */
import { statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import type { PathSegment } from '../contract/json.ts';
import { type ErrorCode, type LocatedIssue, ScribeError } from '../errors.ts';
import type { MappingRegistry } from '../map/registry.ts';
import { Secret } from './secret.ts';

/** The environment as the checks see it (process.env, or a test's own). */
export type Env = Readonly<Record<string, string | undefined>>;

/** One problem: at a path in the file, or somewhere that has no position (an environment variable). */
export interface Problem {
  readonly path?: readonly PathSegment[];
  readonly where?: string;
  readonly message: string;
}

/** Collects problems in the order they are found. */
export class Problems {
  readonly list: Problem[] = [];

  /** A problem at `path` in the config file. */
  at(path: readonly PathSegment[], message: string): void {
    this.list.push({ path, message });
  }

  /** A problem without a place in the file, e.g. `environment SCRIBE_BRIDGE_TOKEN_INTAKE`. */
  elsewhere(where: string, message: string): void {
    this.list.push({ where, message });
  }
}

/** Shared by every check of one load. */
export interface CheckContext {
  /** The config file's folder: relative paths resolve against it. */
  readonly dir: string;
  readonly env: Env;
  readonly problems: Problems;
  readonly registry: MappingRegistry;
}

/** `p` made absolute against the config file's folder. */
export function resolvePath(p: string, ctx: CheckContext): string {
  return isAbsolute(p) ? p : resolve(ctx.dir, p);
}

type Kind = 'file' | 'directory';

function kindOf(path: string): Kind | 'other' | undefined {
  try {
    const st = statSync(path);
    return st.isFile() ? 'file' : st.isDirectory() ? 'directory' : 'other';
  } catch {
    return undefined;
  }
}

/**
 * Resolves a path written at `at` and checks that it is an existing file; with `mayBeMissing`, only that it
 * is not something else (a directory the service creates on first use). Undefined after a problem.
 */
export function checkedPath(
  written: string,
  at: readonly PathSegment[],
  expect: Kind,
  ctx: CheckContext,
  mayBeMissing = false,
): string | undefined {
  const abs = resolvePath(written, ctx);
  const kind = kindOf(abs);
  if (kind === expect || (kind === undefined && mayBeMissing)) return abs;
  ctx.problems.at(
    at,
    kind === undefined
      ? `no such ${expect}: ${abs}`
      : `${abs} is not a ${expect} (relative paths start at the config file's folder)`,
  );
  return undefined;
}

/** The value of the environment variable a config key names, as a Secret; undefined after a problem. */
export function secretFromEnv(
  name: string,
  at: readonly PathSegment[],
  ctx: CheckContext,
): Secret | undefined {
  const value = ctx.env[name];
  if (value === undefined) {
    ctx.problems.at(
      at,
      `the environment variable ${name} is not set (secrets come only from the environment)`,
    );
    return undefined;
  }
  if (value.trim() === '') {
    ctx.problems.at(at, `the environment variable ${name} is empty`);
    return undefined;
  }
  return new Secret(value);
}

/** Loopback hosts: the only ones a secret may be sent to over plain http. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '[::1]' || /^127(\.\d{1,3}){3}$/.test(h);
}

/** A problem when a secret would travel to `url` over plain http to another machine. */
export function requireTlsForSecret(
  url: string,
  at: readonly PathSegment[],
  what: string,
  ctx: CheckContext,
): void {
  const u = new URL(url);
  if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
    ctx.problems.at(
      at,
      `${what} would travel in clear text: use https (plain http is allowed only to localhost / 127.0.0.1 / ::1)`,
    );
  }
}

const CONFIG_INVALID: ErrorCode = 'CONFIG_INVALID';
const CONFIG_HINT =
  'Fix every problem listed (each names file:line:column and the key path), then start again; secrets are read from the environment variables the file names.';

/** One error carrying every located problem of a config, the first in its headline. */
export function configError(file: string, issues: readonly LocatedIssue[]): ScribeError {
  const n = issues.length;
  const first = issues[0]!;
  return new ScribeError(
    CONFIG_INVALID,
    `${file} has ${n} problem${n > 1 ? 's' : ''}; the first: ${first.message}`,
    { where: first.where, issues, hint: CONFIG_HINT },
  );
}

/** Freezes a config tree (Secrets are left as they are: their value is private already). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !(value instanceof Secret) && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** `v` when it is a plain object, else an empty one: checks read members of raw YAML through it. */
export function record(v: unknown): Readonly<Record<string, unknown>> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/**
 * One part (or one key) of the raw file parsed on its own, undefined when it is wrong. Checks read their
 * inputs through it, so each check runs whenever its own inputs are right, whatever else is wrong nearby;
 * the problems themselves come from the one parse of the whole file.
 */
export function part<S extends z.ZodType>(schema: S, value: unknown): z.output<S> | undefined {
  const r = schema.safeParse(value);
  return r.success ? r.data : undefined;
}
