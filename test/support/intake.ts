/**
 * The intake step as the intake, delivery and HTTP API tests run it in process: a config file, an in-memory
 * PGlite ledger and the intake over both (the mappings proven against the test profiles); and the HTTP API on
 * top of that, on an ephemeral port.
 */

import { writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createApp } from '../../src/api/app.ts';
import { type Config, loadConfig } from '../../src/config/index.ts';
import { Ledger } from '../../src/ledger/ledger.ts';
import { MappingRegistry } from '../../src/map/registry.ts';
import { Intake } from '../../src/service/intake.ts';
import { testConformance } from './profiles.ts';

export interface IntakeOnLedger {
  readonly config: Config;
  readonly ledger: Ledger;
  readonly intake: Intake;
}

/** Writes `yaml` to `<dir>/config.yaml`, loads it, and opens the intake on a fresh in-memory ledger. */
export async function startIntake(dir: string, yaml: string): Promise<IntakeOnLedger> {
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  const config = await loadConfig(file, {});
  const ledger = await Ledger.open('pglite://memory');
  const intake = new Intake({
    config,
    ledger,
    mappings: new MappingRegistry(),
    conformance: await testConformance(),
  });
  return { config, ledger, intake };
}

export interface ApiServer extends IntakeOnLedger {
  /** `http://127.0.0.1:<port>` */
  readonly base: string;
  /** Stops the HTTP server, then closes the ledger. */
  close(): Promise<void>;
}

/** `startIntake`, then the HTTP API over it listening on 127.0.0.1 at an ephemeral port. */
export async function startApi(dir: string, yaml: string): Promise<ApiServer> {
  const { config, ledger, intake } = await startIntake(dir, yaml);
  const server: Server = createApp({ config, intake, ledger }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    config,
    ledger,
    intake,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      await new Promise((r) => server.close(r));
      await ledger.close();
    },
  };
}
