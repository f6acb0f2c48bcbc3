/**
 * `createService(config)`: the assembled service for embedding and for `scribe-bridge serve` — the ledger
 * (PGlite or PostgreSQL), mapping proofs, the HTTP API, the SQS consumer when configured, delivery workers, and
 * the housekeeping that settles expired leases and over-long waits. `stop()` is the graceful shutdown: stop
 * receiving, let in-flight work finish and be recorded, close the ledger.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from '../api/app.ts';
import { Metrics } from '../api/metrics.ts';
import { type Config, configWarnings } from '../config/index.ts';
import { ScribeError } from '../errors.ts';
import { S3ObjectStore } from '../ingest/s3.ts';
import { SqsConsumer, type SqsLogEvent } from '../ingest/sqs.ts';
import { TranscribeJobLocator } from '../ingest/transcribe.ts';
import { auditVerificationFailure } from '../ledger/audit.ts';
import { startAnchoring } from '../ledger/audit-anchor.ts';
import { Ledger } from '../ledger/ledger.ts';
import { MappingRegistry } from '../map/registry.ts';
import { Conformance } from '../validate/conformance.ts';
import { loadProfiles } from '../validate/profiles.ts';
import { ActiveMappings } from './active-mappings.ts';
import { deadLetterQueueFor } from './dead-letters.ts';
import { Intake } from './intake.ts';
import { DeliveryWorker } from './worker.ts';

/** A structured log line: ids, codes, counts and durations — never note text, names, identifier values or tokens. */
export type ServiceLog = (event: Record<string, string | number | boolean>) => void;

export interface ServiceOptions {
  /** FHIR profile folders (US Core 8) for the once-per-mapping proofs. */
  readonly profiles?: readonly string[];
  readonly log?: ServiceLog;
  /** How often expired leases and over-long waits are settled (ms). */
  readonly housekeepingMs?: number;
  /** How often the destinations' mapping files are looked at for a change (ms; SIGHUP looks at once). */
  readonly mappingReloadMs?: number;
  /** AWS credentials for SQS and S3 instead of the standard chain (the demo's embedded server). */
  readonly awsCredentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

export interface Service {
  readonly url: string;
  readonly ledger: Ledger;
  /** Looks at every destination's mapping file now and activates what changed and is proven (SIGHUP). */
  reloadMappings(): Promise<void>;
  stop(): Promise<void>;
}

/** Why the HTTP listener could not start (a port in use, a privileged port, an address not on this host). */
function listenError(e: NodeJS.ErrnoException, config: Config): ScribeError {
  const why =
    e.code === 'EADDRINUSE'
      ? 'the port is in use'
      : e.code === 'EACCES'
        ? 'not permitted (ports below 1024 need privileges)'
        : e.code === 'EADDRNOTAVAIL'
          ? 'the address is not one of this host'
          : (e.code ?? 'error');
  return new ScribeError(
    'HTTP_LISTEN_FAILED',
    `cannot listen on ${config.http.host}:${config.http.port}: ${why}`,
    {
      where: config.file ? `${config.file} (http)` : 'http (embedded defaults: 127.0.0.1:8080)',
      cause: e,
    },
  );
}

export async function createService(config: Config, options: ServiceOptions = {}): Promise<Service> {
  const log = options.log ?? (() => undefined);
  const ledger = await Ledger.open(
    config.store.kind === 'pglite' ? `pglite://${config.store.dir}` : config.store.url,
    { holdSeconds: config.intake.holdSeconds },
  );
  const conformance = new Conformance(await loadProfiles([...(options.profiles ?? [])]));
  const mappings = new MappingRegistry(config.baseDir);
  const metrics = new Metrics(ledger);
  const activeMappings = await ActiveMappings.load(
    {
      destinations: config.destinations,
      registry: mappings,
      conformance,
      onEvent: (e) => {
        metrics.mappingReload(e.destination, e.event === 'mapping.reloaded' ? 'reloaded' : 'failed');
        log({ ...e });
      },
    },
    (destination, m) =>
      log({ event: 'mapping.proven', destination, mapping: m.id, version: m.version, digest: m.digest }),
  );
  activeMappings.start(options.mappingReloadMs ?? 2_000);
  const objectStore = config.s3
    ? new S3ObjectStore({
        region: config.s3.region,
        forcePathStyle: config.s3.forcePathStyle,
        ...(config.s3.endpoint ? { endpoint: config.s3.endpoint } : {}),
        ...(options.awsCredentials ? { credentials: { ...options.awsCredentials } } : {}),
      })
    : undefined;
  const jobLocator = config.s3 ? new TranscribeJobLocator({ region: config.s3.region }) : undefined;
  // Set once the workers exist: an intake commit wakes them instead of waiting for their next poll.
  let wakeWorkers = () => {};
  const intake = new Intake({
    config,
    ledger,
    onRecorded: () => wakeWorkers(),
    // PostgreSQL works on one batch while the previous one commits; PGlite has one session anyway.
    commitsInFlight: config.store.kind === 'pglite' ? 1 : 2,
    mappings,
    conformance,
    activeMappings,
    ...(objectStore ? { objectStore } : {}),
    ...(jobLocator ? { jobLocator } : {}),
  });

  const deadLetterQueue = deadLetterQueueFor(config, options.awsCredentials);
  /** The last step of a stop, and all of one whose HTTP listener never started. */
  const closeClientsAndLedger = async () => {
    objectStore?.destroy();
    deadLetterQueue?.destroy();
    jobLocator?.destroy();
    await ledger.close();
  };
  // The senders are made before anything listens: one that cannot be made (a TLS file unreadable since the
  // config was checked) fails the start instead of leaving a service that takes notes it can never deliver.
  /** A start that fails before the listener is up: close what is open, so the process can report and exit. */
  const abandonStart = async () => {
    activeMappings.stop();
    await closeClientsAndLedger();
  };
  let worker: DeliveryWorker;
  try {
    worker = new DeliveryWorker({
      ledger,
      config,
      onAttempt: (d, outcome, receivedAt) => metrics.attempt(d, outcome, receivedAt),
      log: (e) => log({ ...e }),
      senderLog: (e) =>
        log(
          Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as Record<
            string,
            string | number | boolean
          >,
        ),
    });
  } catch (e) {
    await abandonStart();
    throw e;
  }
  let consumer: SqsConsumer | undefined;
  const app = createApp({
    config,
    intake,
    ledger,
    metrics,
    ...(deadLetterQueue ? { deadLetterQueue } : {}),
    log: (e) => log({ ...e }),
    // Readiness: the ledger (checked by the app) and, with SQS intake, the review queue.
    ready: async (): Promise<Record<string, boolean>> => (consumer ? { queue: consumer.receiving() } : {}),
  });
  const server: Server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(config.http.port, config.http.host);
    s.once('listening', () => resolve(s));
    s.once('error', (e: NodeJS.ErrnoException) => reject(listenError(e, config)));
  }).catch(async (e: unknown) => {
    await abandonStart();
    throw e;
  });
  const address = server.address() as AddressInfo;
  const url = `http://${config.http.host}:${address.port}`;

  const sqsConfig = config.intake.sqs;
  consumer = sqsConfig
    ? new SqsConsumer(
        {
          queueUrl: sqsConfig.queueUrl,
          region: sqsConfig.region,
          ...(sqsConfig.endpoint ? { endpoint: sqsConfig.endpoint } : {}),
          ...(sqsConfig.deadLetterQueueUrl ? { deadLetterQueueUrl: sqsConfig.deadLetterQueueUrl } : {}),
          visibilityTimeoutSeconds: sqsConfig.visibilityTimeoutSeconds,
          waitTimeSeconds: sqsConfig.waitTimeSeconds,
          maxMessages: sqsConfig.maxMessages,
          heartbeatSeconds: sqsConfig.heartbeatSeconds,
          ...(objectStore ? { objectStore } : {}),
          ...(options.awsCredentials ? { credentials: { ...options.awsCredentials } } : {}),
          log: (e: SqsLogEvent) => log({ ...e }),
          // Refused before intake (a bad claim-check pointer): audited like intake's own refusals.
          onRefused: async ({ code, bodySha256 }) => {
            await auditVerificationFailure(ledger.db, {
              tenant: null,
              code,
              source: 'sqs',
              contentSha256: bodySha256,
            });
            metrics.intake('sqs', code);
          },
        },
        async (body) => {
          try {
            const r = await intake.ingest(body, 'sqs');
            metrics.intake('sqs', r.outcome);
            return { outcome: r.outcome };
          } catch (e) {
            metrics.intake('sqs', e instanceof ScribeError ? e.code : 'INTERNAL');
            throw e;
          }
        },
      )
    : undefined;
  consumer?.start();

  worker.start();
  wakeWorkers = () => worker.notify();
  const housekeeping = setInterval(async () => {
    try {
      for (const l of await ledger.releaseExpiredLeases())
        log({ event: 'lease.expired', deliveryId: l.deliveryId });
      for (const r of await ledger.expireWaiting())
        log({ event: 'revision.dead-lettered', tenant: r.tenant, noteId: r.noteId, revision: r.revision });
      // Early retractions whose retracted revision has arrived since: rendered and placed now.
      await intake.renderPending();
    } catch {
      // the next round tries again; readiness reports a ledger that stays down
    }
  }, options.housekeepingMs ?? 5_000);
  housekeeping.unref();
  const anchoring = config.audit?.anchor ? startAnchoring(ledger, config, log) : undefined;

  for (const w of configWarnings(config)) log({ ...w });
  log({
    event: 'service.started',
    url,
    store: config.store.kind,
    destinations: config.destinations.length,
    sqs: Boolean(consumer),
  });
  return {
    url,
    ledger,
    reloadMappings: () => activeMappings.refresh(),
    async stop() {
      clearInterval(housekeeping);
      activeMappings.stop();
      await consumer?.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await worker.stop();
      await anchoring?.stop();
      await closeClientsAndLedger();
      log({ event: 'service.stopped' });
    },
  };
}
