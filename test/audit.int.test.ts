/**
 * The hash-chained audit log on both stores (PGlite in a temp dir, a fresh PostgreSQL database): every record
 * kind is written by the operation it audits; `verifyAuditChain` accepts the untouched chain and names the first
 * bad record after an edit, a deletion, an insertion, a reordering and a truncation made directly in the
 * database (the append-only triggers disabled inside a transaction that is rolled back); anchoring (a file, and
 * an S3 object on fauxqs) catches a truncated or re-hashed chain; `scribe-bridge audit verify` runs as a child
 * process. The service-level records (refused envelope, PHI-bearing read) are checked over real HTTP.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { buildApp } from 'fauxqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken, loadConfig } from '../src/config/index.ts';
import {
  type AuditRecord,
  auditHash,
  auditPhiRead,
  auditReplay,
  auditVerificationFailure,
  GENESIS_HASH,
  readAudit,
} from '../src/ledger/audit.ts';
import {
  anchorAuditHead,
  FileAnchorStore,
  S3AnchorStore,
  startAnchoring,
} from '../src/ledger/audit-anchor.ts';
import { type Anchor, type ChainVerdict, verifyAuditChain } from '../src/ledger/audit-verify.ts';
import { type Db, openLedger, type Tx } from '../src/ledger/db.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { migrate } from '../src/ledger/migrate.ts';
import { type ApiServer, startApi } from './support/intake.ts';
import { PG_BASE, pgAdmin, revisionFixture, sha } from './support/ledger-inputs.ts';
import { until } from './support/service-harness.ts';

const root = new URL('../', import.meta.url).pathname;
const bin = join(root, 'bin/scribe-bridge.js');
const fixtures = join(root, 'fixtures/');
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

const input = (noteId: string, revision: number, destinations: readonly string[], content = 'v') =>
  revisionFixture(noteId, revision, destinations, { content });

/** Runs `fn` with the append-only triggers off, then rolls everything back. */
async function tampered(db: Db, fn: (tx: Tx) => Promise<void>, anchors?: Anchor[]): Promise<ChainVerdict> {
  let verdict: ChainVerdict | undefined;
  await db
    .transaction(async (tx) => {
      await tx.query('alter table audit_log disable trigger user');
      await fn(tx);
      verdict = await verifyAuditChain(tx, { pageSize: 7, ...(anchors ? { anchors } : {}) });
      throw new Error('rollback');
    })
    .catch((e: unknown) => {
      if ((e as Error).message !== 'rollback') throw e;
    });
  return verdict!;
}

const fault = (v: ChainVerdict) => (v.ok ? undefined : { seq: v.fault.seq, problem: v.fault.problem });

/** Re-hashes records from `from` on (as someone who knows the format would) and moves the head. */
async function rehashFrom(tx: Tx, from: number): Promise<void> {
  const records = await readAudit(tx, 1, 100_000);
  let prev = records.find((r) => r.seq === from - 1)?.hash ?? GENESIS_HASH;
  for (const r of records.filter((x) => x.seq >= from)) {
    const hash = auditHash(prev, r);
    await tx.query('update audit_log set prev_hash = $2, hash = $3 where seq = $1', [r.seq, prev, hash]);
    prev = hash;
  }
  await tx.query('update audit_chain_head set last_seq = $1, last_hash = $2', [records.at(-1)!.seq, prev]);
}

function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: root,
      env: { ...process.env, SCRIBE_BRIDGE_CONFIG: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('exit', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

describe.each(['pglite', 'postgres'] as const)('audit chain on %s', (kind) => {
  let url: string;
  let dir: string;
  let dbName = '';
  let db: Db;
  let ledger: Ledger;
  let total = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-audit-'));
    if (kind === 'pglite') url = `pglite://${join(dir, 'data')}`;
    else {
      dbName = `sb_audit_${randomBytes(6).toString('hex')}`;
      await pgAdmin(`create database ${dbName}`);
      url = `${PG_BASE}/${dbName}`;
    }
    db = await openLedger(url);
    await migrate(db);
    ledger = new Ledger(db, { actor: 'test' });

    // Every record kind, written by the operation it audits.
    for (let i = 0; i < 4; i++) await ledger.recordRevision(input(`n${i}`, 1, ['d1', 'd2']));
    await ledger.recordRevision(input('n0', 1, ['d1', 'd2'])); // duplicate
    await ledger.recordRevision(input('n0', 1, ['d1', 'd2'], 'other')); // conflict
    const claimed = await ledger.claimDue('d1', { limit: 10, owner: 'w1', leaseMs: 60_000 });
    expect(claimed.length).toBe(4);
    const t = new Date();
    await ledger.recordAttempt(claimed[0]!.id, 'w1', {
      outcome: 'retry',
      startedAt: t,
      durationMs: 5,
      httpStatus: 503,
      nextAttemptAt: new Date(t.getTime() - 1000),
    });
    await ledger.recordAttempts(
      claimed.slice(1).map((c, i) => ({
        deliveryId: c.id,
        owner: 'w1',
        result: {
          outcome: 'delivered' as const,
          startedAt: t,
          durationMs: 7,
          httpStatus: 201,
          receipt: { resourceType: 'DocumentReference', id: `dr-${i}`, versionId: '1' },
        },
      })),
    );
    await auditVerificationFailure(db, {
      tenant: 't1',
      code: 'SIGNATURE_INVALID',
      source: 'http',
      contentSha256: sha('x'),
    });
    await auditPhiRead(db, {
      role: 'auditor',
      tokenSha256: hashToken('secret-token'),
      endpoint: 'GET /v1/trace',
      query: { destination: 'd1', identifier: 'urn:test|n1-1' },
      notes: [{ tenant: 't1', noteId: 'n1', revision: 1 }],
      status: 200,
    });
    await auditReplay(db, {
      actor: 'operator:abc',
      kind: 'delivery',
      tenant: 't1',
      noteId: 'n3',
      revision: 1,
      destination: 'd1',
      details: { deliveryId: claimed[3]!.id },
    });
    for (let i = 4; i < 8; i++) await ledger.recordRevision(input(`n${i}`, 1, ['d1']));
    total = (await readAudit(db, 1, 100_000)).length;
  }, 60_000);

  afterAll(async () => {
    await db?.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    if (dbName) await pgAdmin(`drop database if exists ${dbName} with (force)`);
  });

  it('records every kind of event, without PHI or tokens', async () => {
    const records = await readAudit(db, 1, 100_000);
    const actions = new Set(records.map((r) => r.action));
    for (const a of [
      'revision.accepted',
      'rendering.recorded',
      'revision.duplicate-suppressed',
      'revision.conflict',
      'delivery.retry',
      'delivery.delivered',
      'delivery.receipt',
      'intake.refused',
      'read.phi',
      'replay.delivery',
    ]) {
      expect(actions, a).toContain(a);
    }
    const rendering = records.find((r) => r.action === 'rendering.recorded' && r.noteId === 'n0')!;
    expect(rendering.details).toMatchObject({
      mapping: { id: 'us-core-docref', version: '1.0.0', digest: sha('m') },
      payloadSha256: sha('payload n0 r1 d1'),
    });
    const receipt = records.find((r) => r.action === 'delivery.receipt')!;
    expect(receipt.details['receipt']).toMatchObject({ resourceType: 'DocumentReference' });
    const read = records.find((r) => r.action === 'read.phi')!;
    expect(read.actor).toBe(`auditor:${hashToken('secret-token').slice(0, 12)}`);
    expect(read.details).toMatchObject({
      endpoint: 'GET /v1/trace',
      query: { destination: 'd1', identifier: `sha256:${sha('urn:test|n1-1')}` },
      notes: [{ tenant: 't1', noteId: 'n1', revision: 1 }],
    });
    const text = JSON.stringify(records);
    expect(text).not.toContain('secret-token');
    expect(text).not.toContain(hashToken('secret-token'));
    expect(text).not.toContain('n1-1');
  });

  it('verifies the untouched chain, page by page', async () => {
    const progress: number[] = [];
    const v = await verifyAuditChain(db, { pageSize: 5, onProgress: (done) => progress.push(done) });
    const [head] = await db.query<{ last_seq: number; last_hash: string }>('select * from audit_chain_head');
    expect(v).toMatchObject({
      ok: true,
      records: total,
      head: { seq: head!.last_seq, hash: head!.last_hash },
    });
    expect(progress.length).toBeGreaterThan(3);
    expect(progress.at(-1)).toBe(total);
  });

  it('names the first edited record', async () => {
    const v = await tampered(db, async (tx) => {
      await tx.query(
        `update audit_log set details = jsonb_set(details, '{status}', '"amended"') where seq = 9`,
      );
    });
    expect(fault(v)).toEqual({ seq: 9, problem: 'hash-mismatch' });
    expect(v.records).toBe(8);
    // an edited actor further on: still the first one is named
    const w = await tampered(db, async (tx) => {
      await tx.query(`update audit_log set actor = 'someone' where seq in (4, 12)`);
    });
    expect(fault(w)).toEqual({ seq: 4, problem: 'hash-mismatch' });
  });

  it('names a deleted record, at the start, in the middle and at the end', async () => {
    expect(
      fault(
        await tampered(db, (tx) => tx.query('delete from audit_log where seq = 6').then(() => undefined)),
      ),
    ).toEqual({
      seq: 6,
      problem: 'gap',
    });
    expect(
      fault(
        await tampered(db, (tx) => tx.query('delete from audit_log where seq = 1').then(() => undefined)),
      ),
    ).toEqual({
      seq: 1,
      problem: 'gap',
    });
    const tail = await tampered(db, async (tx) => {
      await tx.query('delete from audit_log where seq > $1', [total - 3]);
    });
    expect(fault(tail)).toEqual({ seq: total - 2, problem: 'gap' });
  });

  it('names an inserted record', async () => {
    // A forged record slid in at seq 5 (later ones moved up by one), chained from record 4 as the verifier would
    // compute it: record 5 itself checks out, the record after it cannot.
    const v = await tampered(db, async (tx) => {
      await tx.query('update audit_log set seq = seq + 100000 where seq >= 5');
      await tx.query('update audit_log set seq = seq - 99999 where seq > 100000');
      const [r4] = await readAudit(tx, 4, 1);
      const forged: Omit<AuditRecord, 'prevHash' | 'hash'> = {
        seq: 5,
        at: r4!.at,
        actor: 'intruder',
        action: 'revision.accepted',
        tenant: 't1',
        noteId: 'forged',
        revision: 1,
        destination: null,
        details: {},
      };
      await tx.query(
        `insert into audit_log (seq, at, actor, action, tenant, note_id, revision, destination, details, prev_hash, hash)
         values (5, $1, 'intruder', 'revision.accepted', 't1', 'forged', 1, null, '{}', $2, $3)`,
        [r4!.at, r4!.hash, auditHash(r4!.hash, forged)],
      );
    });
    expect(fault(v)).toEqual({ seq: 6, problem: 'prev-hash-break' });
    // a record appended behind the chain's back (the head not moved)
    const appended = await tampered(db, async (tx) => {
      const [last] = await readAudit(tx, total, 1);
      const record = {
        seq: total + 1,
        at: last!.at,
        actor: 'x',
        action: 'y',
        tenant: null,
        noteId: null,
        revision: null,
        destination: null,
        details: {},
      };
      await tx.query(
        `insert into audit_log (seq, at, actor, action, details, prev_hash, hash) values ($1, $2, 'x', 'y', '{}', $3, $4)`,
        [total + 1, last!.at, last!.hash, auditHash(last!.hash, record)],
      );
    });
    expect(fault(appended)).toEqual({ seq: total + 1, problem: 'beyond-head' });
  });

  it('names a chain head that does not match the last record', async () => {
    const v = await tampered(db, async (tx) => {
      await tx.query('update audit_chain_head set last_hash = $1', [sha('another head')]);
    });
    expect(fault(v)).toEqual({ seq: total, problem: 'head-mismatch' });
  });

  it('names the first record of a reordering', async () => {
    const v = await tampered(db, async (tx) => {
      await tx.query('update audit_log set seq = 1000000 where seq = 7');
      await tx.query('update audit_log set seq = 7 where seq = 8');
      await tx.query('update audit_log set seq = 8 where seq = 1000000');
    });
    expect(fault(v)).toEqual({ seq: 7, problem: 'prev-hash-break' });
  });

  it('with an anchor, detects a truncated or re-hashed chain that verifies on its own', async () => {
    const file = new FileAnchorStore(join(dir, `anchors-${kind}.jsonl`));
    const first = await anchorAuditHead(db, file);
    expect(first).toMatchObject({ seq: total });
    expect(await anchorAuditHead(db, file, first)).toBe(first); // head unchanged: nothing appended
    const anchors = await file.read();
    expect(anchors).toEqual([first]);

    const cut = total - 4;
    const truncate = async (tx: Tx) => {
      await tx.query('delete from audit_log where seq > $1', [cut]);
      const [last] = await readAudit(tx, cut, 1);
      await tx.query('update audit_chain_head set last_seq = $1, last_hash = $2', [cut, last!.hash]);
    };
    expect(fault(await tampered(db, truncate))).toBeUndefined();
    expect(fault(await tampered(db, truncate, anchors))).toEqual({ seq: total, problem: 'truncated' });

    const rewrite = async (tx: Tx) => {
      await tx.query(`update audit_log set actor = 'someone' where seq = 3`);
      await rehashFrom(tx, 3);
    };
    expect(fault(await tampered(db, rewrite))).toBeUndefined();
    expect(fault(await tampered(db, rewrite, anchors))).toEqual({ seq: total, problem: 'anchor-mismatch' });
    expect((await verifyAuditChain(db, { anchors })).ok).toBe(true);
  });

  it('`scribe-bridge audit verify` passes an untouched chain and names the first bad record', async () => {
    const anchorFile = join(dir, 'cli-anchors.jsonl');
    await anchorAuditHead(db, new FileAnchorStore(anchorFile));
    const store = kind === 'pglite' ? `pglite://./data` : url;
    const config = join(dir, `config-${kind}.yaml`);
    writeFileSync(join(dir, 'keys.json'), readFileSync(join(fixtures, 'keys/riverside-clinic.jwks.json')));
    writeFileSync(
      config,
      `store: ${store}
audit: { anchor: { file: ./cli-anchors.jsonl }, intervalSeconds: 60 }
tenants: [{ id: t1, reviewKeys: ./keys.json, destinations: [d1] }]
destinations: [{ id: d1, type: file, directory: ./out, mapping: us-core-docref }]
`,
    );
    const [{ destination: original } = { destination: null }] = await db.query<{
      destination: string | null;
    }>('select destination from audit_log where seq = 11');
    const setDestination = async (value: string | null) => {
      const d = kind === 'pglite' ? await openLedger(url) : db;
      await d.transaction(async (tx) => {
        await tx.query('alter table audit_log disable trigger user');
        await tx.query('update audit_log set destination = $1 where seq = 11', [value]);
        await tx.query('alter table audit_log enable trigger user');
      });
      if (kind === 'pglite') await d.close();
    };
    // PGlite is one process's: hand the directory to the child. (Each CLI start costs seconds here: one good
    // and one bad run on PGlite, one bad run on PostgreSQL.)
    if (kind === 'pglite') await db.close();
    try {
      if (kind === 'pglite') {
        const good = await cli(['audit', 'verify', '--config', config]);
        expect(good.err).not.toContain('error');
        expect(good.code).toBe(0);
        expect(good.out).toMatch(
          new RegExp(`^audit chain ok: ${total} record\\(s\\) .* head record ${total} hash [0-9a-f]{64}`),
        );
        expect(good.out).toContain('contains the head anchored at');
      }
      await setDestination('elsewhere');
      if (kind === 'pglite') {
        const text = await cli(['audit', 'verify', '--config', config]);
        expect(text.code).toBe(1);
        expect(text.err).toContain('AUDIT_CHAIN_BROKEN: audit record 11 is bad (hash-mismatch)');
      } else {
        const bad = await cli(['audit', 'verify', '--config', config, '--json']);
        expect(bad.code).toBe(1);
        expect(JSON.parse(bad.out)).toMatchObject({
          ok: false,
          records: 10,
          fault: { seq: 11, problem: 'hash-mismatch' },
          anchor: anchorFile,
        });
      }
      await setDestination(original);
    } finally {
      if (kind === 'pglite') {
        db = await openLedger(url);
        ledger = new Ledger(db);
      }
    }
    expect((await verifyAuditChain(db)).ok).toBe(true);
  }, 60_000);
});

describe('S3 anchor (fauxqs)', () => {
  let app: ReturnType<typeof buildApp>;
  let endpoint: string;
  let dir: string;
  let db: Db;

  beforeAll(async () => {
    app = buildApp({ logger: false });
    endpoint = await app.listen({ port: 0, host: '127.0.0.1' });
    const s3 = new S3Client({ endpoint, region: 'us-east-1', credentials, forcePathStyle: true });
    await s3.send(new CreateBucketCommand({ Bucket: 'audit-anchors' }));
    s3.destroy();
    dir = mkdtempSync(join(tmpdir(), 'sb-audit-s3-'));
    db = await openLedger(`pglite://${join(dir, 'data')}`);
    await migrate(db);
    const ledger = new Ledger(db);
    for (let i = 0; i < 3; i++) await ledger.recordRevision(input(`s${i}`, 1, ['d1']));
  }, 60_000);

  afterAll(async () => {
    await db?.close().catch(() => undefined);
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('anchors the head to an S3 object and detects a truncated chain, in process and from the CLI', async () => {
    const store = new S3AnchorStore('audit-anchors', 'ledger/head.json', {
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      credentials,
    });
    try {
      await expect(store.read()).rejects.toMatchObject({ code: 'AUDIT_ANCHOR_UNAVAILABLE' });
      await expect(new FileAnchorStore(join(dir, 'none.jsonl')).read()).rejects.toMatchObject({
        code: 'AUDIT_ANCHOR_UNAVAILABLE',
      });
      writeFileSync(join(dir, 'bad.jsonl'), '{"seq":1,"hash":"00","at":"x"}\n');
      await expect(new FileAnchorStore(join(dir, 'bad.jsonl')).read()).rejects.toThrow(
        /AUDIT_ANCHOR_INVALID.*bad\.jsonl:1/,
      );
      const a = await anchorAuditHead(db, store);
      expect(await store.read()).toEqual([a]);
      // an older head never replaces a later one (several workers anchor the same ledger)
      await store.write({ seq: 1, hash: GENESIS_HASH.replace(/0/g, 'a'), at: new Date().toISOString() });
      expect(await store.read()).toEqual([a]);
      expect((await verifyAuditChain(db, { anchors: await store.read() })).ok).toBe(true);
    } finally {
      store.close();
    }
    // Delete the last two records and move the head back: only the anchor knows.
    await db.transaction(async (tx) => {
      await tx.query('alter table audit_log disable trigger user');
      const [head] = await tx.query<{ last_seq: number }>('select last_seq from audit_chain_head');
      const cut = head!.last_seq - 2;
      await tx.query('delete from audit_log where seq > $1', [cut]);
      const [last] = await readAudit(tx, cut, 1);
      await tx.query('update audit_chain_head set last_seq = $1, last_hash = $2', [cut, last!.hash]);
      await tx.query('alter table audit_log enable trigger user');
    });
    await db.close();
    const config = join(dir, 'config.yaml');
    writeFileSync(join(dir, 'keys.json'), readFileSync(join(fixtures, 'keys/riverside-clinic.jwks.json')));
    writeFileSync(
      config,
      `store: pglite://./data
s3: { region: us-east-1, endpoint: "${endpoint}", forcePathStyle: true }
audit: { anchor: { s3: "s3://audit-anchors/ledger/head.json" } }
tenants: [{ id: t1, reviewKeys: ./keys.json, destinations: [d1] }]
destinations: [{ id: d1, type: file, directory: ./out, mapping: us-core-docref }]
`,
    );
    const env = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };
    const r = await cli(['audit', 'verify', '--config', config, '--json'], env);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out)).toMatchObject({
      ok: false,
      fault: { problem: 'truncated' },
      anchor: 's3://audit-anchors/ledger/head.json',
    });
    db = await openLedger(`pglite://${join(dir, 'data')}`);
  }, 60_000);
});

describe('service audit records over HTTP', () => {
  const TOKENS = { intake: 'intake-token-a', auditor: 'auditor-token-a' };
  let api: ApiServer;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-audit-http-'));
    api = await startApi(
      dir,
      `store: pglite://./data
auth:
  tokens:
    - { role: intake, sha256: "${hashToken(TOKENS.intake)}" }
    - { role: auditor, sha256: "${hashToken(TOKENS.auditor)}" }
tenants:
  - id: riverside-clinic
    reviewKeys: ${fixtures}keys/riverside-clinic.jwks.json
    destinations: [archive]
destinations:
  - { id: archive, type: file, directory: ./out, mapping: us-core-docref }
`,
    );
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  afterAll(async () => {
    await api?.close();
  });

  const last = async () => (await readAudit(api.ledger.db, 1, 100_000)).at(-1)!;

  it('records a refused envelope (code, tenant, hash, no content) and every status read', async () => {
    const dap = readFileSync(`${fixtures}envelopes/valid/dap-depression.json`, 'utf8');
    const changed = JSON.parse(dap);
    changed.note.sections[0].sentences[0].text += ' (changed, not re-signed)';
    const body = JSON.stringify(changed);
    const res = await fetch(`${api.base}/v1/notes`, {
      method: 'POST',
      body,
      headers: { authorization: `Bearer ${TOKENS.intake}`, 'content-type': 'application/json' },
    });
    expect(res.status).toBe(422);
    const refused = await last();
    expect(refused).toMatchObject({
      action: 'intake.refused',
      tenant: 'riverside-clinic',
      noteId: null,
      details: { code: 'SIGNATURE_INVALID', source: 'http', contentSha256: sha(body) },
    });
    const garbage = await fetch(`${api.base}/v1/notes`, {
      method: 'POST',
      body: '{"not": "an envelope"',
      headers: { authorization: `Bearer ${TOKENS.intake}` },
    });
    expect(garbage.status).toBe(400);
    expect(await last()).toMatchObject({
      action: 'intake.refused',
      tenant: null,
      details: { code: 'ENVELOPE_JSON' },
    });

    expect(
      (
        await fetch(`${api.base}/v1/notes`, {
          method: 'POST',
          body: dap,
          headers: { authorization: `Bearer ${TOKENS.intake}` },
        })
      ).status,
    ).toBe(202);
    const { tenant, noteId } = JSON.parse(dap) as { tenant: string; noteId: string };
    const read = await fetch(`${api.base}/v1/notes/${tenant}/${noteId}`, {
      headers: { authorization: `Bearer ${TOKENS.auditor}` },
    });
    expect(read.status).toBe(200);
    expect(await last()).toMatchObject({
      action: 'read.phi',
      actor: `auditor:${hashToken(TOKENS.auditor).slice(0, 12)}`,
      tenant,
      noteId,
      details: { endpoint: 'GET /v1/notes/{tenant}/{noteId}', notes: [{ tenant, noteId }], status: 200 },
    });
    const missing = await fetch(`${api.base}/v1/notes/${tenant}/no-such-note`, {
      headers: { authorization: `Bearer ${TOKENS.auditor}` },
    });
    expect(missing.status).toBe(404);
    expect(await last()).toMatchObject({ action: 'read.phi', details: { notes: [], status: 404 } });
    expect((await verifyAuditChain(api.ledger.db)).ok).toBe(true);
  });
});

describe('anchoring in the service (audit.anchor)', () => {
  it('anchors the head every intervalSeconds once it moved, and once more at stop', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-audit-svc-'));
    try {
      writeFileSync(
        join(dir, 'config.yaml'),
        `store: pglite://./data
http: { host: 127.0.0.1, port: 0 }
auth: { tokens: [{ role: auditor, sha256: "${hashToken('svc-auditor')}" }] }
audit: { anchor: { file: ./anchors.jsonl }, intervalSeconds: 1 }
tenants: [{ id: riverside-clinic, reviewKeys: ${fixtures}keys/riverside-clinic.jwks.json, destinations: [archive] }]
destinations: [{ id: archive, type: file, directory: ./out, mapping: us-core-docref }]
`,
      );
      const config = await loadConfig(join(dir, 'config.yaml'), {});
      expect(config.audit).toEqual({
        anchor: { kind: 'file', path: join(dir, 'anchors.jsonl') },
        intervalSeconds: 1,
      });
      // startAnchoring is what createService runs for audit.anchor (src/service/service.ts).
      const ledger = await Ledger.open('pglite://memory');
      const logged: Record<string, unknown>[] = [];
      const anchoring = startAnchoring(ledger, config, (e) => logged.push(e));
      const anchors = new FileAnchorStore(join(dir, 'anchors.jsonl'));
      const read = () =>
        auditPhiRead(ledger.db, { role: 'auditor', endpoint: 'GET /v1/notes/{tenant}/{noteId}', notes: [] });
      try {
        await read(); // the head moves to 1
        const first = await until(
          async () => (await anchors.read().catch(() => [])).at(-1),
          10_000,
          'an anchor',
        );
        expect(first.seq).toBe(1);
        await new Promise((r) => setTimeout(r, 1500));
        expect((await anchors.read()).length).toBe(1); // head unchanged: nothing more written
        await read();
        await anchoring.stop();
        const all = await anchors.read();
        expect(all.at(-1)!.seq).toBe(2); // written by the next round or by stop()
        expect(await verifyAuditChain(ledger.db, { anchors: all })).toMatchObject({ ok: true, records: 2 });
      } finally {
        await anchoring.stop();
        await ledger.close();
      }
      expect(logged.some((e) => e['event'] === 'audit.anchored')).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('audit: configuration', () => {
  it('refuses an anchor with both or neither target, an S3 anchor without s3:, and unknown keys', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-audit-cfg-'));
    try {
      writeFileSync(join(dir, 'keys.json'), readFileSync(join(fixtures, 'keys/riverside-clinic.jwks.json')));
      const load = (audit: string) => {
        writeFileSync(
          join(dir, 'c.yaml'),
          `store: pglite://./data
audit: ${audit}
tenants: [{ id: t1, reviewKeys: ./keys.json, destinations: [d1] }]
destinations: [{ id: d1, type: file, directory: ./out, mapping: us-core-docref }]
`,
        );
        return loadConfig(join(dir, 'c.yaml'), {}).then(
          (c) => c.audit,
          (e: { code: string; issues: { where: string; message: string }[] }) => e,
        );
      };
      expect(await load('{ anchor: { file: ./a.jsonl } }')).toEqual({
        anchor: { kind: 'file', path: join(dir, 'a.jsonl') },
        intervalSeconds: 300,
      });
      const messages = async (audit: string) =>
        ((await load(audit)) as { issues: { message: string }[] }).issues.map((i) => i.message).join('\n');
      expect(await messages('{ anchor: { file: ./a.jsonl, s3: "s3://b/k" } }')).toMatch(
        /exactly one of file or s3/,
      );
      expect(await messages('{ anchor: {} }')).toMatch(/exactly one of file or s3/);
      expect(await messages('{ anchor: { s3: "s3://bucket/key" } }')).toMatch(
        /needs the top-level s3: block/,
      );
      expect(await messages('{ anchor: { s3: "https://bucket/key" } }')).toMatch(/s3:\/\/<bucket>\/<key>/);
      expect(await messages('{ anchor: { file: ./no/such/dir/a.jsonl } }')).toMatch(/no such directory/);
      expect(await messages('{ intervalSecond: 5 }')).toMatch(/unknown key "intervalSecond"/);
      expect(await messages('{ intervalSeconds: 0 }')).toMatch(/>=\s*1|at least 1|too small/i);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
