/**
 * `scribe-bridge audit verify [--config <file>] [--anchor <file|s3://bucket/key>]`: verifies the audit hash
 * chain of the ledger the config names (without a config: the embedded default store of `serve`, PGlite in
 * ./data), against the anchored head when one is configured or given. Exit 0 with a summary (records, head
 * hash), or 1 naming the first bad record and what is wrong with it. Prints ids and hashes only.
 */
import { SingleBar } from 'cli-progress';
import { ScribeError } from '../errors.ts';
import { type AnchorStore, anchorStoreFor, anchorStoreFromConfig } from '../ledger/audit-anchor.ts';
import { type ChainVerdict, verifyAuditChain } from '../ledger/audit-verify.ts';
import { type Db, openLedger } from '../ledger/db.ts';
import { commandConfig, existingStore, storeUrl } from './config.ts';
import type { Io } from './io.ts';

export interface AuditVerifyOptions {
  readonly config?: string;
  readonly anchor?: string;
  readonly json?: boolean;
  readonly pageSize?: string;
}

/** The store `serve` uses: the config's, or the embedded default (PGlite in ./data). */
async function openStore(url: string): Promise<Db> {
  const db = await openLedger(existingStore(url), {
    poolSize: 2,
    applicationName: 'scribe-bridge audit verify',
  });
  const [t] = await db.query<{ t: string | null }>("select to_regclass('audit_log')::text as t");
  if (!t?.t) {
    await db.close();
    throw new ScribeError('NOT_FOUND', 'this store has no audit log (scribe-bridge never ran on it)', {
      where: db.location,
      hint: 'Check the store URL in the configuration.',
    });
  }
  return db;
}

export async function auditVerifyCommand(opts: AuditVerifyOptions, io: Io): Promise<number> {
  const config = (await commandConfig(opts.config, io))?.config;
  if (!config) return 1;
  const pageSize = opts.pageSize === undefined ? 5000 : Number(opts.pageSize);
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
    throw new ScribeError('USAGE', '--page-size must be a positive integer', { where: opts.pageSize ?? '' });
  }

  let anchorStore: AnchorStore | undefined;
  if (opts.anchor) {
    anchorStore = anchorStoreFor(opts.anchor, config?.s3);
  } else if (config?.audit?.anchor) {
    anchorStore = anchorStoreFromConfig(config.audit.anchor, config.s3);
  }
  const db = await openStore(storeUrl(config));
  let verdict: ChainVerdict;
  try {
    const anchors = anchorStore ? await anchorStore.read() : undefined;
    const bar =
      io.interactive && !opts.json
        ? new SingleBar({
            stream: io.progressStream,
            format: 'verifying the audit chain [{bar}] {value}/{total} records {eta_formatted}',
            hideCursor: true,
          })
        : undefined;
    let started = false;
    let lastLine = Date.now();
    verdict = await verifyAuditChain(db, {
      pageSize,
      ...(anchors ? { anchors } : {}),
      onProgress: (done, total) => {
        if (bar) {
          if (!started && total > pageSize) {
            bar.start(total, 0);
            started = true;
          }
          if (started) {
            bar.setTotal(total);
            bar.update(done);
          }
        } else if (Date.now() - lastLine >= 2000) {
          lastLine = Date.now();
          io.err(`verified ${done}/${total} audit records\n`);
        }
      },
    });
    if (started) bar?.stop();
  } finally {
    anchorStore?.close();
    await db.close();
  }

  if (opts.json) {
    io.out(
      `${JSON.stringify({ store: db.location, ...(anchorStore ? { anchor: anchorStore.location } : {}), ...verdict })}\n`,
    );
    return verdict.ok ? 0 : 1;
  }
  if (verdict.ok) {
    const anchored = verdict.anchor
      ? `; contains the head anchored at ${verdict.anchor.at} (record ${verdict.anchor.seq}) in ${anchorStore?.location}`
      : '';
    io.out(
      `audit chain ok: ${verdict.records} record(s) in ${db.location}, head record ${verdict.head.seq} hash ${verdict.head.hash}${
        verdict.head.at ? ` at ${verdict.head.at}` : ''
      }${anchored}\n`,
    );
    return 0;
  }
  const f = verdict.fault;
  const err = new ScribeError(
    'AUDIT_CHAIN_BROKEN',
    `audit record ${f.seq} is bad (${f.problem}): ${f.detail}`,
    {
      where: `${db.location} audit_log seq ${f.seq}`,
    },
  );
  io.err(`error ${err.message}\n`);
  io.err(`${verdict.records} record(s) before it verified.\n`);
  return 1;
}
