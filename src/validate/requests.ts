/**
 * A FHIR write is only as idempotent as its request is consistent with what it carries: a conditional create whose
 * `ifNoneExist` searches for an identifier the resource does not have never finds the earlier copy (every resend is
 * a duplicate), a PUT to `Type/id` whose resource has another id is refused by the server (FHIR http: "the id in
 * the resource SHALL match the URL"), and a request naming another resource type writes nothing useful. These
 * checks run per note and in every proof, for a mapping's `request:` and for each entry of a transaction Bundle.
 * Messages name paths and parameter names, never identifier values.
 */
import type { WriteRequest } from '../map/engine.ts';

export interface RequestIssue {
  readonly path: string;
  readonly message: string;
}

interface Carried {
  readonly resourceType?: unknown;
  readonly id?: unknown;
  readonly identifier?: unknown;
}

function identifiers(r: Carried): Array<{ system?: unknown; value?: unknown }> {
  const ids = Array.isArray(r.identifier) ? r.identifier : r.identifier ? [r.identifier] : [];
  return ids.filter((i): i is { system?: unknown; value?: unknown } => typeof i === 'object' && i !== null);
}

function decoded(s: string): string | undefined {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

type Token = { system: string; value: string };

function token(text: string | undefined): Token | undefined {
  const bar = text?.indexOf('|') ?? -1;
  // Token search: `system|value`; a bare value (no system) cannot be told apart from a value with a bar in it.
  return text !== undefined && bar >= 0
    ? { system: text.slice(0, bar), value: text.slice(bar + 1) }
    : undefined;
}

/**
 * The `identifier` searches of a query string, each with its readings: as written (a mapping writes the request
 * unencoded; the transport encodes it) and URL-decoded (for a mapping that encoded it itself). A search fits when
 * either reading names an identifier the resource carries.
 */
function identifierSearches(query: string): Token[][] {
  const out: Token[][] = [];
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || decoded(pair.slice(0, eq)) !== 'identifier') continue;
    const raw = pair.slice(eq + 1);
    out.push([token(raw), token(decoded(raw))].filter((t): t is Token => t !== undefined));
  }
  return out;
}

function checkOne(
  req: { method?: unknown; url?: unknown; ifNoneExist?: unknown },
  resource: Carried | undefined,
  at: string,
  issues: RequestIssue[],
): void {
  if (!resource || typeof req.url !== 'string') return;
  const url = req.url;
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const [type, id, ...rest] = path.split('/');
  if (type !== resource.resourceType) {
    issues.push({
      path: `${at}.url`,
      message: `the request writes ${type ?? '(nothing)'} but carries a ${String(resource.resourceType)}`,
    });
    return;
  }
  if (req.method === 'PUT' && q < 0 && id !== undefined && rest.length === 0 && resource.id !== id) {
    issues.push({
      path: `${at}.url`,
      message: 'a PUT to Type/id must carry a resource with that id (FHIR update); the ids differ',
    });
  }
  const queries = [
    ...(q >= 0 ? [{ text: url.slice(q + 1), where: `${at}.url` }] : []),
    ...(typeof req.ifNoneExist === 'string' ? [{ text: req.ifNoneExist, where: `${at}.ifNoneExist` }] : []),
  ];
  const carried = identifiers(resource);
  for (const { text, where } of queries) {
    for (const readings of identifierSearches(text)) {
      if (readings.some((s) => carried.some((i) => i.system === s.system && i.value === s.value))) continue;
      issues.push({
        path: where,
        message:
          readings.length > 0
            ? 'searches for an identifier the resource does not carry: the conditional write would never find it, so every resend would write a duplicate'
            : 'an identifier search needs system|value',
      });
    }
  }
}

/** Problems of a rendering's write request(s) against the resources they carry. */
export function requestIssues(value: unknown, request: WriteRequest | undefined): RequestIssue[] {
  const issues: RequestIssue[] = [];
  const v = value as Carried & { type?: unknown; entry?: unknown };
  if (request) checkOne(request, v, 'request', issues);
  if (
    v?.resourceType === 'Bundle' &&
    (v.type === 'transaction' || v.type === 'batch') &&
    Array.isArray(v.entry)
  ) {
    for (const [i, e] of (v.entry as Array<{ request?: unknown; resource?: Carried }>).entries()) {
      if (e && typeof e.request === 'object' && e.request !== null)
        checkOne(e.request as Record<string, unknown>, e.resource, `Bundle.entry[${i}].request`, issues);
    }
  }
  return issues;
}
