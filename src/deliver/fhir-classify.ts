/**
 * What an EHR's HTTP answer means for a delivery (standards.md §10): the status, the OperationOutcome issue
 * codes, Retry-After, and the receipt (ids and versions of what was stored). Pure: no IO, the clock injected.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { FhirEntryReceipt, FhirOutcome, FhirReceipt } from './fhir-types.ts';

/**
 * A classified answer. `auth` is not a final outcome: the caller fetches a new token and sends once more,
 * and a second `auth` is `rejected`.
 */
export interface Classification {
  readonly outcome: FhirOutcome | 'auth';
  readonly retryAfterMs?: number;
  readonly issueCodes: readonly string[];
  /** Each issue's code with its FHIRPath `expression`s (R15), where they are plain element paths. */
  readonly issues?: readonly IssueWhere[];
}

/** An OperationOutcome issue as the ledger keeps it: its code and where — never its text (it may quote PHI). */
export interface IssueWhere {
  readonly code: string;
  readonly expression: readonly string[];
}

/** Issue codes that say "it may already be there": settle by read-back. */
const RECONCILE_CODES: ReadonlySet<string> = new Set(['duplicate', 'conflict']);
/** Issue codes that say the credentials were refused: one token refresh, then permanent. */
const AUTH_CODES: ReadonlySet<string> = new Set(['security', 'login', 'forbidden', 'expired', 'unknown']);
/**
 * Issue codes that say "not now": retry with backoff. `processing`/`exception` are the server's own failures;
 * the retry budget bounds them ("retryable a few times, then DLQ").
 */
const RETRY_CODES: ReadonlySet<string> = new Set([
  'throttled',
  'transient',
  'timeout',
  'lock-error',
  'no-store',
  'processing',
  'exception',
]);

/** Classifies one HTTP answer. Other 4xx (invalid, business-rule, not-found, unknown codes…) are permanent. */
export function classifyAnswer(
  status: number,
  headers: IncomingHttpHeaders,
  body: unknown,
  nowMs: number,
): Classification {
  const issueCodes = issueCodesOf(body);
  const where = issuesWhere(body);
  const retryAfter = parseRetryAfter(header(headers, 'retry-after'), nowMs);
  const retry = (): Classification => ({
    outcome: 'retry',
    issueCodes,
    ...(retryAfter === undefined ? {} : { retryAfterMs: retryAfter }),
  });
  if (status >= 200 && status < 300) return { outcome: 'delivered', issueCodes };
  if (status === 408 || status === 429 || status >= 500) return retry();
  // 409 version conflict, 412 conditional create matched several: re-read and reconcile.
  if (status === 409 || status === 412) return { outcome: 'ambiguous', issueCodes };
  if (issueCodes.some((c) => RECONCILE_CODES.has(c))) return { outcome: 'ambiguous', issueCodes };
  if (status === 401 || status === 403 || issueCodes.some((c) => AUTH_CODES.has(c)))
    return { outcome: 'auth', issueCodes };
  if (status >= 400 && status < 500 && issueCodes.length > 0 && issueCodes.every((c) => RETRY_CODES.has(c)))
    return retry();
  // Everything else, redirects included: following a redirect with PHI to another place is not ours to decide.
  return { outcome: 'rejected', issueCodes, ...(where.length > 0 ? { issues: where } : {}) };
}

/** A FHIRPath expression that is a plain element path (`Bundle.entry[2].resource.subject`): nothing quoted in it. */
const PLAIN_PATH = /^[A-Za-z][A-Za-z0-9_]*(\[\d+\])?(\.[A-Za-z][A-Za-z0-9_]*(\[\d+\])?)*$/;

/**
 * The error and fatal issues (all when none has a severity) of an OperationOutcome with their codes and those of
 * their `expression`s (or, in older servers, `location`s) that are plain element paths; [] for any other body.
 */
export function issuesWhere(body: unknown): IssueWhere[] {
  return severeIssues(body)
    .filter((i) => typeof i['code'] === 'string')
    .slice(0, 20)
    .map((i) => {
      const paths = [i['expression'], i['location']].find((x) => Array.isArray(x) && x.length > 0);
      const expression = ((paths as unknown[] | undefined) ?? [])
        .filter((e): e is string => typeof e === 'string' && e.length <= 200 && PLAIN_PATH.test(e))
        .slice(0, 5);
      return { code: i['code'] as string, expression };
    });
}

/** An OperationOutcome's error and fatal issues (all of them when none has a severity); [] for another body. */
function severeIssues(body: unknown): Record<string, unknown>[] {
  if (!isObject(body) || body['resourceType'] !== 'OperationOutcome' || !Array.isArray(body['issue']))
    return [];
  const issues = body['issue'].filter(isObject);
  const severe = issues.filter((i) => i['severity'] === 'error' || i['severity'] === 'fatal');
  return severe.length > 0 ? severe : issues;
}

/**
 * Codes of an OperationOutcome's error and fatal issues (all issues when none has a severity), in order,
 * without repeats; [] when the body is not an OperationOutcome.
 */
export function issueCodesOf(body: unknown): string[] {
  const codes = severeIssues(body)
    .map((i) => i['code'])
    .filter((c): c is string => typeof c === 'string');
  return [...new Set(codes)];
}

/** Retry-After (RFC 9110 §10.2.3) as a wait from `nowMs`: delay-seconds or an HTTP-date; undefined if absent or bad. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  // An HTTP-date always names a weekday; this keeps Date.parse's leniency from reading "5.5" as a date.
  if (Number.isNaN(at) || !/[A-Za-z]{3}/.test(v)) return undefined;
  return Math.max(0, at - nowMs);
}

/** Type, id and version from a Location (`[base]/Type/id/_history/vid`, absolute or relative). */
export function parseLocation(location: string): { resourceType?: string; id?: string; versionId?: string } {
  const path = location.split(/[?#]/)[0] ?? '';
  const parts = path.split('/').filter(Boolean);
  const h = parts.lastIndexOf('_history');
  const [type, id, vid] = h >= 2 ? [parts[h - 2], parts[h - 1], parts[h + 1]] : parts.slice(-2);
  if (!type || !id || !/^[A-Z][A-Za-z]+$/.test(type)) return {};
  return { resourceType: type, id, ...(vid ? { versionId: vid } : {}) };
}

/** The version in an ETag (`W/"3"` → `3`). */
export function versionOfEtag(etag: string | undefined): string | undefined {
  const m = /^(?:W\/)?"([^"]*)"$/.exec(etag?.trim() ?? '');
  return m?.[1] || undefined;
}

/**
 * The receipt of a 2xx write. For a transaction the primary resource is its DocumentReference entry (else its
 * first entry), and every entry is listed.
 */
export function receiptOf(status: number, headers: IncomingHttpHeaders, body: unknown): FhirReceipt {
  const location = header(headers, 'location') ?? header(headers, 'content-location');
  const etag = header(headers, 'etag');
  const lastModified = header(headers, 'last-modified');
  const base: FhirReceipt = {
    status,
    ...(location ? { location } : {}),
    ...(etag ? { etag } : {}),
    ...(lastModified ? { lastModified } : {}),
  };
  if (isObject(body) && body['resourceType'] === 'Bundle' && body['type'] === 'transaction-response') {
    const entries = (Array.isArray(body['entry']) ? body['entry'] : []).filter(isObject).map(entryReceipt);
    const primary = entries.find((e) => e.resourceType === 'DocumentReference') ?? entries[0];
    return {
      ...base,
      ...(primary ? stripStatus(primary) : {}),
      ...(primary ? { created: primary.status.startsWith('201') } : {}),
      entries,
    };
  }
  const fromBody = isObject(body) ? resourceIds(body) : {};
  const fromHeaders = { ...(location ? parseLocation(location) : {}) };
  const versionId = fromHeaders.versionId ?? versionOfEtag(etag) ?? fromBody.versionId;
  return {
    ...base,
    ...fromBody,
    ...fromHeaders,
    ...(versionId ? { versionId } : {}),
    created: status === 201,
  };
}

/** Type, id and version of a resource as JSON. */
export function resourceIds(r: Record<string, unknown>): {
  resourceType?: string;
  id?: string;
  versionId?: string;
} {
  const meta = isObject(r['meta']) ? r['meta'] : {};
  return {
    ...(typeof r['resourceType'] === 'string' ? { resourceType: r['resourceType'] } : {}),
    ...(typeof r['id'] === 'string' ? { id: r['id'] } : {}),
    ...(typeof meta['versionId'] === 'string' ? { versionId: meta['versionId'] } : {}),
  };
}

function entryReceipt(entry: Record<string, unknown>): FhirEntryReceipt {
  const response = isObject(entry['response']) ? entry['response'] : {};
  const location = typeof response['location'] === 'string' ? response['location'] : undefined;
  const etag = typeof response['etag'] === 'string' ? response['etag'] : undefined;
  const fromResource = isObject(entry['resource']) ? resourceIds(entry['resource']) : {};
  const fromLocation = location ? parseLocation(location) : {};
  const versionId = fromLocation.versionId ?? versionOfEtag(etag) ?? fromResource.versionId;
  return {
    status: typeof response['status'] === 'string' ? response['status'] : '',
    ...fromResource,
    ...fromLocation,
    ...(versionId ? { versionId } : {}),
    ...(etag ? { etag } : {}),
  };
}

function stripStatus(e: FhirEntryReceipt): Omit<FhirEntryReceipt, 'status'> {
  const { status: _status, ...rest } = e;
  return rest;
}

/** A header's single value (the first, when repeated). */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Parses JSON, or undefined (an EHR's error page may be HTML). */
export function parseJson(text: string): unknown {
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
