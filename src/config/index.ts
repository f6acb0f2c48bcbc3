/**
 * The service configuration: `loadConfig(file)` for a YAML file (PRODUCT.md "Configuration"),
 * `defaultConfig()` for the embedded defaults of `scribe-bridge serve` without `--config`.
 */
export type { Env } from './context.ts';
export {
  DEFAULT_DESTINATION_ID,
  DEFAULT_MAPPING,
  type DefaultConfig,
  defaultConfig,
  type GeneratedToken,
} from './defaults.ts';
export { CONFIG_ENV_VAR, describeProblems, type LoadOptions, loadConfig } from './load.ts';
export { hashToken, TOKEN_ENV_VARS } from './resolve.ts';
export { DEFAULTS } from './schema.ts';
export { REDACTED, Secret } from './secret.ts';
export type * from './types.ts';
export { type ConfigWarning, configWarnings } from './warnings.ts';
