/**
 * How every command that needs the service configuration gets it: `--config <file>` or SCRIBE_BRIDGE_CONFIG,
 * else the embedded defaults of `scribe-bridge serve`. A configuration with problems is reported once, every
 * problem listed with its file:line, and the command exits 1.
 */

import { existsSync } from 'node:fs';
import {
  CONFIG_ENV_VAR,
  type Config,
  type DefaultConfig,
  defaultConfig,
  describeProblems,
  loadConfig,
} from '../config/index.ts';
import { ScribeError } from '../errors.ts';
import type { Io } from './io.ts';

/** The configuration, or undefined after the problems were printed (exit 1). */
export async function commandConfig(file: string | undefined, io: Io): Promise<DefaultConfig | undefined> {
  try {
    if (file || process.env[CONFIG_ENV_VAR]) return { config: await loadConfig(file), generatedTokens: [] };
    return defaultConfig();
  } catch (e) {
    if (e instanceof ScribeError && e.code === 'CONFIG_INVALID') {
      io.err(
        `error CONFIG_INVALID: the configuration has ${e.issues.length} problem(s):\n${describeProblems(e)}\n`,
      );
      return undefined;
    }
    throw e;
  }
}

/** The ledger URL a configuration names. */
export function storeUrl(config: Config): string {
  return config.store.kind === 'pglite' ? `pglite://${config.store.dir}` : config.store.url;
}

/**
 * For commands that read a ledger (trace, audit verify): a PGlite directory that does not exist is no ledger —
 * refused, rather than created empty (and left behind) to answer that nothing is in it.
 */
export function existingStore(url: string): string {
  if (url.startsWith('pglite://') && !existsSync(url.slice('pglite://'.length))) {
    throw new ScribeError('NOT_FOUND', 'the ledger directory does not exist', {
      where: url.slice('pglite://'.length),
      hint: 'Pass --config with the service configuration, or run from the folder where `scribe-bridge serve` ran.',
    });
  }
  return url;
}
