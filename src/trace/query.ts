/**
 * The trace query from HTTP query parameters or CLI flags (the same names): `tenant` + `noteId` (+ `revision`),
 * or `destination` with exactly one of `identifier` (`system|value`), `resourceId` (`Type/id`),
 * `documentNumber` (TXA-12.1), `controlId` (MSH-10). Anything else is a USAGE error that says what to send.
 */
import { ScribeError } from '../errors.ts';
import type { TraceQuery } from './types.ts';

const FORMS =
  'tenant=…&noteId=…[&revision=N], or destination=… with one of identifier=<system>|<value>, resourceId=<Type>/<id>, documentNumber=…, controlId=…';

const KNOWN = new Set([
  'tenant',
  'noteId',
  'revision',
  'destination',
  'identifier',
  'resourceId',
  'documentNumber',
  'controlId',
  'include',
]);

export function parseTraceQuery(params: { readonly [k: string]: unknown }): TraceQuery {
  const p: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || k === 'include') continue;
    if (!KNOWN.has(k)) throw usage(`unknown query parameter ${JSON.stringify(k)}`);
    if (typeof v !== 'string' || v === '')
      throw usage(`query parameter ${JSON.stringify(k)} needs one non-empty value`);
    p[k] = v;
  }
  const byId = ['identifier', 'resourceId', 'documentNumber', 'controlId'].filter((k) => k in p);
  if (p['tenant'] !== undefined || p['noteId'] !== undefined) {
    if (p['tenant'] === undefined || p['noteId'] === undefined) throw usage('give both tenant and noteId');
    if (p['destination'] !== undefined || byId.length)
      throw usage('give either a note key or a destination identifier, not both');
    const rev = p['revision'];
    if (rev !== undefined && !/^[1-9]\d{0,15}$/.test(rev)) throw usage('revision must be a positive integer');
    return {
      kind: 'note',
      tenant: p['tenant'],
      noteId: p['noteId'],
      ...(rev !== undefined ? { revision: Number(rev) } : {}),
    };
  }
  if (p['revision'] !== undefined) throw usage('revision goes with tenant and noteId');
  const destination = p['destination'];
  if (destination === undefined) throw usage('nothing to trace');
  if (byId.length !== 1)
    throw usage('with destination, give exactly one of identifier, resourceId, documentNumber, controlId');
  const [key] = byId as [string];
  const value = p[key]!;
  switch (key) {
    case 'identifier': {
      const bar = value.indexOf('|');
      if (bar <= 0 || bar === value.length - 1) throw usage('identifier must be <system>|<value>');
      return { kind: 'identifier', destination, system: value.slice(0, bar), value: value.slice(bar + 1) };
    }
    case 'resourceId': {
      const m = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(value);
      if (!m) throw usage('resourceId must be <Type>/<id>, e.g. DocumentReference/123');
      return { kind: 'resourceId', destination, resourceType: m[1]!, id: m[2]! };
    }
    case 'documentNumber':
      return { kind: 'documentNumber', destination, documentNumber: value };
    default:
      return { kind: 'controlId', destination, controlId: value };
  }
}

/** `include=transcript`: every transcript segment, not only the evidence (the auditor's page asks for it). */
export function includeTranscript(params: { readonly [k: string]: unknown }): boolean {
  const v = params['include'];
  if (v === undefined) return false;
  if (v !== 'transcript') throw usage('include may only be "transcript"');
  return true;
}

/** The query back as parameters (for links and audit records). */
export function traceQueryParams(q: TraceQuery): Record<string, string> {
  switch (q.kind) {
    case 'note':
      return {
        tenant: q.tenant,
        noteId: q.noteId,
        ...(q.revision !== undefined ? { revision: String(q.revision) } : {}),
      };
    case 'identifier':
      return { destination: q.destination, identifier: `${q.system}|${q.value}` };
    case 'resourceId':
      return { destination: q.destination, resourceId: `${q.resourceType}/${q.id}` };
    case 'documentNumber':
      return { destination: q.destination, documentNumber: q.documentNumber };
    case 'controlId':
      return { destination: q.destination, controlId: q.controlId };
  }
}

function usage(what: string): ScribeError {
  return new ScribeError('USAGE', `bad trace query: ${what}`, { hint: `Query with ${FORMS}.` });
}
