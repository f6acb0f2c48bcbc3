/**
 * `GET /v1/trace` (auditor role) and the auditor's web page (`GET /audit`, static files from ./web/audit).
 *
 * Every trace read is audited before the answer leaves (who: role + token-hash prefix; when; what: the query and
 * the note it resolved to), found or not. The static page carries no PHI: it asks for the auditor's token, keeps
 * it in sessionStorage, and calls this endpoint.
 */
import { fileURLToPath } from 'node:url';
import express, { type Request, type RequestHandler, type Response } from 'express';
import type { Config } from '../config/index.ts';
import { ScribeError, toScribeError } from '../errors.ts';
import { auditPhiRead } from '../ledger/audit.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { TenantKeys } from '../service/intake.ts';
import { FHIR_EXPORT_CONTENT_TYPE, traceToFhir, wantsFhir } from './fhir.ts';
import { includeTranscript, parseTraceQuery, traceQueryParams } from './query.ts';
import { noMatch, readTrace } from './trace.ts';
import type { TraceQuery } from './types.ts';

/** The authenticated caller, as `requireRole` leaves it in `res.locals.who`. */
interface Who {
  readonly role: string;
  readonly tokenSha256: string;
  readonly tenants?: readonly string[];
}

/** The folder of the auditor's page (HTML, JS, CSS; no PHI). */
export const AUDIT_PAGE_DIR = new URL('../../web/audit/', import.meta.url);

/** The handler of `GET /v1/trace`; mount it after the auditor role check. */
export function traceHandler(deps: { readonly config: Config; readonly ledger: Ledger }): RequestHandler {
  const keys = new TenantKeys(deps.config);
  return async (req: Request, res: Response) => {
    const who = res.locals['who'] as Who;
    let query: TraceQuery;
    let fhir: boolean;
    let transcript: boolean;
    try {
      // `_format=fhir` / `Accept: application/fhir+json`: the FHIR export (Provenance + AuditEvent Bundle).
      const { _format, ...params } = req.query as Record<string, unknown>;
      fhir = wantsFhir(_format, (types) => req.accepts(types));
      query = parseTraceQuery(params);
      transcript = includeTranscript(params);
      const destination = query.kind === 'note' ? undefined : query.destination;
      if (destination !== undefined && !deps.config.destinations.some((d) => d.id === destination))
        throw new ScribeError('USAGE', `no destination ${JSON.stringify(destination)} is configured here`, {
          where: 'destination',
          hint: `The destinations are: ${deps.config.destinations.map((d) => d.id).join(', ')}.`,
        });
    } catch (e) {
      return fail(res, toScribeError(e));
    }
    try {
      const trace = await readTrace(deps.ledger.db, query, { keys: (t) => keys.get(t), transcript }).catch(
        (e: unknown) => {
          const err = toScribeError(e);
          if (err.code === 'NOT_FOUND') return err;
          throw err;
        },
      );
      const found = trace instanceof ScribeError ? undefined : trace;
      const allowed = !found || !who.tenants || who.tenants.includes(found.tenant);
      const status = !found ? 404 : allowed ? 200 : 403;
      // Audited before anything is answered: no PHI-bearing response leaves without its record.
      await auditPhiRead(deps.ledger.db, {
        role: who.role,
        tokenSha256: who.tokenSha256,
        endpoint: 'GET /v1/trace',
        query: traceQueryParams(query),
        notes:
          found && allowed
            ? [
                {
                  tenant: found.tenant,
                  noteId: found.noteId,
                  ...(query.kind === 'note' && query.revision !== undefined
                    ? { revision: query.revision }
                    : {}),
                },
              ]
            : [],
        status,
        format: fhir ? 'fhir' : req.get('x-scribe-bridge-view') === 'audit-page' ? 'html' : 'json',
      });
      if (!found) return fail(res, trace as ScribeError);
      // A query that names the tenant learns nothing new from 403; one by an EHR's identifier, id or message
      // number would learn that another tenant has that document: it is answered as if nothing matched
      // (the audit record keeps the truth, 403).
      if (!allowed)
        return fail(
          res,
          query.kind === 'note'
            ? new ScribeError('FORBIDDEN', 'this token may not read that tenant')
            : noMatch(query),
        );
      if (fhir)
        res
          .set('cache-control', 'no-store')
          .type(FHIR_EXPORT_CONTENT_TYPE)
          .send(JSON.stringify(traceToFhir(found)));
      else res.set('cache-control', 'no-store').json(found);
    } catch (e) {
      fail(res, toScribeError(e));
    }
  };
}

/** The auditor's page: static files, no PHI, never cached by shared caches. */
export function auditPage(): express.Router {
  const router = express.Router();
  router.use((_req, res, next) => {
    res.set('cache-control', 'no-store');
    res.set(
      'content-security-policy',
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
    );
    res.set('x-content-type-options', 'nosniff');
    res.set('referrer-policy', 'no-referrer');
    next();
  });
  router.use(express.static(fileURLToPath(AUDIT_PAGE_DIR), { index: 'index.html', redirect: true }));
  return router;
}

function fail(res: Response, err: ScribeError): void {
  res.locals['code'] = err.code;
  res.status(err.status).type('application/fhir+json').json(err.toOperationOutcome());
}
