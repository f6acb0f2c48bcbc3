/**
 * `scribe-bridge dead-letters list|replay [--config <file>]`: what is parked — deliveries that ended rejected or
 * failed, revisions dead-lettered after waiting too long for their predecessor, poison messages in the SQS
 * dead-letter queue — and putting chosen items back to work (see src/service/dead-letters.ts). Opens the ledger
 * the config names: with PGlite, only while no service holds it (use `GET /v1/dead-letters` then). Prints ids,
 * codes and times only.
 */
import type { Config } from '../config/index.ts';
import { ScribeError } from '../errors.ts';
import { Ledger } from '../ledger/ledger.ts';
import {
  type DeadLetterListing,
  deadLetterQueueFor,
  listDeadLetters,
  parseReplayRequest,
  replayDeadLetters,
} from '../service/dead-letters.ts';
import { commandConfig, storeUrl } from './config.ts';
import type { Io } from './io.ts';

export interface DeadLettersListOptions {
  config?: string;
  destination?: string;
  json?: boolean;
}

export interface DeadLettersReplayOptions {
  config?: string;
  delivery?: string[];
  revision?: string[];
  sqs?: string[];
  sqsCode?: string;
  allSqs?: boolean;
  json?: boolean;
}

async function configFrom(file: string | undefined, io: Io): Promise<Config | undefined> {
  return (await commandConfig(file, io))?.config;
}

async function withStores<T>(
  config: Config,
  fn: (ledger: Ledger, dlq: ReturnType<typeof deadLetterQueueFor>) => Promise<T>,
): Promise<T> {
  const ledger = await Ledger.open(storeUrl(config), {
    holdSeconds: config.intake.holdSeconds,
    actor: 'scribe-bridge-cli',
  });
  const dlq = deadLetterQueueFor(config);
  try {
    return await fn(ledger, dlq);
  } finally {
    dlq?.destroy();
    await ledger.close();
  }
}

export async function deadLettersList(opts: DeadLettersListOptions, io: Io): Promise<number> {
  const config = await configFrom(opts.config, io);
  if (!config) return 1;
  const listing = await withStores(config, (ledger, dlq) =>
    listDeadLetters(ledger, dlq, opts.destination ? { destination: opts.destination } : {}),
  );
  if (opts.json) io.out(`${JSON.stringify(listing, null, 2)}\n`);
  else printListing(listing, io);
  return 0;
}

function printListing(l: DeadLetterListing, io: Io): void {
  const out = (s = '') => io.out(`${s}\n`);
  out(`deliveries rejected or failed: ${l.ledger.deliveries.length}`);
  for (const d of l.ledger.deliveries)
    out(
      `  delivery ${d.deliveryId}  ${d.tenant}/${d.noteId} r${d.revision} → ${d.destination}  ${d.state} after ${d.attempts} attempt(s)` +
        `${d.lastErrorCode ? ` (${d.lastErrorCode})` : ''}  ${d.updatedAt}`,
    );
  out(`revisions dead-lettered: ${l.ledger.revisions.length}`);
  for (const r of l.ledger.revisions)
    out(
      `  revision ${r.revisionId}  ${r.tenant}/${r.noteId} r${r.revision}  ${r.reason ?? '?'}${r.replayable ? '' : ' (final: not replayable)'}  ${r.updatedAt}`,
    );
  if (!l.sqs) out('SQS dead-letter queue: none configured');
  else if ('error' in l.sqs) out(`SQS dead-letter queue ${l.sqs.queueUrl}: unavailable (${l.sqs.error})`);
  else {
    out(`SQS dead-letter queue ${l.sqs.queueUrl}: ${l.sqs.messages.length} message(s)`);
    for (const m of l.sqs.messages)
      out(
        `  message ${m.messageId}  ${m.code}  ${m.kind}, ${m.bodyBytes} bytes, sha256 ${m.bodySha256.slice(0, 16)}…  ${m.deadLetteredAt ?? ''}`,
      );
  }
  const n =
    l.ledger.deliveries.length +
    l.ledger.revisions.filter((r) => r.replayable).length +
    (l.sqs && 'messages' in l.sqs ? l.sqs.messages.length : 0);
  if (n > 0)
    out(
      'replay with: scribe-bridge dead-letters replay [--delivery <id…>] [--revision <id…>] [--sqs <messageId…> | --sqs-code <CODE> | --all-sqs]',
    );
}

export async function deadLettersReplay(opts: DeadLettersReplayOptions, io: Io): Promise<number> {
  const ids = (v: string[] | undefined, what: string) =>
    v?.map((x) => {
      if (!/^[1-9][0-9]{0,15}$/.test(x))
        throw new ScribeError(
          'USAGE',
          `--${what} takes ledger ids (positive integers), not ${JSON.stringify(x)}`,
          {
            hint: 'Run `scribe-bridge dead-letters list` to see the ids.',
          },
        );
      return Number(x);
    });
  if (!opts.delivery && !opts.revision && !opts.sqs && !opts.sqsCode && !opts.allSqs)
    throw new ScribeError('USAGE', 'name what to replay', {
      hint: 'Give --delivery <id…>, --revision <id…>, --sqs <messageId…>, --sqs-code <CODE> or --all-sqs (ids from `scribe-bridge dead-letters list`).',
    });
  const request = parseReplayRequest({
    ...(opts.delivery ? { deliveryIds: ids(opts.delivery, 'delivery') } : {}),
    ...(opts.revision ? { revisionIds: ids(opts.revision, 'revision') } : {}),
    ...(opts.sqs ? { sqsMessageIds: opts.sqs } : {}),
    ...(opts.sqsCode ? { sqsCode: opts.sqsCode } : {}),
    ...(opts.allSqs ? { sqsAll: true } : {}),
  });
  const config = await configFrom(opts.config, io);
  if (!config) return 1;
  const r = await withStores(config, (ledger, dlq) =>
    replayDeadLetters(ledger, dlq, request, { by: `cli:${process.env['USER'] ?? 'unknown'}` }),
  );
  if (opts.json) {
    io.out(`${JSON.stringify(r, null, 2)}\n`);
  } else {
    for (const d of r.deliveries)
      io.out(
        `delivery ${d.deliveryId} (${d.tenant}/${d.noteId} r${d.revision} → ${d.destination}): ${d.previousState} → pending, fresh attempt budget\n`,
      );
    for (const v of r.revisions)
      io.out(
        `revision ${v.revisionId} (${v.tenant}/${v.noteId} r${v.revision}): dead-lettered → ${v.state}${v.released.length ? `, ${v.released.length} delivery(ies) released` : ''}\n`,
      );
    for (const m of r.sqs?.replayed ?? [])
      io.out(`SQS message ${m.messageId} (${m.code}): back on the intake queue as ${m.newMessageId}\n`);
    for (const id of r.sqs?.notFound ?? []) io.err(`SQS message ${id}: not in the dead-letter queue\n`);
  }
  return (r.sqs?.notFound.length ?? 0) > 0 ? 1 : 0;
}
