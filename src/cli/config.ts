/**
 * How every command that needs the service configuration gets it: `--config <file>` or SCRIBE_BRIDGE_CONFIG,
 * else the embedded defaults of `scribe-bridge serve`. A configuration with problems is reported once, every
 * problem listed with its file:line, and the command exits 1.
 */
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
