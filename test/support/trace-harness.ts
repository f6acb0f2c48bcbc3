/**
 * A real service (createService: HTTP API, ledger, delivery workers) with a real FHIR server and a real MLLP
 * receiver as destinations, the valid fixtures sent through `POST /v1/notes` and delivered: what the trace
 * tests and the auditor page's browser test start from. The store is PGlite in a temp dir or a fresh PostgreSQL
 * database.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashToken, loadConfig } from '../../src/config/index.ts';
import type { JsonValue } from '../../src/contract/json.ts';
import { createService, type Service } from '../../src/service/service.ts';
import { type FhirTestServer, startFhirServer } from './fhir-server.ts';
import { type MllpTestServer, startMllpServer } from './mllp-server.ts';
import { queueableFixture } from './notes.ts';
import { SHARED_PROFILES } from './profiles.ts';
import { freshDatabase, until } from './service-harness.ts';

export const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url));
export const TRACE_TOKENS = {
  intake: 'trace-intake-token',
  operator: 'trace-operator-token',
  auditor: 'trace-auditor-token',
  /** An auditor limited to harbor-health. */
  harborAuditor: 'trace-harbor-auditor-token',
} as const;

export interface SentNote {
  readonly file: string;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  /** The envelope as sent (artifacts inline, signed again with the fixture's test key). */
  readonly sent: { [k: string]: JsonValue };
  /** The fixture's own files: the envelope and its transcript, read independently of the service. */
  readonly fixture: { [k: string]: JsonValue };
  readonly transcript: {
    Conversation: {
      TranscriptSegments: {
        SegmentId: string;
        Content: string;
        BeginAudioTime: number;
        EndAudioTime: number;
        ParticipantDetails: { ParticipantRole: string };
      }[];
    };
  };
}

export interface TraceWorld {
  readonly service: Service;
  readonly fhir: FhirTestServer;
  readonly mllp: MllpTestServer;
  readonly configPath: string;
  readonly notes: readonly SentNote[];
  /** GET with a token; returns status and parsed JSON. */
  get(path: string, token?: string): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

/** Reads a fixture and its transcript file (the `file:` URI beside it), without the service's code. */
export function readFixtureFiles(file: string): Pick<SentNote, 'fixture' | 'transcript'> {
  const path = join(FIXTURES, 'envelopes', 'valid', file);
  const fixture = JSON.parse(readFileSync(path, 'utf8'));
  const uri = fixture.healthscribe.transcript.uri as string;
  const transcript = JSON.parse(readFileSync(join(dirname(path), uri.slice('file:'.length)), 'utf8'));
  return { fixture, transcript };
}

export async function startTraceWorld(
  store: 'pglite' | 'postgres',
  files: readonly string[],
): Promise<TraceWorld> {
  const fhir = await startFhirServer();
  const mllp = await startMllpServer();
  const dir = mkdtempSync(join(tmpdir(), `sb-trace-${store}-`));
  const pgdb = store === 'postgres' ? await freshDatabase('trace') : undefined;
  const configPath = join(dir, 'config.yaml');
  writeFileSync(
    configPath,
    `store: ${pgdb ? pgdb.url : 'pglite://./data'}
http: { host: 127.0.0.1, port: 0 }
auth:
  tokens:
    - { role: intake, sha256: "${hashToken(TRACE_TOKENS.intake)}" }
    - { role: operator, sha256: "${hashToken(TRACE_TOKENS.operator)}" }
    - { role: auditor, sha256: "${hashToken(TRACE_TOKENS.auditor)}" }
    - { role: auditor, sha256: "${hashToken(TRACE_TOKENS.harborAuditor)}", tenants: [harbor-health] }
tenants:
  - id: riverside-clinic
    reviewKeys: ${FIXTURES}keys/riverside-clinic.jwks.json
    destinations: [ehr-fhir, ehr-mdm]
  - id: harbor-health
    reviewKeys: ${FIXTURES}keys/harbor-health.jwks.json
    destinations: [ehr-fhir, ehr-mdm]
destinations:
  - id: ehr-fhir
    type: fhir
    baseUrl: ${fhir.baseUrl}
    mapping: fhir-transaction
    auth: { type: none }
    retry: { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 5 }
  - id: ehr-mdm
    type: mllp
    host: 127.0.0.1
    port: ${mllp.port}
    mapping: mdm
    ackTimeoutMs: 5000
`,
  );
  const config = await loadConfig(configPath, {});
  const service = await createService(config, {
    profiles: [fileURLToPath(SHARED_PROFILES)],
    housekeepingMs: 500,
  });
  const get = async (path: string, token?: string) => {
    const res = await fetch(`${service.url}${path}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const notes: SentNote[] = [];
  for (const file of files) {
    const body = await queueableFixture(file);
    const res = await fetch(`${service.url}/v1/notes`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TRACE_TOKENS.intake}` },
    });
    if (res.status !== 202) throw new Error(`${file}: intake answered ${res.status} ${await res.text()}`);
    const sent = JSON.parse(body);
    notes.push({
      file,
      tenant: sent.tenant,
      noteId: sent.noteId,
      revision: sent.revision,
      sent,
      ...readFixtureFiles(file),
    });
  }
  await until(
    async () => {
      for (const n of notes) {
        const s = await get(`/v1/notes/${n.tenant}/${n.noteId}`, TRACE_TOKENS.operator);
        const rev = s.body?.revisions?.find((r: { revision: number }) => r.revision === n.revision);
        if (!rev || rev.deliveries.length !== 2) return false;
        if (!rev.deliveries.every((d: { state: string }) => d.state === 'delivered')) {
          if (rev.deliveries.some((d: { state: string }) => ['rejected', 'failed'].includes(d.state)))
            throw new Error(`${n.file}: delivery ${JSON.stringify(rev.deliveries)}`);
          return false;
        }
      }
      return true;
    },
    90_000,
    'every note delivered',
  );
  return {
    service,
    fhir,
    mllp,
    configPath,
    notes,
    get,
    async close() {
      await service.stop();
      await fhir.close();
      await mllp.close();
      await pgdb?.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
