/**
 * `scribe-bridge serve [--config <file>]`: runs the service. Without a config it runs on the embedded defaults
 * (PGlite in ./data, HTTP on 127.0.0.1:8080, a file drop in ./out, each tenant's review keys from
 * ./keys/<tenant>.jwks.json, tokens from SCRIBE_BRIDGE_TOKEN_* or generated and printed once). Logs are JSON
 * lines on stderr (pino) carrying ids, codes and durations only — failures at level warn. SIGTERM / SIGINT:
 * graceful shutdown, exit 0 (1 if it did not finish within `shutdownSeconds`, default 25).
 * SIGHUP: look at the mapping files now (mapping hot reload, src/service/active-mappings.ts).
 */
import { pino } from 'pino';
import { createService } from '../service/service.ts';
import { commandConfig } from './config.ts';
import type { Io } from './io.ts';
import { profileFolders } from './map.ts';

export async function serveCommand(opts: { config?: string; profiles?: string[] }, io: Io): Promise<number> {
  const loaded = await commandConfig(opts.config, io);
  if (!loaded) return 1;
  const { config } = loaded;
  for (const t of loaded.generatedTokens) {
    // Printed once, to the terminal only; never logged. Set the variable to keep a token across restarts.
    io.out(`${t.role} token (set ${t.envVar} to keep it): ${t.token.reveal()}\n`);
  }
  const logger = pino({ base: { service: 'scribe-bridge' } }, pino.destination(2));
  const service = await createService(config, {
    profiles: profileFolders(opts.profiles),
    log: (e) => (isTrouble(e) ? logger.warn(e) : logger.info(e)),
  });
  io.out(
    `scribe-bridge listening on ${service.url} (store: ${config.store.kind}, ${config.destinations.length} destination(s))\n`,
  );
  // SIGHUP: look at the mapping files now rather than at the next poll (mapping hot reload).
  const reload = () => void service.reloadMappings();
  process.on('SIGHUP', reload);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  process.off('SIGHUP', reload);
  // Graceful, within a bound: a send that never returns (a wedged destination) must not keep the process up
  // past the orchestrator's grace period. What was in flight then is settled by its lease (docs/durability.md).
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), config.shutdownSeconds * 1000);
    timer.unref();
  });
  const stopped = await Promise.race([service.stop().then(() => 'stopped' as const), deadline]);
  clearTimeout(timer);
  if (stopped === 'deadline') {
    logger.error({ event: 'service.stop-deadline', seconds: config.shutdownSeconds });
    logger.flush();
    // What is still running (the send that never returns) would keep the event loop, and so the process, alive.
    process.exit(1);
  }
  logger.flush();
  return 0;
}

/** Events an operator should see above the routine ones: failures, refusals and what was given up on. */
function isTrouble(e: { event?: unknown; outcome?: unknown; status?: unknown }): boolean {
  const event = String(e.event ?? '');
  if (event === 'delivery.attempt') return e.outcome !== 'delivered';
  if (event === 'http') return typeof e.status === 'number' && e.status >= 500;
  return /failed|dead-lettered|timeout|expired|unparseable|unmatched|unknown-code|unsolicited|too-large|unresolved|warning/.test(
    event,
  );
}
