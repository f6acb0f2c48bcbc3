/**
 * Readiness with SQS intake (issue 5: `/readyz` — ledger and queue reachable; reliability-scenarios R30): a
 * service whose review queue cannot be reached keeps running and answers not ready (503 QUEUE_UNAVAILABLE), and
 * becomes ready by itself once the queue is back — against a real fauxqs stopped and started again on its port.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.ts';
import { createService, type Service } from '../src/service/service.ts';
import {
  AWS_CREDENTIALS,
  noteKey,
  type Queue,
  startQueue,
  tempDir,
  until,
  writeServiceConfig,
} from './support/service-harness.ts';

const tmp = tempDir('sb-ready-');
let svc: Service | undefined;
let queue: Queue | undefined;
afterAll(async () => {
  await svc?.stop();
  await queue?.close();
  tmp.remove();
});

describe('readiness follows the review queue', () => {
  it('is not ready while the queue cannot be read, and ready again once it can', async () => {
    const first = await startQueue('ready-notes');
    const port = Number(new URL(first.endpoint).port);
    const { keysFile } = await noteKey(tmp.dir);
    const configFile = writeServiceConfig(tmp.dir, {
      store: 'pglite://./data',
      queue: first,
      keysFile,
      fhirBaseUrl: 'http://127.0.0.1:9/fhir/R4',
    });
    await first.close(); // the queue goes away before the service starts
    svc = await createService(await loadConfig(configFile, {}), { awsCredentials: AWS_CREDENTIALS });
    const readyz = async () => {
      const res = await fetch(`${svc!.url}/readyz`);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const down = await until(
      async () => {
        const r = await readyz();
        return r.status === 503 ? r : undefined;
      },
      30_000,
      'not ready',
    );
    expect(JSON.stringify(down.body)).toContain('QUEUE_UNAVAILABLE');
    expect(JSON.stringify(down.body)).toContain('not ready: queue');
    expect((await fetch(`${svc.url}/healthz`)).status).toBe(200); // alive all along

    queue = await startQueue('ready-notes', undefined, port); // the same queue, back
    const up = await until(
      async () => {
        const r = await readyz();
        return r.status === 200 ? r : undefined;
      },
      30_000,
      'ready again',
    );
    expect(up.body).toEqual({ status: 'ready', checks: { ledger: true, queue: true } });
  }, 90_000);
});
