/**
 * What a valid configuration may still get wrong without being wrong: a destination no tenant sends to, a tenant
 * no note can reach. The service logs each at start (event `config.warning`, level warn) and runs anyway — an
 * operator may be staging a destination, or feeding a tenant from a queue added later.
 */
import type { Config } from './types.ts';

/** One warning, as a log event: ids and a reason code only. */
export interface ConfigWarning {
  readonly event: 'config.warning';
  readonly reason: 'destination-unused' | 'no-intake' | 'tenant-unreachable';
  readonly destination?: string;
  readonly tenant?: string;
}

export function configWarnings(
  config: Pick<Config, 'tenants' | 'destinations' | 'auth' | 'intake'>,
): ConfigWarning[] {
  const out: ConfigWarning[] = [];
  const used = new Set(config.tenants.flatMap((t) => t.destinations));
  for (const d of config.destinations)
    if (!used.has(d.id))
      out.push({ event: 'config.warning', reason: 'destination-unused', destination: d.id });
  // With an SQS queue every tenant can be reached through it; without one, only by an intake token.
  if (config.intake.sqs) return out;
  const intake = config.auth.tokens.filter((t) => t.role === 'intake');
  if (intake.length === 0) {
    out.push({ event: 'config.warning', reason: 'no-intake' });
    return out;
  }
  for (const t of config.tenants)
    if (!intake.some((k) => k.tenants === undefined || k.tenants.includes(t.id)))
      out.push({ event: 'config.warning', reason: 'tenant-unreachable', tenant: t.id });
  return out;
}
