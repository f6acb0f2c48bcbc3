/**
 * The ledger, one suite run against both stores: PGlite (a temp data directory, which also exercises the
 * directory lock) and the PostgreSQL on 127.0.0.1:5432 (a fresh database per run, dropped afterwards).
 * Names (notes, destinations) are unique per test, so tests share one database without resets.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScribeError } from '../src/errors.ts';
import { auditHash, GENESIS_HASH, readAudit } from '../src/ledger/audit.ts';
import { type Db, initPgliteInChild, isPgliteCluster, openLedger, type Tx } from '../src/ledger/db.ts';
import { claimDue as claimDueTx, recordAttempt as recordAttemptTx } from '../src/ledger/deliveries.ts';
import { LOCK_FILE } from '../src/ledger/dir-lock.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import { loadMigrations, migrate } from '../src/ledger/migrate.ts';
import { placeRevision } from '../src/ledger/revisions.ts';
import type { AttemptResult } from '../src/ledger/types.ts';
import { resolveQuery } from '../src/trace/trace.ts';
import { PG_BASE, pgAdmin, revisionFixture, sha } from './support/ledger-inputs.ts';

const HOLD_SECONDS = 600;
const T0 = new Date('2030-01-01T00:00:00.000Z');

let unique = 0;
const name = (prefix: string) => `${prefix}-${++unique}-${randomBytes(3).toString('hex')}`;

const input = revisionFixture;

const ok = (outcome: AttemptResult['outcome'], extra: Partial<AttemptResult> = {}): AttemptResult => ({
  outcome,
  startedAt: T0,
  durationMs: 12,
  ...extra,
});

describe.each(['pglite', 'postgres'] as const)('ledger on %s', (kind) => {
  // Store-specific tests are registered only for their store (not skipped on the other: nothing is hidden).
  const only = <T extends typeof it | typeof describe>(store: typeof kind, fn: T): T =>
    (store === kind ? fn : () => undefined) as unknown as T;
  let url: string;
  let dir = '';
  let dbName = '';
  let db: Db;
  let ledger: Ledger;
  let now = T0;
  const open = (d: Db) => new Ledger(d, { holdSeconds: HOLD_SECONDS, clock: () => now });

  beforeAll(async () => {
    if (kind === 'pglite') {
      dir = mkdtempSync(join(tmpdir(), 'sb-ledger-'));
      url = `pglite://${dir}`;
    } else {
      dbName = `sb_test_${randomBytes(6).toString('hex')}`;
      await pgAdmin(`create database ${dbName}`);
      url = `${PG_BASE}/${dbName}`;
    }
    db = await openLedger(url);
    // A new PGlite directory comes migrated (its child process did it); a new PostgreSQL database is migrated here.
    expect((await migrate(db)).applied).toEqual(
      kind === 'pglite' ? [] : loadMigrations().map((m) => m.version),
    );
    ledger = open(db);
  });

  afterAll(async () => {
    await db?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (dbName) await pgAdmin(`drop database if exists ${dbName} with (force)`);
  });

  it('migrations are idempotent and checksummed', async () => {
    const versions = loadMigrations().map((m) => m.version);
    expect(versions.slice(0, 2)).toEqual(['001', '002']);
    expect(await migrate(db)).toEqual({ applied: [], current: versions.at(-1) });
    const rows = await db.query<{ version: string }>('select version from schema_migrations');
    expect(rows.map((r) => r.version)).toEqual(versions);
    const edited = loadMigrations().map((m) => ({ ...m, sha256: sha('edited') }));
    await expect(migrate(db, edited)).rejects.toThrow(/differs from the one applied/);
  });

  it('normalises bigint to number and timestamptz to Date', async () => {
    const [row] = await db.query<{ big: unknown; at: unknown; j: unknown }>(
      `select 9007199254740991::bigint as big, $1::timestamptz as at, $2::jsonb as j`,
      [T0, [{ a: 1 }]],
    );
    expect(row).toEqual({ big: 9007199254740991, at: T0, j: [{ a: 1 }] });
    await expect(db.query('select 9007199254740993::bigint as big')).rejects.toThrow(/beyond 2\^53/);
    const failed = await db.query('select $1::int', ['canary-payload']).catch((e: unknown) => e);
    expect(failed).toMatchObject({ code: '22P02' });
    expect(failed).not.toHaveProperty('params');
  });

  it('acknowledges a duplicate, audited, without new deliveries', async () => {
    now = T0;
    const note = name('dup');
    const first = await ledger.recordRevision(input(note, 1, ['d-a', 'd-b']));
    expect(first.outcome).toBe('accepted');
    const again = await ledger.recordRevision({ ...input(note, 1, ['d-a', 'd-b']), source: 'sqs' });
    expect(again).toMatchObject({ outcome: 'duplicate', state: 'accepted' });
    if (first.outcome !== 'accepted' || again.outcome !== 'duplicate') throw new Error('unreachable');
    expect(again.deliveries).toEqual(first.deliveries);
    expect(first.deliveries.map((d) => d.state)).toEqual(['pending', 'pending']);
    const [count] = await db.query<{ n: number }>('select count(*) as n from deliveries where note_id = $1', [
      note,
    ]);
    expect(count?.n).toBe(2);
    expect(await actions(note)).toEqual(['revision.accepted', 'revision.duplicate-suppressed']);
  });

  it('refuses a conflict, audited, storing nothing else', async () => {
    const note = name('conflict');
    await ledger.recordRevision(input(note, 1, ['d-a']));
    const other = input(note, 1, ['d-a'], { content: 'changed' });
    const r = await ledger.recordRevision(other);
    expect(r).toMatchObject({ outcome: 'conflict', storedSha256: input(note, 1, []).contentSha256 });
    const status = await ledger.revisionStatus('t1', note);
    expect(status?.revisions).toHaveLength(1);
    expect(status?.revisions[0]?.contentSha256).toBe(input(note, 1, []).contentSha256);
    expect(await actions(note)).toEqual(['revision.accepted', 'revision.conflict']);
  });

  it('holds a revision whose predecessor is missing, then releases it in order', async () => {
    now = T0;
    const note = name('wait');
    const dest = name('d');
    const r3 = await ledger.recordRevision(input(note, 3, [dest]));
    const r2 = await ledger.recordRevision(input(note, 2, [dest]));
    expect(r3).toMatchObject({ outcome: 'waiting', deliveries: [{ state: 'blocked' }] });
    expect(r2).toMatchObject({ outcome: 'waiting', deliveries: [{ state: 'blocked' }] });
    const held = await ledger.revisionStatus('t1', note);
    expect(held?.revisions[0]?.holdUntil).toEqual(new Date(T0.getTime() + HOLD_SECONDS * 1000));
    expect(await ledger.claimDue(dest, claim('w1'))).toEqual([]);

    const r1 = await ledger.recordRevision(input(note, 1, [dest]));
    expect(r1).toMatchObject({
      outcome: 'accepted',
      deliveries: [{ state: 'pending' }],
      released: [
        { revision: 2, state: 'accepted' },
        { revision: 3, state: 'accepted' },
      ],
    });
    // Released revisions stay blocked at the destination until their predecessor is delivered there.
    for (const rev of [1, 2, 3]) {
      const [c] = await ledger.claimDue(dest, claim('w1'));
      expect(c).toMatchObject({ revision: rev, claimedFrom: 'pending' });
      expect(await ledger.claimDue(dest, claim('w1'))).toEqual([]);
      await ledger.recordAttempt(c!.id, 'w1', ok('delivered'));
    }
    const status = await ledger.revisionStatus('t1', note);
    expect(status?.revisions.map((r) => [r.state, r.deliveries[0]?.state])).toEqual([
      ['accepted', 'delivered'],
      ['accepted', 'delivered'],
      ['accepted', 'delivered'],
    ]);
    expect(await actions(note)).toContain('revision.released');
  });

  it('dead-letters a revision whose hold ran out, and revives it when re-sent', async () => {
    now = T0;
    const note = name('expire');
    await ledger.recordRevision(input(note, 2, ['d-x']));
    const late = new Date(T0.getTime() + HOLD_SECONDS * 1000);
    expect(
      (await ledger.expireWaiting(new Date(late.getTime() - 1))).filter((e) => e.noteId === note),
    ).toEqual([]);
    const expired = (await ledger.expireWaiting(late)).filter((e) => e.noteId === note);
    expect(expired).toMatchObject([{ revision: 2, reason: 'HOLD_EXPIRED' }]);
    expect((await ledger.revisionStatus('t1', note))?.revisions[0]?.state).toBe('dead-lettered');

    now = late;
    await ledger.recordRevision(input(note, 1, ['d-x']));
    expect((await ledger.revisionStatus('t1', note))?.revisions[1]?.state).toBe('dead-lettered');
    const redrive = await ledger.recordRevision(input(note, 2, ['d-x']));
    expect(redrive).toMatchObject({ outcome: 'accepted', revived: true, deliveries: [{ state: 'blocked' }] });
    expect(await actions(note)).toEqual([
      'revision.waiting',
      'revision.dead-lettered',
      'revision.accepted',
      'revision.revived',
    ]);
  });

  it('accepts nothing after entered-in-error', async () => {
    const note = name('eie');
    await ledger.recordRevision(input(note, 1, ['d-a']));
    await ledger.recordRevision(input(note, 2, ['d-a'], { status: 'entered-in-error' }));
    const r = await ledger.recordRevision(input(note, 3, ['d-a']));
    expect(r).toMatchObject({ outcome: 'rejected', code: 'LIFECYCLE_INVALID' });
    expect((await ledger.revisionStatus('t1', note))?.revisions).toHaveLength(2);
    expect((await actions(note)).at(-1)).toBe('revision.rejected');

    // Arriving early does not help: a later revision stored before the retraction is dead-lettered by it.
    const early = name('eie-early');
    await ledger.recordRevision(input(early, 3, ['d-a']));
    const retraction = await ledger.recordRevision(input(early, 2, ['d-a'], { status: 'entered-in-error' }));
    expect(retraction).toMatchObject({
      outcome: 'waiting',
      released: [{ revision: 3, state: 'dead-lettered' }],
    });
    const r1 = await ledger.recordRevision(input(early, 1, ['d-a']));
    expect(r1).toMatchObject({ outcome: 'accepted', released: [{ revision: 2, state: 'accepted' }] });
    const states = (await ledger.revisionStatus('t1', early))?.revisions.map((v) => [v.state, v.stateReason]);
    expect(states).toEqual([
      ['accepted', null],
      ['accepted', null],
      ['dead-lettered', 'LIFECYCLE_INVALID'],
    ]);
    // The trace of the note (no revision asked) matches the retraction, not the refused revision 3.
    expect(await resolveQuery(ledger.db, { kind: 'note', tenant: 't1', noteId: early })).toMatchObject({
      match: { revision: 2 },
    });
  });

  it('keeps the next revision blocked after a rejected or failed predecessor', async () => {
    for (const outcome of ['rejected', 'failed'] as const) {
      const note = name(outcome);
      const dest = name('d');
      await ledger.recordRevision(input(note, 1, [dest]));
      const [c] = await ledger.claimDue(dest, claim('w1'));
      // revision 2 arrives while revision 1 is being sent: blocked behind it
      expect(await ledger.recordRevision(input(note, 2, [dest]))).toMatchObject({
        deliveries: [{ state: 'blocked' }],
      });
      expect(await ledger.recordAttempt(c!.id, 'w1', ok(outcome, { errorCode: 'X' }))).toMatchObject({
        state: outcome,
        unblocked: [],
      });
      expect(await ledger.claimDue(dest, claim('w1'))).toEqual([]);
      // and one arriving after the rejection is blocked too
      expect(await ledger.recordRevision(input(note, 3, [dest]))).toMatchObject({
        deliveries: [{ state: 'blocked' }],
      });
    }
  });

  it('records a revision still to be rendered as waiting, never releases it unrendered, and places it once rendered', async () => {
    const note = name('pending');
    const dest = name('d');
    const r3 = input(note, 3, [dest], { status: 'entered-in-error' });
    const placed = await ledger.recordRevision({ ...r3, renderings: [], renderPending: true });
    expect(placed).toMatchObject({ outcome: 'waiting', deliveries: [] });
    expect(await ledger.pendingRenders()).not.toContainEqual(expect.objectContaining({ noteId: note }));
    await ledger.recordRevision(input(note, 1, [dest]));
    await ledger.recordRevision(input(note, 2, [dest]));
    const due = (await ledger.pendingRenders()).filter((p) => p.noteId === note);
    expect(due.map((p) => p.revision)).toEqual([3]);
    // Revision 2 is accepted but its delivery not made: the retraction's delivery is blocked behind it.
    const attached = await ledger.attachRenderings(due[0]!.revisionId, r3.renderings);
    expect(attached).toMatchObject({
      outcome: 'accepted',
      deliveries: [{ destination: dest, state: 'blocked' }],
    });
    expect(await ledger.attachRenderings(due[0]!.revisionId, r3.renderings)).toBeNull(); // once
    // Refusing a render that is no longer pending does nothing.
    expect(await ledger.refusePendingRender(due[0]!.revisionId, 'OUTPUT_INVALID')).toBe(false);
    // One that cannot be rendered is dead-lettered with the code.
    const other = name('pending-refused');
    const p2 = await ledger.recordRevision({
      ...input(other, 2, [dest], { status: 'entered-in-error' }),
      renderings: [],
      renderPending: true,
    });
    expect(
      await ledger.refusePendingRender((p2 as { revisionId: number }).revisionId, 'OUTPUT_INVALID'),
    ).toBe(true);
    const st = await ledger.revisionStatus('t1', other);
    expect(st?.revisions.map((r) => [r.state, r.stateReason])).toEqual([['dead-lettered', 'OUTPUT_INVALID']]);
  });

  it('lists dead letters of the tenants a token is limited to, and of every tenant without a limit', async () => {
    const dest = name('dl');
    for (const tenant of ['tenant-a', 'tenant-b']) {
      await ledger.recordRevision(input(name(tenant), 1, [dest], { tenant }));
      const [c] = await ledger.claimDue(dest, claim('w1'));
      await ledger.recordAttempt(c!.id, 'w1', ok('rejected', { errorCode: 'X' }));
    }
    const of = async (tenants?: string[]) =>
      (await ledger.deadLetters({ destination: dest, ...(tenants ? { tenants } : {}) })).deliveries
        .map((d) => d.tenant)
        .sort();
    expect(await of(['tenant-a'])).toEqual(['tenant-a']);
    expect(await of(['tenant-b', 'tenant-a'])).toEqual(['tenant-a', 'tenant-b']);
    expect(await of([])).toEqual([]);
    expect(await of()).toEqual(['tenant-a', 'tenant-b']);
  });

  only('postgres', it)(
    'a database that stops accepting connections answers LEDGER_UNAVAILABLE (retry), not a defect',
    async () => {
      const name2 = `sb_test_${randomBytes(6).toString('hex')}`;
      await pgAdmin(`create database ${name2}`);
      const d = await openLedger(`${PG_BASE}/${name2}`);
      try {
        await d.query('select 1');
        await pgAdmin(`alter database ${name2} allow_connections false`);
        await pgAdmin(`select pg_terminate_backend(pid) from pg_stat_activity where datname = '${name2}'`);
        const err = await d.query('select 1').then(
          () => undefined,
          (e: unknown) => e as ScribeError,
        );
        // The pool may first see its terminated connection, then the refusal on reconnecting: both are "down".
        const again = err ?? (await d.query('select 1').catch((e: unknown) => e as ScribeError));
        const e2 = await d.query('select 1').catch((e: unknown) => e as ScribeError);
        for (const e of [again, e2]) {
          expect(e).toBeInstanceOf(ScribeError);
          expect([(e as ScribeError).code, (e as ScribeError).disposition]).toEqual([
            'LEDGER_UNAVAILABLE',
            'retry',
          ]);
        }
      } finally {
        await d.close();
        await pgAdmin(`drop database if exists ${name2} with (force)`);
      }
    },
  );

  it('claims each revision of a note only after the previous one is delivered there', async () => {
    const note = name('order');
    const [fast, slow] = [name('fast'), name('slow')];
    await ledger.recordRevision(input(note, 1, [fast, slow]));
    await ledger.recordRevision(input(note, 2, [fast, slow]));
    const [f1] = await ledger.claimDue(fast, claim('w1'));
    await ledger.recordAttempt(f1!.id, 'w1', ok('delivered'));
    // the fast destination moves on; the slow one has not delivered revision 1 yet
    expect((await ledger.claimDue(fast, claim('w1'))).map((c) => c.revision)).toEqual([2]);
    const [s1] = await ledger.claimDue(slow, claim('w1'));
    expect(s1?.revision).toBe(1);
    await ledger.recordAttempt(s1!.id, 'w1', ok('ambiguous'));
    // ambiguous is not terminal: revision 1 comes back first (for read-back), revision 2 still waits
    const again = await ledger.claimDue(slow, claim('w1'));
    expect(again.map((c) => [c.revision, c.claimedFrom])).toEqual([[1, 'ambiguous']]);
    const unblocked = await ledger.recordAttempt(again[0]!.id, 'w1', ok('delivered'));
    expect(unblocked.unblocked).toHaveLength(1);
    expect((await ledger.claimDue(slow, claim('w1'))).map((c) => c.revision)).toEqual([2]);
  });

  it('retries at nextAttemptAt and never before', async () => {
    now = T0;
    const dest = name('d');
    await ledger.recordRevision(input(name('retry'), 1, [dest]));
    const [c] = await ledger.claimDue(dest, claim('w1'));
    const later = new Date(T0.getTime() + 30_000);
    await ledger.recordAttempt(c!.id, 'w1', ok('retry', { httpStatus: 503, nextAttemptAt: later }));
    expect(await ledger.claimDue(dest, claim('w1', { now: new Date(later.getTime() - 1) }))).toEqual([]);
    const [again] = await ledger.claimDue(dest, claim('w1', { now: later }));
    expect(again).toMatchObject({ id: c!.id, attempts: 1 });
    const attempts = await db.query<{ outcome: string; http_status: number }>(
      'select outcome, http_status from delivery_attempts where delivery_id = $1',
      [c!.id],
    );
    expect(attempts).toEqual([{ outcome: 'retry', http_status: 503 }]);
  });

  it('never hands the same delivery to two concurrent claimers', async () => {
    const dest = name('d');
    for (let i = 0; i < 12; i++) await ledger.recordRevision(input(name('skip'), 1, [dest]));
    const other = kind === 'postgres' ? open(await openLedger(url)) : ledger;
    try {
      const got: number[] = [];
      for (let round = 0; round < 6; round++) {
        const [a, b] = await Promise.all([
          ledger.claimDue(dest, claim('A', { limit: 3 })),
          other.claimDue(dest, claim('B', { limit: 3 })),
        ]);
        got.push(...a.map((c) => c.id), ...b.map((c) => c.id));
      }
      expect(got).toHaveLength(12);
      expect(new Set(got).size).toBe(12);
    } finally {
      if (other !== ledger) await other.close();
    }
  });

  only('postgres', it)('skips rows another transaction holds instead of waiting', async () => {
    const dest = name('d');
    const notes = [name('held'), name('free')];
    for (const n of notes) await ledger.recordRevision(input(n, 1, [dest]));
    const holder = await openLedger(url);
    let release = () => {};
    const released = new Promise<void>((r) => {
      release = r;
    });
    let locked = () => {};
    const isLocked = new Promise<void>((r) => {
      locked = r;
    });
    const holding = holder.transaction(async (tx) => {
      await tx.query('select id from deliveries where note_id = $1 for update', [notes[0]]);
      locked();
      await released;
    });
    try {
      await isLocked;
      const claimed = await ledger.claimDue(dest, claim('w1'));
      expect(claimed.map((c) => c.noteId)).toEqual([notes[1]]);
    } finally {
      release();
      await holding;
      await holder.close();
    }
  });

  it('keeps a destination within its concurrency limit', async () => {
    now = T0;
    const dest = name('d');
    for (let i = 0; i < 6; i++) await ledger.recordRevision(input(name('conc'), 1, [dest]));
    const other = kind === 'postgres' ? open(await openLedger(url)) : ledger;
    try {
      const [a, b] = await Promise.all([
        ledger.claimDue(dest, claim('A', { concurrency: 3 })),
        other.claimDue(dest, claim('B', { concurrency: 3 })),
      ]);
      expect(a.length + b.length).toBe(3);
      expect(await ledger.claimDue(dest, claim('C', { concurrency: 3 }))).toEqual([]);
      const first = [...a, ...b][0]!;
      await ledger.recordAttempt(first.id, first.leaseOwner, ok('delivered'));
      expect(await ledger.claimDue(dest, claim('C', { concurrency: 3 }))).toHaveLength(1);
      // an expired lease no longer takes a slot
      const afterLease = new Date(T0.getTime() + 60_001);
      expect(await ledger.claimDue(dest, claim('C', { concurrency: 3, now: afterLease }))).toHaveLength(2);
    } finally {
      if (other !== ledger) await other.close();
    }
  });

  only('postgres', it)('counts a concurrent claimer’s uncommitted leases against the limit', async () => {
    now = T0;
    const dest = name('d');
    for (let i = 0; i < 5; i++) await ledger.recordRevision(input(name('conc2'), 1, [dest]));
    const holder = await openLedger(url);
    let release = () => {};
    const released = new Promise<void>((r) => {
      release = r;
    });
    let claimed = (_n: number) => {};
    const firstClaimed = new Promise<number>((r) => {
      claimed = r;
    });
    // claimer A has taken 2 of 3 slots but not committed yet
    const a = holder.transaction(async (tx) => {
      const rows = await claimDueTx(tx, dest, {
        limit: 2,
        owner: 'A',
        leaseMs: 60_000,
        concurrency: 3,
        now,
      });
      claimed(rows.length);
      await released;
    });
    try {
      expect(await firstClaimed).toBe(2);
      const b = ledger.claimDue(dest, claim('B', { concurrency: 3 }));
      await new Promise((r) => setTimeout(r, 150));
      release();
      expect(await b).toHaveLength(1);
    } finally {
      release();
      await a;
      await holder.close();
    }
  });

  only('postgres', describe)('races between two transactions', () => {
    it('revision N-1 and N arriving together: N is accepted, not left waiting', async () => {
      const note = name('race-rev');
      const dest = name('d');
      const r2 = await whileHeld(
        (tx) => placeRevision(tx, input(note, 1, [dest]), { actor: 'test', holdSeconds: HOLD_SECONDS, now }),
        () => ledger.recordRevision(input(note, 2, [dest])),
      );
      expect(r2).toMatchObject({ outcome: 'accepted', deliveries: [{ state: 'blocked' }] });
      // the same with the note already known (the note row's lock, not the unique index, orders them)
      const r3 = await whileHeld(
        (tx) => placeRevision(tx, input(note, 3, [dest]), { actor: 'test', holdSeconds: HOLD_SECONDS, now }),
        () => ledger.recordRevision(input(note, 4, [dest])),
      );
      expect(r3).toMatchObject({ outcome: 'accepted' });
    });

    it('revision N+1 recorded while N is being marked delivered: N+1 is not left blocked', async () => {
      const note = name('race-done');
      const dest = name('d');
      await ledger.recordRevision(input(note, 1, [dest]));
      const [c] = await ledger.claimDue(dest, claim('w1'));
      const r2 = await whileHeld(
        (tx) => recordAttemptTx(tx, c!.id, 'w1', ok('delivered'), now),
        () => ledger.recordRevision(input(note, 2, [dest])),
      );
      expect(r2).toMatchObject({ outcome: 'accepted', deliveries: [{ state: 'pending' }] });
    });

    it('N marked delivered while N+1 is being recorded: N+1 is released', async () => {
      const note = name('race-next');
      const dest = name('d');
      await ledger.recordRevision(input(note, 1, [dest]));
      const [c] = await ledger.claimDue(dest, claim('w1'));
      const done = await whileHeld(
        (tx) => placeRevision(tx, input(note, 2, [dest]), { actor: 'test', holdSeconds: HOLD_SECONDS, now }),
        () => ledger.recordAttempt(c!.id, 'w1', ok('delivered')),
      );
      expect(done.unblocked).toHaveLength(1);
      expect((await ledger.claimDue(dest, claim('w1'))).map((x) => x.revision)).toEqual([2]);
    });

    /**
     * Runs `first` in a transaction on another connection and keeps it open while `second` starts; commits
     * after 150 ms. Returns what `second` returned: the outcome when the two really overlap.
     */
    async function whileHeld<T>(first: (tx: Tx) => Promise<unknown>, second: () => Promise<T>): Promise<T> {
      const holder = await openLedger(url);
      let release = () => {};
      const released = new Promise<void>((r) => {
        release = r;
      });
      let ran = () => {};
      const firstRan = new Promise<void>((r) => {
        ran = r;
      });
      const held = holder.transaction(async (tx) => {
        await first(tx);
        ran();
        await released;
      });
      try {
        await firstRan;
        const out = second();
        await new Promise((r) => setTimeout(r, 150));
        release();
        await held;
        return await out;
      } finally {
        release();
        await held.catch(() => {});
        await holder.close();
      }
    }
  });

  it('records a batch of revisions and of attempts, each item on its own merits', async () => {
    now = T0;
    const dest = name('d');
    const [a, b] = [name('batch'), name('batch')];
    const results = await ledger.recordRevisions([
      input(b, 2, [dest]),
      input(a, 1, [dest]),
      input(a, 1, [dest]),
      input(b, 1, [dest]),
    ]);
    expect(results.map((r) => r.outcome)).toEqual(['accepted', 'accepted', 'duplicate', 'accepted']);
    // placed in key order: revision 2 finds revision 1 already there, so it never waits
    expect(results[0]).toMatchObject({ released: [], deliveries: [{ state: 'blocked' }] });

    const claimed = await ledger.claimDue(dest, claim('w1'));
    expect(claimed.map((c) => [c.noteId, c.revision])).toEqual([
      [a, 1],
      [b, 1],
    ]);
    const recorded = await ledger.recordAttempts([
      { deliveryId: claimed[1]!.id, owner: 'w1', result: ok('delivered') },
      { deliveryId: claimed[0]!.id, owner: 'someone-else', result: ok('delivered') },
    ]);
    expect(recorded[0]).toMatchObject({
      ok: true,
      recorded: { state: 'delivered', unblocked: [expect.any(Number)] },
    });
    expect(recorded[1]).toMatchObject({
      ok: false,
      error: { message: expect.stringMatching(/no longer leased/) },
    });
    expect((await ledger.claimDue(dest, claim('w1'))).map((c) => [c.noteId, c.revision])).toEqual([[b, 2]]);
    expect(await actions(a)).toEqual(['revision.accepted', 'revision.duplicate-suppressed']);
  });

  it('records a round and claims the next one in the same transaction, within the concurrency limit', async () => {
    now = T0;
    const dest = name('d');
    const [a, b] = [name('round'), name('round')];
    await ledger.recordRevisions([input(a, 1, [dest]), input(b, 1, [dest])]);
    const [first] = await ledger.claimDue(dest, claim('w1', { limit: 1, concurrency: 1 }));
    // the only slot is taken: nothing more can be claimed until its attempt is recorded
    expect(await ledger.claimDue(dest, claim('w2', { limit: 1, concurrency: 1 }))).toEqual([]);
    const round = await ledger.recordAttemptsAndClaim(
      [{ deliveryId: first!.id, owner: 'w1', result: ok('delivered') }],
      dest,
      claim('w1', { limit: 1, concurrency: 1 }),
    );
    expect(round.recorded).toMatchObject([{ ok: true, recorded: { state: 'delivered' } }]);
    // the slot the recorded attempt freed is seen by the claim in the same transaction
    expect(round.claimed.map((c) => [c.noteId, c.leaseOwner])).toEqual([[first!.noteId === a ? b : a, 'w1']]);
    const again = await ledger.recordAttemptsAndClaim(
      [
        { deliveryId: round.claimed[0]!.id, owner: 'w1', result: ok('delivered') },
        { deliveryId: first!.id, owner: 'w1', result: ok('delivered') },
      ],
      dest,
      claim('w1', { limit: 1, concurrency: 1 }),
    );
    expect(again.recorded.map((r) => r.ok)).toEqual([true, false]);
    expect(again.claimed).toEqual([]);
    expect(await actions(a)).toEqual(['revision.accepted', 'delivery.delivered']);
  });

  it('shares a saturated destination: a round claims only a fair share while another worker waits', async () => {
    now = T0;
    const dest = name('d');
    for (let i = 0; i < 12; i++) await ledger.recordRevision(input(name('fair'), 1, [dest]));
    // alone, a worker fills every slot
    const first = await ledger.claimDue(dest, claim('w1', { limit: 4, concurrency: 4 }));
    expect(first).toHaveLength(4);
    // w2 finds the slots full, and is now seen waiting
    expect(await ledger.claimDue(dest, claim('w2', { limit: 4, concurrency: 4 }))).toEqual([]);
    // w1 records its round and claims the next in one transaction: half the slots, not all it just freed
    const round = await ledger.recordAttemptsAndClaim(
      first.map((c) => ({ deliveryId: c.id, owner: 'w1', result: ok('delivered') })),
      dest,
      claim('w1', { limit: 4, concurrency: 4 }),
    );
    expect(round.claimed).toHaveLength(2);
    expect(await ledger.claimDue(dest, claim('w2', { limit: 4, concurrency: 4 }))).toHaveLength(2);
    // once w2 has not claimed for a while (and holds nothing), w1 may fill the limit again
    const later = new Date(T0.getTime() + 120_000);
    expect(await ledger.claimDue(dest, claim('w1', { limit: 4, concurrency: 4, now: later }))).toHaveLength(
      4,
    );
  });

  it('accepts a result only from the lease holder', async () => {
    now = T0;
    const dest = name('d');
    await ledger.recordRevision(input(name('lease'), 1, [dest]));
    const [c] = await ledger.claimDue(dest, claim('A'));
    await expect(ledger.recordAttempt(c!.id, 'B', ok('delivered'))).rejects.toThrow(/no longer leased/);
    await ledger.recordAttempt(c!.id, 'A', ok('delivered'));
    await expect(ledger.recordAttempt(c!.id, 'A', ok('delivered'))).rejects.toThrow(/no longer leased/);
  });

  it('turns an expired lease into ambiguous, and refuses the old owner once reclaimed', async () => {
    now = T0;
    const dest = name('d');
    const note = name('expired');
    await ledger.recordRevision(input(note, 1, [dest]));
    const [c] = await ledger.claimDue(dest, claim('A', { leaseMs: 1000 }));
    const mine = (xs: { noteId: string }[]) => xs.filter((x) => x.noteId === note);
    expect(mine(await ledger.releaseExpiredLeases(new Date(T0.getTime() + 999)))).toEqual([]);
    const t = new Date(T0.getTime() + 1000);
    expect(mine(await ledger.releaseExpiredLeases(t))).toMatchObject([{ deliveryId: c!.id, owner: 'A' }]);
    const status = await ledger.revisionStatus('t1', note);
    expect(status?.revisions[0]?.deliveries[0]).toMatchObject({
      state: 'ambiguous',
      lastErrorCode: 'LEASE_EXPIRED',
    });
    expect((await actions(note)).at(-1)).toBe('delivery.lease-expired');

    const [b] = await ledger.claimDue(dest, claim('B', { now: t }));
    expect(b).toMatchObject({ id: c!.id, claimedFrom: 'ambiguous' });
    await expect(ledger.recordAttempt(c!.id, 'A', ok('delivered'))).rejects.toThrow(/no longer leased/);
    await ledger.recordAttempt(c!.id, 'B', ok('delivered', { receipt: { id: 'doc-1', versionId: '1' } }));
    const done = await ledger.revisionStatus('t1', note);
    expect(done?.revisions[0]?.deliveries[0]).toMatchObject({ state: 'delivered', receipt: { id: 'doc-1' } });
  });

  it('reports backlog and the age of the oldest open delivery', async () => {
    const early = new Date('2020-01-01T00:00:00.000Z');
    now = early;
    const dest = name('d');
    const note = name('backlog');
    await ledger.recordRevision(input(note, 1, [dest]));
    await ledger.recordRevision(input(note, 2, [dest]));
    await ledger.recordRevision(input(name('backlog'), 2, [dest]));
    const b = await ledger.backlog();
    expect(b.byDestination[dest]).toEqual({ pending: 1, blocked: 2 });
    expect(b.waitingRevisions).toBeGreaterThanOrEqual(1);
    // A revision dead-lettered by a retraction that arrived after it: its blocked delivery is no backlog.
    const retracted = name('backlog-eie');
    await ledger.recordRevision(input(retracted, 3, [dest]));
    await ledger.recordRevision(input(retracted, 2, [dest], { status: 'entered-in-error' }));
    expect((await ledger.backlog()).byDestination[dest]).toEqual({ pending: 1, blocked: 3 });
    expect(b.byState.pending).toBeGreaterThanOrEqual(1);
    expect(await ledger.oldestPendingAge(new Date(early.getTime() + 5000))).toBe(5000);
    now = T0;
  });

  it('appends audit records from concurrent writers without forking the chain', async () => {
    const other = kind === 'postgres' ? open(await openLedger(url)) : ledger;
    try {
      const notes = Array.from({ length: 16 }, () => name('audit'));
      await Promise.all(
        notes.map((n, i) => (i % 2 ? other : ledger).recordRevision(input(n, 1, ['d-audit']))),
      );
      const rows = await db.query<{ n: number }>(
        `select count(*) as n from audit_log
         where note_id = any(select jsonb_array_elements_text($1::jsonb)) and action like 'revision.%'`,
        [notes],
      );
      expect(rows[0]?.n).toBe(16);
    } finally {
      if (other !== ledger) await other.close();
    }
  });

  it('chains every audit record to the previous one', async () => {
    const records = await readAudit(db, 1, 100_000);
    expect(records.length).toBeGreaterThan(20);
    let prev = GENESIS_HASH;
    records.forEach((r, i) => {
      expect(r.seq).toBe(i + 1);
      expect(r.prevHash).toBe(prev);
      expect(auditHash(prev, r)).toBe(r.hash);
      prev = r.hash;
    });
    const [head] = await db.query<{ last_seq: number; last_hash: string }>('select * from audit_chain_head');
    expect(head).toMatchObject({ last_seq: records.length, last_hash: prev });
    await expect(db.query(`update audit_log set actor = 'x' where seq = 1`)).rejects.toThrow(/append-only/);
    await expect(db.query('delete from audit_log')).rejects.toThrow(/append-only/);
  });

  only('postgres', it)('migrates once when several processes start together', async () => {
    const fresh = `sb_test_${randomBytes(6).toString('hex')}`;
    await pgAdmin(`create database ${fresh}`);
    const dbs = await Promise.all([1, 2, 3, 4].map(() => openLedger(`${PG_BASE}/${fresh}`)));
    try {
      const results = await Promise.all(dbs.map((d) => migrate(d)));
      expect(results.map((r) => r.applied.length).sort()).toEqual([0, 0, 0, loadMigrations().length]);
    } finally {
      await Promise.all(dbs.map((d) => d.close()));
      await pgAdmin(`drop database if exists ${fresh} with (force)`);
    }
  });

  it('refuses store URLs it cannot open', async () => {
    await expect(openLedger('pglite://relative/dir')).rejects.toThrow(/pglite:\/\/memory/);
    await expect(openLedger('mysql://x@y/z')).rejects.toThrow(/not one scribe-bridge can open/);
  });

  it("opens PGlite with its small buffer cache, keeping PGlite's own start parameters", async () => {
    const mem = await openLedger('pglite://memory');
    try {
      const [row] = await mem.query<{ shared_buffers: string; search_path: string }>(
        "select current_setting('shared_buffers') as shared_buffers, current_setting('search_path') as search_path",
      );
      expect(row).toEqual({ shared_buffers: '16MB', search_path: 'public' });
    } finally {
      await mem.close();
    }
  });

  only('postgres', it)('reports an unreachable PostgreSQL as retryable', async () => {
    const down = await openLedger('postgres://postgres:secret@127.0.0.1:1/nothing');
    try {
      const err = await down.query('select 1').then(
        () => undefined,
        (e: unknown) => e as ScribeError,
      );
      expect(err).toBeInstanceOf(ScribeError);
      expect(err?.disposition).toBe('retry');
      expect(err?.message).not.toContain('secret');
    } finally {
      await down.close();
    }
  });

  only('pglite', it)(
    'creates and migrates a new data directory in a child process, and a failed child leaves it untouched',
    async () => {
      const fresh = mkdtempSync(join(tmpdir(), 'sb-pglite-new-'));
      const other = mkdtempSync(join(tmpdir(), 'sb-pglite-new-'));
      try {
        expect(isPgliteCluster(fresh)).toBe(false);
        expect(await initPgliteInChild(fresh)).toBe(true);
        expect(isPgliteCluster(fresh)).toBe(true);
        // The child applied every migration: opening the directory here finds nothing left to do.
        const opened = await openLedger(`pglite://${fresh}`);
        try {
          expect(await migrate(opened)).toEqual({ applied: [], current: loadMigrations().at(-1)!.version });
        } finally {
          await opened.close();
        }
        // A child that cannot start reports false and writes nothing; openLedger then still opens the directory.
        expect(await initPgliteInChild(other, { execPath: join(other, 'no-such-node') })).toBe(false);
        expect(isPgliteCluster(other)).toBe(false);
        const second = await openLedger(`pglite://${other}`);
        try {
          expect((await migrate(second)).applied).toEqual([]);
        } finally {
          await second.close();
        }
      } finally {
        rmSync(fresh, { recursive: true, force: true });
        rmSync(other, { recursive: true, force: true });
      }
    },
    60_000,
  );

  only('pglite', it)('locks the data directory against a second open', async () => {
    const err = await openLedger(url).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toContain(`process ${process.pid}`);
    expect(err?.message).toContain(dir);

    await db.close();
    const lock = join(dir, LOCK_FILE);
    // a live foreign holder (pid 1 always exists) is refused, naming it
    writeFileSync(lock, JSON.stringify({ pid: 1, hostname: hostname(), startedAt: '' }));
    await expect(openLedger(url)).rejects.toThrow(/in use by process 1\b/);
    // a dead holder's lock is taken over
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(lock, JSON.stringify({ pid: dead, hostname: hostname(), startedAt: '' }));
    db = await openLedger(url);
    ledger = open(db);
    expect(await ledger.revisionStatus('t1', 'nothing')).toBeNull();
  });

  function claim(
    owner: string,
    o: { limit?: number; concurrency?: number; leaseMs?: number; now?: Date } = {},
  ) {
    return { limit: o.limit ?? 10, owner, leaseMs: o.leaseMs ?? 60_000, now: o.now ?? now, ...o };
  }

  async function actions(noteId: string): Promise<string[]> {
    const rows = await db.query<{ action: string }>(
      "select action from audit_log where note_id = $1 and action not like 'rendering.%' order by seq",
      [noteId],
    );
    return rows.map((r) => r.action);
  }
});
