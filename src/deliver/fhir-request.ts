/**
 * What HTTP request a FHIR rendering becomes, and how to find it again by identifier. Pure.
 *
 * | rendering | request |
 * |---|---|
 * | a resource with `request` (us-core-docref) | as the request says: `POST DocumentReference` + `If-None-Exist`, or a conditional `PUT DocumentReference?identifier=…` |
 * | a resource, destination `write: put` | `PUT <Type>/<resource.id>` (update-as-create with the deterministic id) |
 * | a resource without `request` | `POST <Type>` conditional on its first identifier |
 * | Bundle type=transaction (or batch) | `POST [base]` |
 * | Bundle type=document | `POST Bundle` conditional on `Bundle.identifier` (a header: the bytes stay the rendering's) |
 */
import { ScribeError } from '../errors.ts';
import type { Rendering } from '../map/engine.ts';
import { isObject } from './fhir-classify.ts';

/** One planned write. `path` is below the base, query already encoded. */
export interface WritePlan {
  readonly method: 'POST' | 'PUT';
  readonly path: string;
  readonly ifNoneExist?: string;
}

/** An identifier to search for: the resource a rendering writes, and (where it has one) its status. */
export interface ReadBackTarget {
  readonly resourceType: string;
  readonly system: string;
  readonly value: string;
  /** The status the written resource must have (a retraction is only done once it reads entered-in-error). */
  readonly status?: string;
}

/** Plans the request for a rendering. Throws ScribeError for renderings this destination cannot send. */
export function planWrite(rendering: Rendering, write: 'conditional-create' | 'put'): WritePlan {
  const value = fhirValue(rendering);
  const type = value['resourceType'] as string;
  if (type === 'Bundle') {
    if (value['type'] === 'transaction' || value['type'] === 'batch') return { method: 'POST', path: '' };
    if (value['type'] === 'document') {
      const id = identifierOf(value);
      return {
        method: 'POST',
        path: 'Bundle',
        ...(id ? { ifNoneExist: encodeQuery(`identifier=${tokenOf(id.system, id.value)}`) } : {}),
      };
    }
    throw defect(`a Bundle of type ${String(value['type'])} is not sent to a FHIR REST destination`);
  }
  if (write === 'put') {
    const id = value['id'];
    if (typeof id !== 'string' || id === '')
      throw defect(`write: put needs the rendered ${type} to carry an id`);
    return { method: 'PUT', path: `${type}/${encodeURIComponent(id)}` };
  }
  const rq = rendering.request;
  if (rq) {
    return {
      method: rq.method,
      path: encodePath(rq.url),
      ...(rq.ifNoneExist ? { ifNoneExist: encodeQuery(rq.ifNoneExist) } : {}),
    };
  }
  const id = identifierOf(value);
  return {
    method: 'POST',
    path: type,
    ...(id ? { ifNoneExist: encodeQuery(`identifier=${tokenOf(id.system, id.value)}`) } : {}),
  };
}

/** The identifier a read-back searches for: the DocumentReference (of a transaction, too), or the document Bundle. */
export function readBackTarget(rendering: Rendering): ReadBackTarget {
  const value = fhirValue(rendering);
  let resource = value;
  if (value['resourceType'] === 'Bundle' && value['type'] !== 'document') {
    const entries = Array.isArray(value['entry']) ? value['entry'].filter(isObject) : [];
    const resources = entries.map((e) => e['resource']).filter(isObject);
    const found = resources.find((r) => r['resourceType'] === 'DocumentReference') ?? resources[0];
    if (!found) throw defect('the transaction has no entry to read back');
    resource = found;
  }
  const id = identifierOf(resource);
  const type = resource['resourceType'] as string;
  if (!id) throw defect(`the rendered ${type} has no identifier to read it back by`);
  const status = type === 'Bundle' ? undefined : resource['status'];
  return { resourceType: type, ...id, ...(typeof status === 'string' ? { status } : {}) };
}

/** The search path for a read-back target. */
export function searchPath(resourceType: string, system: string, value: string): string {
  return `${resourceType}?${encodeQuery(`identifier=${tokenOf(system, value)}`)}`;
}

/** A token search value `system|value`, with FHIR's search escapes (`\`, `|`, `,`, `$`) inside each part. */
export function tokenOf(system: string, value: string): string {
  const esc = (s: string) => s.replace(/[\\|,$]/g, (c) => `\\${c}`);
  return `${esc(system)}|${esc(value)}`;
}

/**
 * Percent-encodes each name and value of a query given raw (`identifier=urn:x:note|enc-1`). `|`, `:` and `/`
 * stay as they are: they carry no meaning in a query value, every FHIR server reads them literally, and a
 * server that does not decode a header value (If-None-Exist) would otherwise search for `%7C` and match
 * nothing — a silent duplicate. Everything that would change the query's meaning (`&`, `=`, `+`, `#`, `%`,
 * spaces, non-ASCII) is encoded.
 */
export function encodeQuery(query: string): string {
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return encodeComponent(pair);
      return `${encodeComponent(pair.slice(0, eq))}=${encodeComponent(pair.slice(eq + 1))}`;
    })
    .join('&');
}

function encodeComponent(s: string): string {
  return encodeURIComponent(s).replace(/%7C|%3A|%2F/gi, (m) => decodeURIComponent(m));
}

/** A request URL as the mapping renders it (`DocumentReference?identifier=…`): the path kept, the query encoded. */
function encodePath(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q)}?${encodeQuery(url.slice(q + 1))}`;
}

/** The resource's business identifier: one of ours (`urn:scribe-bridge:`) first, else the first complete one. */
function identifierOf(resource: Record<string, unknown>): { system: string; value: string } | undefined {
  const raw = resource['identifier'];
  const list = (Array.isArray(raw) ? raw : [raw]).filter(isObject).flatMap((i) => {
    const { system, value } = i;
    return typeof system === 'string' && typeof value === 'string' ? [{ system, value }] : [];
  });
  return list.find((i) => i.system.startsWith('urn:scribe-bridge:')) ?? list[0];
}

function fhirValue(rendering: Rendering): Record<string, unknown> {
  const v = rendering.value;
  if (rendering.format !== 'fhir' || !isObject(v) || typeof v['resourceType'] !== 'string')
    throw defect(`mapping ${rendering.mapping.id} does not produce FHIR JSON`);
  return v;
}

function defect(detail: string): ScribeError {
  return new ScribeError('FHIR_UNSENDABLE', detail, {
    where: 'destination',
    hint: 'Choose a FHIR mapping whose output this destination can send (see docs/mappings.md).',
  });
}
