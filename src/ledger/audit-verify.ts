/**
 * Verifying the audit log's hash chain (`scribe-bridge audit verify`): stream the records in seq order, a page
 * at a time, and check for each that
 *
 * - its seq is the next one (a missing seq is a deleted record: `gap`),
 * - its prev_hash is the previous record's hash (`prev-hash-break`: a record before it was removed, replaced or
 *   re-hashed, or this one was moved),
 * - its content hashes to its stored hash (`hash-mismatch`: edited, or moved to another seq — seq is hashed),
 * - it equals every anchored head at its seq (`anchor-mismatch`: the chain was rewritten and re-hashed),
 *
 * then that the chain ends exactly at `audit_chain_head` (`head-mismatch`, `beyond-head` for records appended
 * without moving the head, `gap` for records deleted from the end) and reaches every anchored head
 * (`truncated`: the tail was deleted and the head moved back). The first failing check names the record.
 *
 * A service may append while this runs: the head is read after the last page, and pages are read again until
 * the chain reaches it, so records committed meanwhile are verified too.
 *
 * Without a key, a hash chain proves integrity relative to a trusted later hash: someone who can write the
 * database and re-hash every record after an edit (and move the head) defeats the chain alone, but not an
 * anchor kept outside the database (a file, an S3 object), which is what anchoring is for.
 */
import { type AuditRecord, auditHash, GENESIS_HASH, readAudit } from './audit.ts';
import type { Queryable } from './db.ts';

/** A chain head as anchored outside the database. */
export interface Anchor {
  readonly seq: number;
  readonly hash: string;
  /** When it was anchored (RFC 3339). */
  readonly at: string;
}

export type ChainProblem =
  | 'gap'
  | 'prev-hash-break'
  | 'hash-mismatch'
  | 'anchor-mismatch'
  | 'head-mismatch'
  | 'beyond-head'
  | 'truncated';

/** The first bad record: its seq, what is wrong, and a sentence saying so (ids and hashes only). */
export interface ChainFault {
  readonly seq: number;
  readonly problem: ChainProblem;
  readonly detail: string;
}

export type ChainVerdict =
  | {
      readonly ok: true;
      /** Records verified (the chain's length). */
      readonly records: number;
      /** The last record's seq and hash (seq 0 and the genesis hash for an empty log). */
      readonly head: { readonly seq: number; readonly hash: string; readonly at?: string };
      /** The anchor checked, when one was given: the latest (highest seq). */
      readonly anchor?: Anchor;
    }
  | {
      readonly ok: false;
      /** Records that verified before the fault. */
      readonly records: number;
      readonly fault: ChainFault;
    };

export interface VerifyOptions {
  /** Records per page (default 5000). */
  readonly pageSize?: number;
  /** Called after every page with the records verified so far and the head's seq when the run started. */
  readonly onProgress?: (verified: number, total: number) => void;
  /** Anchored heads; each must be in the chain. */
  readonly anchors?: readonly Anchor[];
}

class Fault extends Error {
  readonly fault: ChainFault;
  constructor(fault: ChainFault) {
    super(fault.detail);
    this.fault = fault;
  }
}

async function readHead(db: Queryable): Promise<{ seq: number; hash: string }> {
  const [head] = await db.query<{ last_seq: number; last_hash: string }>(
    'select last_seq, last_hash from audit_chain_head where singleton',
  );
  if (!head) throw new Error('audit_chain_head is empty: the ledger was not migrated');
  return { seq: head.last_seq, hash: head.last_hash };
}

/** Verifies the whole audit chain; resolves with the verdict (a fault is a verdict, not an exception). */
export async function verifyAuditChain(db: Queryable, options: VerifyOptions = {}): Promise<ChainVerdict> {
  const pageSize = options.pageSize ?? 5000;
  const anchors = new Map<number, Anchor>();
  for (const a of options.anchors ?? []) {
    const seen = anchors.get(a.seq);
    if (seen && seen.hash !== a.hash) {
      return {
        ok: false,
        records: 0,
        fault: {
          seq: a.seq,
          problem: 'anchor-mismatch',
          detail: `two anchors disagree about record ${a.seq} (anchored ${seen.at} and ${a.at})`,
        },
      };
    }
    anchors.set(a.seq, a);
  }
  const latestAnchor = [...anchors.values()].sort((a, b) => b.seq - a.seq)[0];

  let total = (await readHead(db)).seq;
  let prev = GENESIS_HASH;
  let last: AuditRecord | undefined;
  let expected = 1;
  const check = (r: AuditRecord): void => {
    if (r.seq !== expected) {
      throw new Fault({
        seq: expected,
        problem: 'gap',
        detail: `record ${expected} is missing: the next record is ${r.seq} (records were deleted)`,
      });
    }
    if (r.prevHash !== prev) {
      throw new Fault({
        seq: r.seq,
        problem: 'prev-hash-break',
        detail:
          expected === 1
            ? 'the first record does not start from the genesis hash (records before it were removed or it was replaced)'
            : `its prev_hash is not the hash of record ${r.seq - 1} (one of the two was altered, replaced or moved)`,
      });
    }
    if (auditHash(r.prevHash, r) !== r.hash) {
      throw new Fault({
        seq: r.seq,
        problem: 'hash-mismatch',
        detail:
          'its content does not hash to its stored hash (the record was edited, or moved to another seq)',
      });
    }
    const anchor = anchors.get(r.seq);
    if (anchor && anchor.hash !== r.hash) {
      throw new Fault({
        seq: r.seq,
        problem: 'anchor-mismatch',
        detail: `its hash differs from the head anchored at ${anchor.at} (the chain was rewritten and re-hashed)`,
      });
    }
    prev = r.hash;
    last = r;
    expected++;
  };

  try {
    for (;;) {
      const page = await readAudit(db, expected, pageSize);
      for (const r of page) check(r);
      options.onProgress?.(expected - 1, Math.max(total, expected - 1));
      if (page.length === pageSize) continue;
      // The end of the table as of this read: it must be the head (read now, so it covers appends so far).
      const head = await readHead(db);
      const end = expected - 1;
      if (head.seq > end) {
        const more = await readAudit(db, expected, 1);
        if (more.length > 0) {
          total = head.seq; // appended while we read: go on
          continue;
        }
        throw new Fault({
          seq: expected,
          problem: 'gap',
          detail: `the chain ends at record ${end} but its head is record ${head.seq} (records were deleted from the end)`,
        });
      }
      if (head.seq < end) {
        throw new Fault({
          seq: head.seq + 1,
          problem: 'beyond-head',
          detail: `the chain head is record ${head.seq}, but records up to ${end} exist (inserted without an append)`,
        });
      }
      if (head.hash !== prev) {
        throw new Fault({
          seq: end,
          problem: 'head-mismatch',
          detail: `the chain head's hash for record ${end} differs from the record's hash`,
        });
      }
      if (latestAnchor && latestAnchor.seq > end) {
        throw new Fault({
          seq: latestAnchor.seq,
          problem: 'truncated',
          detail: `the head anchored at ${latestAnchor.at} is record ${latestAnchor.seq}, but the chain ends at record ${end} (its tail was deleted)`,
        });
      }
      const finalLast = last as AuditRecord | undefined;
      return {
        ok: true,
        records: end,
        head: {
          seq: end,
          hash: prev,
          ...(finalLast ? { at: finalLast.at.toISOString() } : {}),
        },
        ...(latestAnchor ? { anchor: latestAnchor } : {}),
      };
    }
  } catch (e) {
    if (e instanceof Fault) return { ok: false, records: expected - 1, fault: e.fault };
    throw e;
  }
}
