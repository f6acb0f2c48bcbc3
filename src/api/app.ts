/**
 * The HTTP API (express): signed-note intake, note status, health. Every endpoint but health needs a bearer
 * token whose role allows it (tokens are configured as sha256, optionally limited to tenants). Every error is a
 * FHIR OperationOutcome carrying the stable code (`urn:scribe-bridge:error`), with the status the spec gives.
 * Responses never echo note content; logs carry ids and codes only.
 */
import { timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Config } from '../config/index.ts';
import { hashToken } from '../config/index.ts';
import { causeSummary, ScribeError, toScribeError } from '../errors.ts';
import type { SqsDeadLetterQueue } from '../ingest/sqs-dead-letters.ts';
import { auditPhiRead } from '../ledger/audit.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { listDeadLetters, parseReplayRequest, replayDeadLetters } from '../service/dead-letters.ts';
import type { Intake } from '../service/intake.ts';
import { auditPage, traceHandler } from '../trace/http.ts';
import type { Metrics } from './metrics.ts';

type Role = 'intake' | 'operator' | 'auditor';

export interface ApiDeps {
  readonly config: Config;
  readonly intake: Intake;
  readonly ledger: Ledger;
  /** Extra readiness checks (e.g. the queue); the ledger is always checked. */
  readonly ready?: () => Promise<Record<string, boolean>>;
  /** The SQS dead-letter queue, when configured: listed and replayed by /v1/dead-letters (operator role). */
  readonly deadLetterQueue?: SqsDeadLetterQueue;
  /** Prometheus metrics, served at /metrics (operator role). */
  readonly metrics?: Metrics;
  /** Ids, codes, status and durations only. */
  readonly log?: (e: {
    event: 'http';
    method: string;
    route: string;
    status: number;
    code?: string;
    /** For a 5xx: the underlying error's class, code and first stack frame (causeSummary), no message. */
    cause?: string;
    ms: number;
  }) => void;
}

interface Authed {
  role: Role;
  tenants?: readonly string[];
  /** sha256 hex of the bearer token, for audit records (which keep a short prefix of it). */
  tokenSha256: string;
}

function send(res: Response, err: ScribeError): void {
  res.locals['code'] = err.code;
  if (err.status >= 500) {
    const cause = causeSummary(err);
    if (cause) res.locals['cause'] = cause;
  }
  res.status(err.status).type('application/fhir+json').json(err.toOperationOutcome());
}

function authenticate(config: Config, req: Request): Authed | undefined {
  const h = req.get('authorization');
  const m = h ? /^Bearer\s+(\S+)$/i.exec(h) : null;
  if (!m) return undefined;
  const tokenSha256 = hashToken(m[1]!);
  const digest = Buffer.from(tokenSha256, 'hex');
  for (const t of config.auth.tokens) {
    const known = Buffer.from(t.sha256, 'hex');
    if (known.length === digest.length && timingSafeEqual(known, digest))
      return { role: t.role, tokenSha256, ...(t.tenants ? { tenants: t.tenants } : {}) };
  }
  return undefined;
}

function requireRole(config: Config, roles: readonly Role[]) {
  return (req: Request, res: Response, next: NextFunction) => {
    const who = authenticate(config, req);
    if (!who) return send(res, new ScribeError('AUTH_REQUIRED', 'no valid bearer token'));
    if (!roles.includes(who.role))
      return send(res, new ScribeError('FORBIDDEN', `the ${who.role} role may not call this endpoint`));
    res.locals['who'] = who;
    next();
  };
}

function tenantAllowed(res: Response, tenant: string): boolean {
  const who = res.locals['who'] as Authed;
  return !who.tenants || who.tenants.includes(tenant);
}

export function createApp(deps: ApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((req, res, next) => {
    const t0 = performance.now();
    res.on('finish', () => {
      deps.log?.({
        event: 'http',
        method: req.method,
        route: (req.route?.path as string | undefined) ?? 'unmatched',
        status: res.statusCode,
        ...(res.locals['code'] ? { code: res.locals['code'] as string } : {}),
        ...(res.locals['cause'] ? { cause: res.locals['cause'] as string } : {}),
        ms: Math.round(performance.now() - t0),
      });
    });
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const checks: Record<string, boolean> = {
      ledger: await deps.ledger.db.query('select 1').then(
        () => true,
        () => false,
      ),
    };
    Object.assign(checks, (await deps.ready?.().catch(() => ({ dependencies: false }))) ?? {});
    const ok = Object.values(checks).every(Boolean);
    if (ok) res.json({ status: 'ready', checks });
    else
      send(
        res,
        new ScribeError(
          checks['ledger'] === false ? 'LEDGER_UNAVAILABLE' : 'QUEUE_UNAVAILABLE',
          `not ready: ${Object.entries(checks)
            .filter(([, v]) => !v)
            .map(([k]) => k)
            .join(', ')}`,
        ),
      );
  });

  app.post(
    '/v1/notes',
    requireRole(deps.config, ['intake']),
    express.raw({ type: () => true, limit: '32mb' }),
    async (req, res) => {
      // Counted once per request: its outcome, or the code of its error.
      let counted = false;
      try {
        const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const r = await deps.intake.ingest(body, 'http', { allowTenant: (t) => tenantAllowed(res, t) });
        deps.metrics?.intake('http', r.outcome);
        counted = true;
        if (r.outcome === 'conflict')
          throw new ScribeError(
            'NOTE_CONFLICT',
            'the same tenant, note and revision was received with different signed content',
          );
        if (r.outcome === 'rejected')
          throw new ScribeError('LIFECYCLE_INVALID', 'nothing may follow an entered-in-error revision');
        const status = r.outcome === 'duplicate' ? 200 : 202;
        res.status(status).json({
          outcome: r.outcome,
          ...('deliveries' in r
            ? { deliveries: r.deliveries.map((d) => ({ destination: d.destination, state: d.state })) }
            : {}),
        });
      } catch (e) {
        const err = toScribeError(e);
        if (!counted) deps.metrics?.intake('http', err.code);
        res.locals['code'] = err.code;
        send(res, err);
      }
    },
  );

  app.get('/metrics', requireRole(deps.config, ['operator']), async (_req, res) => {
    if (!deps.metrics)
      return send(res, new ScribeError('NOT_FOUND', 'metrics are not enabled in this process'));
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });

  app.get(
    '/v1/notes/:tenant/:noteId',
    requireRole(deps.config, ['operator', 'auditor']),
    async (req, res) => {
      const { tenant, noteId } = req.params as { tenant: string; noteId: string };
      if (!tenantAllowed(res, tenant))
        return send(res, new ScribeError('FORBIDDEN', 'this token may not read that tenant'));
      try {
        const status = await deps.ledger.revisionStatus(tenant, noteId);
        const who = res.locals['who'] as Authed;
        // Audited before anything is answered: no PHI-bearing response leaves without its record.
        await auditPhiRead(deps.ledger.db, {
          role: who.role,
          tokenSha256: who.tokenSha256,
          endpoint: 'GET /v1/notes/{tenant}/{noteId}',
          query: { tenant, noteId },
          notes: status ? [{ tenant, noteId }] : [],
          status: status ? 200 : 404,
        });
        if (!status)
          return send(res, new ScribeError('NOT_FOUND', 'no such note', { where: `${tenant}/${noteId}` }));
        res.json(status);
      } catch (e) {
        send(res, toScribeError(e));
      }
    },
  );

  // Dead letters (operator role): parked deliveries and revisions in the ledger, poison messages in the SQS DLQ.
  // Ids, codes and times only; a replay is audited.
  app.get('/v1/dead-letters', requireRole(deps.config, ['operator']), async (req, res) => {
    const who = res.locals['who'] as Authed;
    const destination = typeof req.query['destination'] === 'string' ? req.query['destination'] : undefined;
    try {
      res.json(
        await listDeadLetters(deps.ledger, deps.deadLetterQueue, {
          ...(who.tenants ? { tenants: who.tenants } : {}),
          ...(destination ? { destination } : {}),
        }),
      );
    } catch (e) {
      send(res, toScribeError(e));
    }
  });
  app.post(
    '/v1/dead-letters/replay',
    requireRole(deps.config, ['operator']),
    express.text({ type: () => true, limit: '1mb' }),
    async (req, res) => {
      const who = res.locals['who'] as Authed;
      try {
        let body: unknown;
        try {
          body = JSON.parse(typeof req.body === 'string' ? req.body : '');
        } catch {
          throw new ScribeError('DEAD_LETTER_REQUEST_INVALID', 'the replay request is not JSON', {
            where: 'body',
          });
        }
        res.json(
          await replayDeadLetters(deps.ledger, deps.deadLetterQueue, parseReplayRequest(body), {
            by: `operator:${who.tokenSha256.slice(0, 12)}`,
            ...(who.tenants ? { tenants: who.tenants } : {}),
          }),
        );
      } catch (e) {
        send(res, toScribeError(e));
      }
    },
  );

  // The provenance trace (auditor role; every read audited) and the auditor's page (static, no PHI).
  app.get('/v1/trace', requireRole(deps.config, ['auditor']), traceHandler(deps));
  app.use('/audit', auditPage());

  // A known endpoint asked with another method: 405 with the methods it has (RFC 9110 §15.5.6).
  const methods: ReadonlyArray<readonly [RegExp, string]> = [
    [/^\/v1\/notes\/?$/, 'POST'],
    [/^\/v1\/notes\/[^/]+\/[^/]+\/?$/, 'GET'],
    [/^\/v1\/trace\/?$/, 'GET'],
    [/^\/v1\/dead-letters\/?$/, 'GET'],
    [/^\/v1\/dead-letters\/replay\/?$/, 'POST'],
    [/^\/(healthz|readyz|metrics)\/?$/, 'GET'],
  ];
  app.use((req: Request, res: Response) => {
    const allowed = methods.find(([path]) => path.test(req.path))?.[1];
    if (allowed) {
      res.set('allow', allowed === 'GET' ? 'GET, HEAD' : allowed);
      send(
        res,
        new ScribeError(
          'METHOD_NOT_ALLOWED',
          `${req.method} is not served here; this endpoint takes ${allowed}`,
          {
            where: req.path,
          },
        ),
      );
      return;
    }
    send(res, new ScribeError('NOT_FOUND', 'no such endpoint', { hint: 'See README § HTTP API.' }));
  });
  // express 5 passes errors thrown by handlers here (e.g. a body over the size limit).
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const { status, limit, type } = err as { status?: number; limit?: number; type?: string };
    const mb = typeof limit === 'number' ? `${Math.round(limit / 1024 / 1024)} MB` : 'the limit';
    if (status === 413) {
      send(
        res,
        new ScribeError('ENVELOPE_TOO_LARGE', `the request body is larger than ${mb}`, { where: 'body' }),
      );
    } else if (err instanceof ScribeError || status === undefined || status >= 500) {
      send(res, toScribeError(err));
    } else {
      // The body parser's own refusals (an unsupported or corrupt Content-Encoding, a body cut short): the request
      // is at fault, said as such — body-parser's messages name the encoding or the failure, never content.
      const what =
        type === 'encoding.unsupported'
          ? `the Content-Encoding is not supported (${JSON.stringify(String(req.headers['content-encoding'] ?? '').slice(0, 40))}): send identity, gzip, deflate or br`
          : `the request body could not be read (${type ?? 'unreadable'})`;
      send(res, new ScribeError('REQUEST_BODY_UNREADABLE', what, { where: 'body' }));
    }
  });
  return app;
}
