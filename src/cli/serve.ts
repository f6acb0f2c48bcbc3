/**
 * `scribe-bridge serve [--config <file>]`: runs the service. Without a config it runs on the embedded defaults
 * (PGlite in ./data, HTTP on 127.0.0.1:8080, a file drop in ./out, each tenant's review keys from
 * ./keys/<tenant>.jwks.json, tokens from SCRIBE_BRIDGE_TOKEN_* or generated and printed once). Logs are JSON
 * lines on stderr (pino) carrying ids, codes and durations only. SIGTERM / SIGINT: graceful shutdown, exit 0.
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
    log: (e) => logger.info(e),
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
  await service.stop();
  logger.flush();
  return 0;
}
