/**
 * The FHIR REST destination: one rendering written to one EHR, and the answer classified (standards.md §10).
 *
 * Contract of `send`: it never throws for anything the network, the token endpoint or the EHR does; the result
 * says `delivered` (2xx, with the receipt), `rejected` (permanent: resending the same bytes cannot help),
 * `retry` (nothing was stored; not before `retryAfterMs`) or `ambiguous` (sent, no usable answer, or 409/412:
 * settle with `readBack`, never by a blind resend). It throws a ScribeError only for caller defects (a
 * rendering this destination cannot send). The bytes sent are exactly `rendering.body`, unless the
 * destination resolves references: then the result carries the bytes actually sent and their sha256.
 *
 * Every write is idempotent on the EHR's side (conditional create on the identifier, PUT by deterministic id,
 * a transaction whose entries are conditional or PUT by id, a document Bundle conditional on its identifier),
 * which is what makes a resend after a read-back that found nothing safe.
 */
import { createHash } from 'node:crypto';
import { ScribeError } from '../errors.ts';
import type { Rendering } from '../map/engine.ts';
import { type Authorization, type AuthProvider, createAuth } from './auth.ts';
import {
  type Classification,
  classifyAnswer,
  isObject,
  parseJson,
  receiptOf,
  resourceIds,
} from './fhir-classify.ts';
import { type HttpExchange, type HttpRequestSpec, HttpTransport } from './fhir-http.ts';
import {
  type LogicalRef,
  logicalReferences,
  ReferenceCache,
  refKey,
  withResolvedReferences,
} from './fhir-references.ts';
import { planWrite, readBackTarget, searchPath, type WritePlan } from './fhir-request.ts';
import type {
  FhirDestinationConfig,
  FhirDestinationDeps,
  FhirLogger,
  FhirReceipt,
  FhirResult,
} from './fhir-types.ts';

export type * from './fhir-types.ts';

/** Default deadline of one HTTP exchange, ms: an EHR may validate and index a large transaction first. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Default life of a resolved reference, ms: long enough to spare searches, short enough to follow merges. */
export const DEFAULT_REFERENCE_TTL_MS = 5 * 60_000;

const FHIR_JSON = 'application/fhir+json';

/** Per-send options. */
export interface SendOptions {
  /** Cancels the exchange (e.g. at shutdown); cancelled after writing is `ambiguous`, as any lost answer. */
  readonly signal?: AbortSignal;
  /**
   * The request planned at intake (`planWrite` of the same rendering and write mode, recorded in the ledger), so
   * the rendered value is not parsed again to decide it. Without it, the request is planned here.
   */
  readonly plan?: WritePlan;
}

/** The outcome of one authenticated exchange. */
type Authed =
  | {
      readonly kind: 'auth-failed';
      readonly auth: Extract<Authorization, { ok: false }>;
      readonly refreshed: boolean;
    }
  | {
      readonly kind: 'failed';
      readonly ex: Extract<HttpExchange, { kind: 'failed' }>;
      readonly refreshed: boolean;
    }
  | {
      readonly kind: 'answer';
      readonly ex: Extract<HttpExchange, { kind: 'response' }>;
      readonly json: unknown;
      readonly cls: Classification;
      readonly refreshed: boolean;
    };

/** A reference search: one id, or the verdict that stops the send. */
type Lookup =
  | { readonly kind: 'found'; readonly ref: LogicalRef; readonly id: string }
  | { readonly kind: 'unresolved' | 'failed'; readonly ref: LogicalRef; readonly verdict: Verdict };

/** The parts of a result that depend on what happened, not on what was sent. */
type Verdict = Omit<FhirResult, 'sentBody' | 'sentSha256' | 'ms' | 'written'> & {
  readonly written?: boolean;
};

/** A FHIR REST destination. Create one per destination and reuse it (it keeps connections and tokens); `close()` at shutdown. */
export class FhirDestination {
  readonly id: string;
  readonly #config: FhirDestinationConfig;
  readonly #base: string;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #log: FhirLogger;
  readonly #http: HttpTransport;
  readonly #auth: AuthProvider;
  readonly #refs: ReferenceCache;
  /** Reference searches in flight, by refKey: concurrent sends for one patient share one search. */
  readonly #pending = new Map<string, Promise<Lookup>>();

  constructor(config: FhirDestinationConfig, deps: FhirDestinationDeps = {}) {
    const base = checkConfig(config);
    this.id = config.id;
    this.#config = config;
    this.#base = base;
    this.#timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#now = deps.now ?? Date.now;
    this.#log = deps.logger ?? (() => {});
    this.#http = new HttpTransport(config.tls);
    this.#auth = createAuth(config.auth, {
      http: this.#http,
      timeoutMs: this.#timeoutMs,
      destination: config.id,
      now: this.#now,
      logger: this.#log,
    });
    this.#refs = new ReferenceCache(config.referenceCacheTtlMs ?? DEFAULT_REFERENCE_TTL_MS);
  }

  /** Writes one rendering. See the file comment for the contract. */
  async send(rendering: Rendering, opts: SendOptions = {}): Promise<FhirResult> {
    const t0 = performance.now();
    const plan = opts.plan ?? planWrite(rendering, this.#config.write ?? 'conditional-create');
    let sentBody = rendering.body;
    let sentSha256 = rendering.sha256;
    const finish = (v: Verdict): FhirResult => {
      const result: FhirResult = {
        written: false,
        ...v,
        sentBody,
        sentSha256,
        ms: Math.round(performance.now() - t0),
      };
      this.#log({
        level: result.outcome === 'delivered' ? 'info' : 'warn',
        event: 'fhir.send',
        destination: this.id,
        method: plan.method,
        path: plan.path.split('?')[0] ?? '',
        ...(result.httpStatus === undefined ? {} : { status: result.httpStatus }),
        outcome: result.outcome,
        reason: result.reason,
        ms: result.ms,
      });
      return result;
    };
    if (this.#config.references === 'resolve') {
      const resolved = await this.#resolve(rendering.value, opts.signal);
      if (!resolved.ok) return finish(resolved.verdict);
      if (resolved.changed) {
        sentBody = JSON.stringify(resolved.value);
        sentSha256 = createHash('sha256').update(sentBody).digest('hex');
      }
    }
    const authed = await this.#exchange({
      method: plan.method,
      url: this.#url(plan.path),
      headers: {
        'content-type': FHIR_JSON,
        accept: FHIR_JSON,
        prefer: 'return=representation',
        ...(plan.ifNoneExist ? { 'if-none-exist': plan.ifNoneExist } : {}),
      },
      body: sentBody,
      timeoutMs: this.#timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    return finish(verdictOf(authed));
  }

  /**
   * Settles an ambiguous send by searching the identifier the rendering carries (its DocumentReference, or the
   * document Bundle). Found (with the rendered status, so a retraction counts only once applied) → `delivered`
   * with a receipt from the stored resource; not found → `undefined`, and sending again is safe because every
   * write is conditional or by id; the search itself failing → `ambiguous` (still unknown: try later).
   * Nothing is written, so `sentBody`/`sentSha256` are the rendering's: keep those recorded with the attempt.
   */
  async readBack(rendering: Rendering, opts: SendOptions = {}): Promise<FhirResult | undefined> {
    const t0 = performance.now();
    const target = readBackTarget(rendering);
    const authed = await this.#exchange({
      method: 'GET',
      url: this.#url(searchPath(target.resourceType, target.system, target.value)),
      headers: { accept: FHIR_JSON },
      timeoutMs: this.#timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const base = { written: false, sentBody: rendering.body, sentSha256: rendering.sha256 };
    const ms = () => Math.round(performance.now() - t0);
    if (authed.kind !== 'answer' || authed.cls.outcome !== 'delivered') {
      const v = verdictOf(authed);
      return {
        ...v,
        ...base,
        outcome: 'ambiguous',
        detail: `read-back search failed: ${v.detail ?? v.reason}`,
        ms: ms(),
      };
    }
    const found = searchResults(authed.json, target.resourceType);
    const done = target.status === undefined ? found : found.filter((r) => r['status'] === target.status);
    const hit = done[0];
    if (!hit) return undefined;
    const ids = resourceIds(hit);
    const meta = isObject(hit['meta']) ? hit['meta'] : {};
    const receipt: FhirReceipt = {
      status: authed.ex.status,
      ...ids,
      ...(ids.versionId ? { etag: `W/"${ids.versionId}"` } : {}),
      ...(typeof meta['lastUpdated'] === 'string' ? { lastModified: meta['lastUpdated'] } : {}),
      matches: found.length,
    };
    return {
      outcome: 'delivered',
      reason: 'read-back',
      httpStatus: authed.ex.status,
      receipt,
      ...(authed.refreshed ? { authRefreshed: true } : {}),
      ...base,
      ms: ms(),
    };
  }

  /** Closes the destination's connections; sends still in flight fail as the transport reports. */
  async close(): Promise<void> {
    this.#http.close();
  }

  #url(path: string): URL {
    return new URL(path ? `${this.#base}/${path}` : this.#base);
  }

  /** One exchange with credentials; a refused token is refreshed once and the request sent once more. */
  async #exchange(spec: HttpRequestSpec): Promise<Authed> {
    let refreshed = false;
    for (;;) {
      const auth = await this.#auth.authorize();
      if (!auth.ok) return { kind: 'auth-failed', auth, refreshed };
      const headers = auth.header ? { ...spec.headers, authorization: auth.header } : spec.headers;
      const ex = await this.#http.exchange({ ...spec, headers });
      if (ex.kind === 'failed') return { kind: 'failed', ex, refreshed };
      const json = parseJson(ex.body);
      const cls = classifyAnswer(ex.status, ex.headers, json, this.#now());
      // A refused token was not acted on, so sending the same request again is safe.
      if (cls.outcome === 'auth' && !refreshed && this.#auth.invalidate(auth.header)) {
        refreshed = true;
        continue;
      }
      return { kind: 'answer', ex, json, cls, refreshed };
    }
  }

  /** The payload with logical references resolved, or why it cannot be sent. */
  async #resolve(
    value: unknown,
    signal: AbortSignal | undefined,
  ): Promise<{ ok: true; value: unknown; changed: boolean } | { ok: false; verdict: Verdict }> {
    const refs = logicalReferences(value);
    if (refs.length === 0) return { ok: true, value, changed: false };
    const ids = new Map<string, string>();
    const misses = refs.filter((r) => {
      const id = this.#refs.get(refKey(r), this.#now());
      if (id !== undefined) ids.set(refKey(r), id);
      return id === undefined;
    });
    const looked = await Promise.all(
      misses.map((r) => {
        const key = refKey(r);
        let p = this.#pending.get(key);
        if (!p) {
          p = this.#lookup(r, signal).finally(() => this.#pending.delete(key));
          this.#pending.set(key, p);
        }
        return p;
      }),
    );
    // An identifier that matches nothing (or several) is permanent; report it before any transient failure.
    const problems = looked.flatMap((l) => (l.kind === 'found' ? [] : [l]));
    const problem = problems.find((l) => l.kind === 'unresolved') ?? problems[0];
    if (problem) return { ok: false, verdict: problem.verdict };
    for (const l of looked) {
      if (l.kind !== 'found') continue;
      ids.set(refKey(l.ref), l.id);
      this.#refs.set(refKey(l.ref), l.id, this.#now());
    }
    return { ok: true, value: withResolvedReferences(value, ids), changed: true };
  }

  async #lookup(ref: LogicalRef, signal: AbortSignal | undefined): Promise<Lookup> {
    const authed = await this.#exchange({
      method: 'GET',
      url: this.#url(searchPath(ref.resourceType, ref.system, ref.value)),
      headers: { accept: FHIR_JSON },
      timeoutMs: this.#timeoutMs,
      ...(signal ? { signal } : {}),
    });
    if (authed.kind !== 'answer' || authed.cls.outcome !== 'delivered') {
      const v = verdictOf(authed);
      // A search has no side effects: what would be ambiguous for a write is simply "try again".
      const outcome = v.outcome === 'rejected' ? 'rejected' : 'retry';
      return {
        kind: 'failed',
        ref,
        verdict: {
          ...v,
          outcome,
          reason: 'reference-search-failed',
          written: false,
          detail: `${ref.resourceType} search: ${v.detail ?? v.reason}`,
        },
      };
    }
    const found = searchResults(authed.json, ref.resourceType);
    const id = found.length === 1 ? found[0]!['id'] : undefined;
    if (typeof id === 'string') return { kind: 'found', ref, id };
    this.#log({
      level: 'warn',
      event: 'fhir.reference.unresolved',
      destination: this.id,
      resourceType: ref.resourceType,
      system: ref.system,
      matches: found.length,
    });
    return {
      kind: 'unresolved',
      ref,
      verdict: {
        outcome: 'rejected',
        reason: 'reference-unresolved',
        // The system names the kind of identifier (an MRN system, NPI); the value is PHI and stays out.
        detail: `${found.length === 0 ? 'no' : `${found.length}`} ${ref.resourceType} with an identifier of system ${ref.system}${found.length > 1 ? ' (ambiguous)' : ''}`,
      },
    };
  }
}

/** The base URL without trailing slashes. Throws ScribeError for a config that cannot work. */
function checkConfig(config: FhirDestinationConfig): string {
  const where = `destinations.${config.id}`;
  let base: URL | undefined;
  try {
    base = new URL(config.baseUrl);
  } catch {
    base = undefined;
  }
  if (base?.protocol !== 'http:' && base?.protocol !== 'https:')
    throw new ScribeError('CONFIG_INVALID', 'baseUrl is not an http(s) URL', { where: `${where}.baseUrl` });
  if (config.auth.type === 'mtls' && (!config.tls?.cert || !config.tls.key || base.protocol !== 'https:'))
    throw new ScribeError('CONFIG_INVALID', 'auth mtls needs an https baseUrl and tls.cert and tls.key', {
      where: `${where}.tls`,
    });
  return base.href.replace(/\/+$/, '');
}

/** A search answer's resources of one type (the Bundle may also carry OperationOutcome or included entries). */
function searchResults(json: unknown, resourceType: string): Array<Record<string, unknown>> {
  if (!isObject(json) || !Array.isArray(json['entry'])) return [];
  return json['entry']
    .filter(isObject)
    .map((e) => e['resource'])
    .filter((r): r is Record<string, unknown> => isObject(r) && r['resourceType'] === resourceType);
}

/** What an exchange means for a write. */
function verdictOf(a: Authed): Verdict {
  const refreshed = a.refreshed ? { authRefreshed: true } : {};
  switch (a.kind) {
    case 'auth-failed':
      return {
        outcome: a.auth.outcome,
        reason: 'auth-failed',
        ...(a.auth.httpStatus === undefined ? {} : { httpStatus: a.auth.httpStatus }),
        ...(a.auth.retryAfterMs === undefined ? {} : { retryAfterMs: a.auth.retryAfterMs }),
        ...(a.auth.errorCode === undefined ? {} : { errorCode: a.auth.errorCode }),
        detail: a.auth.detail,
        ...refreshed,
      };
    case 'failed': {
      const { written, connected, errorCode } = a.ex;
      return {
        // Written and unanswered: the EHR may have stored it. Not written: it cannot have been.
        outcome: written ? 'ambiguous' : 'retry',
        reason: written ? 'no-answer' : connected ? 'send-failed' : 'connect-failed',
        written,
        errorCode,
        detail: errorCode,
        ...refreshed,
      };
    }
    case 'answer': {
      const { ex, cls, json } = a;
      const outcome = cls.outcome === 'auth' ? 'rejected' : cls.outcome;
      const codes = cls.issueCodes.length > 0 ? { issueCodes: cls.issueCodes } : {};
      return {
        outcome,
        reason: 'http',
        httpStatus: ex.status,
        written: true,
        ...(cls.retryAfterMs === undefined ? {} : { retryAfterMs: cls.retryAfterMs }),
        ...codes,
        ...(cls.issues ? { issues: cls.issues } : {}),
        ...(outcome === 'delivered' ? { receipt: receiptOf(ex.status, ex.headers, json) } : {}),
        ...(outcome === 'delivered'
          ? {}
          : { detail: `HTTP ${ex.status}${cls.issueCodes.length ? ` ${cls.issueCodes.join(',')}` : ''}` }),
        ...refreshed,
      };
    }
  }
}
