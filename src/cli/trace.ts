import { ScribeError } from '../errors.ts';
import { auditPhiRead } from '../ledger/audit.ts';
import { openLedger } from '../ledger/db.ts';
import { TenantKeys } from '../service/intake.ts';
import { traceToFhir } from '../trace/fhir.ts';
import { formatTrace } from '../trace/format.ts';
import { parseTraceQuery, traceQueryParams } from '../trace/query.ts';
import { readTrace } from '../trace/trace.ts';
import { commandConfig, existingStore, storeUrl } from './config.ts';
import type { Io } from './io.ts';

export interface TraceCommandOptions {
  readonly config?: string;
  readonly json?: boolean;
  /** Print the FHIR export (src/trace/fhir.ts) instead. */
  readonly fhir?: boolean;
  readonly tenant?: string;
  readonly note?: string;
  readonly revision?: string;
  readonly destination?: string;
  readonly identifier?: string;
  readonly resourceId?: string;
  readonly documentNumber?: string;
  readonly controlId?: string;
}

export async function traceCommand(
  queryString: string | undefined,
  opts: TraceCommandOptions,
  io: Io,
): Promise<number> {
  const fromFlags = {
    tenant: opts.tenant,
    noteId: opts.note,
    revision: opts.revision,
    destination: opts.destination,
    identifier: opts.identifier,
    resourceId: opts.resourceId,
    documentNumber: opts.documentNumber,
    controlId: opts.controlId,
  };
  const fromString = queryString ? Object.fromEntries(new URLSearchParams(queryString)) : {};
  if (queryString && Object.values(fromFlags).some((v) => v !== undefined))
    throw new ScribeError('USAGE', 'give the trace query either as flags or as one query string, not both');
  const query = parseTraceQuery(queryString ? fromString : fromFlags);

  const config = (await commandConfig(opts.config, io))?.config;
  if (!config) return 1;
  const url = existingStore(storeUrl(config));
  const db = await openLedger(url, { poolSize: 2, applicationName: 'scribe-bridge trace' }).catch(
    (e: unknown) => {
      if (e instanceof ScribeError && e.code === 'LEDGER_LOCKED')
        throw new ScribeError(
          'LEDGER_LOCKED',
          'the PGlite store is in use by another process (a running serve?)',
          {
            where: config.store.kind === 'pglite' ? config.store.dir : '',
            hint: 'While `scribe-bridge serve` runs on a PGlite store, trace through it: GET /v1/trace with the auditor token, or the page at /audit.',
          },
        );
      throw e;
    },
  );
  try {
    const keys = new TenantKeys(config);
    const trace = await readTrace(db, query, { keys: (t) => keys.get(t) }).catch(async (e: unknown) => {
      if (e instanceof ScribeError && e.code === 'NOT_FOUND')
        await auditPhiRead(db, {
          role: 'cli',
          endpoint: 'cli trace',
          query: traceQueryParams(query),
          notes: [],
          status: 404,
        });
      throw e;
    });
    // Audited before anything is printed.
    await auditPhiRead(db, {
      role: 'cli',
      endpoint: 'cli trace',
      query: traceQueryParams(query),
      notes: [{ tenant: trace.tenant, noteId: trace.noteId }],
      status: 200,
      format: opts.fhir ? 'fhir' : opts.json ? 'json' : 'text',
    });
    if (opts.fhir) io.out(`${JSON.stringify(traceToFhir(trace), null, 2)}\n`);
    else io.out(opts.json ? `${JSON.stringify(trace, null, 2)}\n` : formatTrace(trace));
    return 0;
  } finally {
    await db.close();
  }
}
