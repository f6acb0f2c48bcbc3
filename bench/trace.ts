/**
 * Trace latency (issue 6): `GET /v1/trace` for the 60-minute encounter's note (fixtures long-visit.json: 1,523
 * transcript segments, 120 sentences), with its artifacts by S3 reference, delivered to a FHIR transaction
 * destination (a receipt listing every entry, as a transaction response does) and an MDM destination, among a
 * hundred other delivered notes. Measured through the real HTTP app (auth, the trace's five statements, the
 * checks it makes, the audit record of the read, JSON) and as `readTrace` alone, per query form, on PGlite and
 * PostgreSQL. Target: p99 ≤ 100 ms with PostgreSQL.
 *
 *   npm run bench -- trace [--seconds 2]     (only this section, replaced in place in BENCHMARKS.md)
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createApp } from '../src/api/app.ts';
import { hashToken, loadConfig } from '../src/config/index.ts';
import { s3Fixture } from '../src/demo/fixtures.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { Intake } from '../src/service/intake.ts';
import { readTrace } from '../src/trace/trace.ts';
import type { TraceQuery } from '../src/trace/types.ts';
import { Conformance } from '../src/validate/conformance.ts';
import { loadProfiles } from '../src/validate/profiles.ts';
import { noteFactory } from './service.ts';

export interface TraceBenchOptions {
  readonly root: string;
  readonly seconds: number;
  readonly profiles: string;
  readonly log: (line?: string) => void;
  readonly command: string;
  /** Called just before the HTTP measurement (e.g. to start a profiler). */
  readonly beforeHttp?: () => Promise<void>;
  /** Other delivered notes in the ledger (default 100). */
  readonly background?: number;
}

const HEADING = '## Trace latency (issue 6)';
const TOKEN = 'bench-auditor-token';
const fmt = (n: number, d = 0) =>
  n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const row = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;

interface Stats {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

async function timeIt(seconds: number, op: () => Promise<unknown>): Promise<Stats> {
  const warm = performance.now() + Math.min(1000, (seconds * 1000) / 3);
  while (performance.now() < warm) await op();
  const times: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end || times.length < 50) {
    const t0 = performance.now();
    await op();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const at = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
  return { n: times.length, p50: at(0.5), p99: at(0.99), max: times.at(-1)! };
}

async function freshPg(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `sb_bench_trace_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  return {
    url: `postgres://postgres@127.0.0.1:5432/${name}`,
    async drop() {
      const a = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
      await a.connect();
      await a.query(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}

/** Delivers every due delivery with a receipt shaped like the destination's real one. */
async function deliverAll(ledger: Ledger): Promise<void> {
  for (const destination of ['ehr-fhir', 'ehr-mdm']) {
    for (;;) {
      const claimed = await ledger.claimDue(destination, { limit: 50, owner: 'bench', leaseMs: 60_000 });
      if (claimed.length === 0) break;
      for (const d of claimed) {
        const startedAt = new Date();
        let receipt: { [k: string]: import('../src/contract/json.ts').JsonValue };
        if (destination === 'ehr-fhir') {
          const bundle = JSON.parse(d.rendering.payload) as {
            entry: { resource: { resourceType: string } }[];
          };
          const entries = bundle.entry.map((e) => {
            const id = randomUUID();
            return {
              status: '201 Created',
              resourceType: e.resource.resourceType,
              id,
              versionId: '1',
              location: `${e.resource.resourceType}/${id}/_history/1`,
            };
          });
          const primary = entries.find((e) => e.resourceType === 'DocumentReference')!;
          receipt = {
            status: 200,
            resourceType: primary.resourceType,
            id: primary.id,
            versionId: '1',
            created: true,
            entries,
          };
          // One 503 first, so the trace has more than one attempt to show; the loop claims it again.
          if (d.attempts === 0) {
            await ledger.recordAttempt(d.id, 'bench', {
              outcome: 'retry',
              startedAt,
              durationMs: 3,
              httpStatus: 503,
              errorCode: 'FHIR_NO_ANSWER',
              nextAttemptAt: new Date(Date.now() - 1),
            });
            continue;
          }
        } else {
          const controlId = d.rendering.payload.split('\r')[0]!.split('|')[9]!;
          receipt = { controlId, msa2: controlId, reason: 'AA' };
        }
        await ledger.recordAttempt(d.id, 'bench', {
          outcome: 'delivered',
          startedAt,
          durationMs: 12,
          ...(destination === 'ehr-fhir' ? { httpStatus: 200 } : { ackCode: 'AA' }),
          receipt,
        });
      }
    }
  }
}

export async function benchStore(
  o: TraceBenchOptions,
  store: 'pglite' | 'postgres',
  log: (s?: string) => void,
): Promise<{ http: Stats; byForm: [string, Stats][] }> {
  const dir = mkdtempSync(join(tmpdir(), 'sb-bench-trace-'));
  const pgdb = store === 'postgres' ? await freshPg() : undefined;
  const fixtures = join(o.root, 'fixtures');
  writeFileSync(
    join(dir, 'config.yaml'),
    `store: ${pgdb ? pgdb.url : 'pglite://./data'}
auth:
  tokens:
    - { role: auditor, sha256: "${hashToken(TOKEN)}" }
s3: { region: us-east-1, endpoint: http://127.0.0.1:9, forcePathStyle: true }
tenants:
  - id: riverside-clinic
    reviewKeys: ${fixtures}/keys/riverside-clinic.jwks.json
    destinations: [ehr-fhir, ehr-mdm]
destinations:
  - id: ehr-fhir
    type: fhir
    baseUrl: http://127.0.0.1:9/fhir/R4
    mapping: fhir-transaction
    auth: { type: none }
  - id: ehr-mdm
    type: mllp
    host: 127.0.0.1
    port: 9
    mapping: mdm
`,
  );
  const config = await loadConfig(join(dir, 'config.yaml'), {});
  const ledger = await Ledger.open(pgdb ? pgdb.url : `pglite://${join(dir, 'data')}`);
  const objects = new Map<string, Uint8Array>();
  const intake = new Intake({
    config,
    ledger,
    mappings: new MappingRegistry(),
    conformance: new Conformance(await loadProfiles([o.profiles])),
    objectStore: { getObject: async ({ bucket, key }) => objects.get(`${bucket}/${key}`)! },
  });
  const server: Server = createApp({ config, intake, ledger }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  server.keepAliveTimeout = 120_000;
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const make = await noteFactory(o.root);
    const background = o.background ?? 100;
    const t0 = performance.now();
    for (let i = 0; i < background; i++)
      await intake.ingest(new TextEncoder().encode(await make(`sbt-bg-${i}`)), 'sqs');
    const long = await s3Fixture('long-visit.json', 'claims', async (key, bytes) => {
      objects.set(`claims/${key}`, bytes);
    });
    const r = await intake.ingest(new TextEncoder().encode(long), 'sqs');
    if (r.outcome !== 'accepted') throw new Error(`bench: the long visit was ${r.outcome}`);
    await deliverAll(ledger);
    console.error(`trace bench ${store}: recorded in ${fmt((performance.now() - t0) / 1000, 1)} s`);
    log(
      `  ${store}: ${background} typical notes + the long visit recorded and delivered in ${fmt((performance.now() - t0) / 1000, 1)} s`,
    );
    const env = JSON.parse(long) as { tenant: string; noteId: string };
    const rows = await ledger.db.query<{
      destination: string;
      identifiers: unknown[];
      receipt: { entries?: { resourceType: string; id: string }[] };
    }>(
      `select r.destination, r.identifiers, d.receipt from deliveries d join renderings r on r.id = d.rendering_id
       where d.tenant = $1 and d.note_id = $2`,
      [env.tenant, env.noteId],
    );
    const fhir = rows.find((x) => x.destination === 'ehr-fhir')!;
    const mdm = rows.find((x) => x.destination === 'ehr-mdm')!;
    const ident = fhir.identifiers[0] as { system: string; value: string };
    const prov = fhir.receipt.entries!.filter((e) => e.resourceType === 'Provenance').at(-1)!;
    const msg = mdm.identifiers[0] as { documentNumber: string; controlId: string };
    const forms: [string, TraceQuery, string][] = [
      [
        'tenant + noteId',
        { kind: 'note', tenant: env.tenant, noteId: env.noteId },
        `tenant=${env.tenant}&noteId=${env.noteId}`,
      ],
      [
        'FHIR identifier',
        { kind: 'identifier', destination: 'ehr-fhir', system: ident.system, value: ident.value },
        `destination=ehr-fhir&identifier=${encodeURIComponent(`${ident.system}|${ident.value}`)}`,
      ],
      [
        'EHR resource id (last Provenance)',
        { kind: 'resourceId', destination: 'ehr-fhir', resourceType: 'Provenance', id: prov.id },
        `destination=ehr-fhir&resourceId=Provenance/${prov.id}`,
      ],
      [
        'TXA-12.1',
        { kind: 'documentNumber', destination: 'ehr-mdm', documentNumber: msg.documentNumber },
        `destination=ehr-mdm&documentNumber=${encodeURIComponent(msg.documentNumber)}`,
      ],
      [
        'MSH-10',
        { kind: 'controlId', destination: 'ehr-mdm', controlId: msg.controlId },
        `destination=ehr-mdm&controlId=${encodeURIComponent(msg.controlId)}`,
      ],
    ];
    let bytes = 0;
    const byForm: [string, Stats][] = [];
    for (const [name, query, qs] of forms) {
      const t = await readTrace(ledger.db, query);
      if (t.noteId !== env.noteId) throw new Error(`bench: ${name} traced to another note`);
      const http = await fetch(`${base}/v1/trace?${qs}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      if (http.status !== 200) throw new Error(`bench: ${name} answered ${http.status}`);
      bytes = (await http.arrayBuffer()).byteLength;
      byForm.push([name, await timeIt(o.seconds / 2, () => readTrace(ledger.db, query))]);
    }
    if (o.beforeHttp) await o.beforeHttp();
    const http = await timeIt(o.seconds, async () => {
      const res = await fetch(`${base}/v1/trace?${forms[1]![2]}`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      if (res.status !== 200) throw new Error(`bench: trace answered ${res.status}`);
      await res.arrayBuffer();
    });
    log(`  ${store}: the trace answer is ${fmt(bytes / 1024)} KB of JSON`);
    return { http, byForm };
  } finally {
    await new Promise((r) => server.close(r));
    await ledger.close();
    await pgdb?.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function traceBench(o: TraceBenchOptions): Promise<void> {
  const notes: string[] = [];
  const results = new Map<string, Awaited<ReturnType<typeof benchStore>>>();
  let loadAtMeasure = os.loadavg();
  for (const store of ['postgres', 'pglite'] as const) {
    results.set(store, await benchStore(o, store, (s) => notes.push(s ?? '')));
    if (store === 'postgres') loadAtMeasure = os.loadavg();
  }
  const log = o.log;
  log(HEADING);
  log();
  log(
    `The 60-minute encounter's note (long-visit.json: 1,523 segments, 120 sentences; artifacts by S3 reference) delivered to a FHIR transaction destination (receipt lists every entry; one 503 then 200) and an MDM destination, among ${o.background ?? 100} other delivered notes. "HTTP" is \`GET /v1/trace\` end to end over loopback, one request at a time: auth, resolution, the five reads, the checks (the signature re-verified with the tenant's keys, the content hash, payload hashes in the database, artifact hashes), the audit record of the read (its own transaction), JSON. The other rows are \`readTrace\` alone. Command: \`${o.command}\`.`,
  );
  log();
  log(
    `Machine: ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, Node ${process.version}; load average when measured ${loadAtMeasure.map((l) => l.toFixed(2)).join(' / ')} (other work shares this machine: p99 follows the load).`,
  );
  log();
  for (const n of notes) log(n);
  log();
  log(row(['store', 'query', 'n', 'p50 ms', 'p99 ms', 'max ms']));
  log(row(['---', '---', '---:', '---:', '---:', '---:']));
  for (const [store, r] of results) {
    log(
      row([
        store,
        '**HTTP GET /v1/trace (FHIR identifier)**',
        r.http.n,
        fmt(r.http.p50, 1),
        `**${fmt(r.http.p99, 1)}**`,
        fmt(r.http.max, 1),
      ]),
    );
    for (const [name, s] of r.byForm)
      log(row([store, `readTrace: ${name}`, s.n, fmt(s.p50, 1), fmt(s.p99, 1), fmt(s.max, 1)]));
  }
  log();
  const p99 = results.get('postgres')!.http.p99;
  log(
    `Target p99 ≤ 100 ms with PostgreSQL: ${p99 <= 100 ? 'met' : 'NOT met'} (${fmt(p99, 1)} ms over HTTP).`,
  );
  log();
}

/** `npm run bench -- trace`: runs only this section and replaces it in `out` (or appends it). */
export async function runTraceOnly(o: Omit<TraceBenchOptions, 'log'> & { out: string }): Promise<void> {
  const lines: string[] = [];
  const log = (s = '') => {
    lines.push(s);
    console.log(s);
  };
  await traceBench({ ...o, log });
  let text = '';
  try {
    text = readFileSync(o.out, 'utf8');
  } catch {
    text = '# Benchmarks\n';
  }
  const section = lines.join('\n');
  const start = text.indexOf(HEADING);
  if (start < 0) text = `${text.trimEnd()}\n\n${section}\n`;
  else {
    const next = text.indexOf('\n## ', start + HEADING.length);
    text = `${text.slice(0, start)}${section}\n${next < 0 ? '' : text.slice(next)}`;
  }
  writeFileSync(o.out, text.endsWith('\n') ? text : `${text}\n`);
  console.error(`wrote the trace section of ${o.out}`);
}
