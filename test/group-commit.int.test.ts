/**
 * Group commit at intake: concurrent ingests share one ledger transaction, each caller is answered only after
 * that transaction committed and only with its own outcome, a batch the database refuses is retried item by
 * item (one bad item fails only its caller), and duplicates and conflicts are still detected when both
 * messages of one note sit in the same batch. Real ledger (PGlite), real verification and rendering.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JsonValue } from '../src/contract/json.ts';
import { Ledger } from '../src/ledger/ledger.ts';
import type { RecordResult, RevisionInput } from '../src/ledger/types.ts';
import { MappingRegistry } from '../src/map/registry.ts';
import { GroupCommit } from '../src/service/group-commit.ts';
import { Intake } from '../src/service/intake.ts';
import type { Conformance } from '../src/validate/conformance.ts';
import { fileDropConfig, queueableFixture } from './support/notes.ts';
import { testConformance } from './support/profiles.ts';

describe('GroupCommit', () => {
  it('batches callers that arrive while a commit runs, and answers each only after its commit', async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const committed = new Set<number>();
    const gc = new GroupCommit<number, string>({
      commitOne: async (n) => {
        batches.push([n]);
        await gate;
        committed.add(n);
        return `one:${n}`;
      },
      commitBatch: async (ns) => {
        batches.push([...ns]);
        await new Promise((r) => setTimeout(r, 20));
        for (const n of ns) committed.add(n);
        return ns.map((n) => `batch:${n}`);
      },
    });
    const answered: number[] = [];
    const first = gc.submit(1).then((r) => {
      expect(committed.has(1)).toBe(true);
      answered.push(1);
      return r;
    });
    await new Promise((r) => setImmediate(r));
    const rest = [2, 3, 4].map((n) =>
      gc.submit(n).then((r) => {
        expect(committed.has(n)).toBe(true);
        answered.push(n);
        return r;
      }),
    );
    await new Promise((r) => setTimeout(r, 30));
    expect(answered).toEqual([]); // the first commit is still running: nobody is answered early
    release();
    expect(await first).toBe('one:1');
    expect(await Promise.all(rest)).toEqual(['batch:2', 'batch:3', 'batch:4']);
    expect(batches).toEqual([[1], [2, 3, 4]]);
  });

  it('retries a failed batch item by item: only the bad item fails', async () => {
    const gc = new GroupCommit<number, number>({
      commitOne: async (n) => {
        if (n === 13) throw new Error('bad item');
        return n * 10;
      },
      commitBatch: async () => {
        throw new Error('the transaction was rolled back');
      },
    });
    const out = await Promise.allSettled([12, 13, 14].map((n) => gc.submit(n)));
    // Submitted in one turn, the three share a batch; it fails as a whole and each is retried on its own.
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(out.filter((o) => o.status === 'fulfilled').map((o) => o.value)).toEqual([120, 140]);
  });
});

describe('Intake group commit (PGlite)', () => {
  let dir: string;
  let ledger: Ledger;
  let conformance: Conformance;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-group-commit-'));
    conformance = await testConformance();
  }, 120_000);

  afterAll(async () => {
    await ledger?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('detects a duplicate and a conflict of one note within one batch, and answers each caller its own outcome', async () => {
    const config = await fileDropConfig(dir);
    ledger = await Ledger.open('pglite://memory');
    const noteId = (id: string) => (e: { [k: string]: JsonValue }) => {
      e['noteId'] = id;
    };
    const changed = (e: { [k: string]: JsonValue }) => {
      e['noteId'] = 'gc-same';
      const s = (e['note'] as { sections: { sentences: { text: string }[] }[] }).sections[0]!.sentences[0]!;
      s.text = `${s.text} (amended wording)`;
    };
    const same = await queueableFixture('girpp-anxiety.json', noteId('gc-same'));
    const bodies = [
      await queueableFixture('girpp-anxiety.json', noteId('gc-a')),
      same,
      same,
      await queueableFixture('girpp-anxiety.json', changed),
      await queueableFixture('girpp-anxiety.json', noteId('gc-b')),
    ];

    // The first commit (alone or a batch) is held until every caller has rendered, so the others queue into one
    // batch behind it.
    let rendered = 0;
    let allRendered!: () => void;
    const everyoneRendered = new Promise<void>((r) => {
      allRendered = r;
    });
    const check = conformance.check.bind(conformance);
    conformance.check = ((r: Parameters<Conformance['check']>[0]) => {
      const out = check(r);
      if (++rendered === bodies.length) allRendered();
      return out;
    }) as Conformance['check'];
    const one = ledger.recordRevision.bind(ledger);
    const batch = ledger.recordRevisions.bind(ledger);
    const batches: string[][] = [];
    ledger.recordRevision = async (input: RevisionInput) => {
      batches.push([input.noteId]);
      await everyoneRendered;
      await new Promise((r) => setImmediate(r));
      return one(input);
    };
    ledger.recordRevisions = async (inputs: readonly RevisionInput[]) => {
      batches.push(inputs.map((i) => i.noteId));
      await everyoneRendered;
      await new Promise((r) => setImmediate(r));
      return batch(inputs);
    };

    // Every caller verifies at once (the intake's own limit would let the batch go before the last one rendered).
    const intake = new Intake({
      config,
      ledger,
      mappings: new MappingRegistry(),
      conformance,
      verifyingAtOnce: bodies.length,
    });
    const results: RecordResult[] = await Promise.all(
      bodies.map((b) => intake.ingest(new TextEncoder().encode(b), 'sqs')),
    );
    // The held first commit took one or two callers and the rest shared the next: at least two messages of
    // gc-same were placed in the same batch.
    expect(batches.flat()).toHaveLength(bodies.length);
    expect(batches).toHaveLength(2);
    expect(Math.max(...batches.map((b) => b.filter((id) => id === 'gc-same').length))).toBeGreaterThanOrEqual(
      2,
    );

    expect(results[0]!.outcome).toBe('accepted');
    expect(results[4]!.outcome).toBe('accepted');
    // gc-same: whichever version was placed first is accepted; the same bytes again are a duplicate of it,
    // the other content a conflict. One revision is stored, with the accepted content.
    const trio = [results[1]!.outcome, results[2]!.outcome, results[3]!.outcome];
    if (results[3]!.outcome === 'accepted') expect(trio).toEqual(['conflict', 'conflict', 'accepted']);
    else expect([...trio].sort()).toEqual(['accepted', 'conflict', 'duplicate']);
    const status = await ledger.revisionStatus('riverside-clinic', 'gc-same');
    expect(status!.revisions).toHaveLength(1);
    const audit = await ledger.db.query<{ action: string }>(
      `select action from audit_log where note_id = 'gc-same' and action like 'revision.%' order by seq`,
    );
    expect(audit.map((a) => a.action).sort()).toEqual(
      results[3]!.outcome === 'accepted'
        ? ['revision.accepted', 'revision.conflict', 'revision.conflict']
        : ['revision.accepted', 'revision.conflict', 'revision.duplicate-suppressed'],
    );
    for (const id of ['gc-a', 'gc-b'])
      expect((await ledger.revisionStatus('riverside-clinic', id))!.revisions[0]!.deliveries).toMatchObject([
        { destination: 'ehr', state: 'pending' },
      ]);
  }, 120_000);
});
