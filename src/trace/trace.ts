/**
 * Assembles the provenance trace (./types.ts) from the ledger: resolves a query (note key, or an identifier a
 * destination received, an id the EHR assigned, a TXA-12.1, an MSH-10) to a note, then reads its revisions,
 * renderings, deliveries, attempts and audit records in five indexed statements, outside any transaction.
 *
 * The trace also checks what it reads: the stored envelope's canonical content against the recorded hash, the
 * signature against the tenant's current keys (when given), each stored payload against its recorded hash (in
 * the database: payloads never leave it), and the artifact hashes against the envelope's signed ones.
 */
import { createHash } from 'node:crypto';
import { classifySentences } from '../contract/edits.ts';
import type { Envelope } from '../contract/envelope.ts';
import { parseClinicalDocument, parseTranscript } from '../contract/healthscribe.ts';
import type { JsonValue } from '../contract/json.ts';
import { type Jwks, signedContent, verifyDetachedJws } from '../contract/signature.ts';
import { ScribeError, toScribeError } from '../errors.ts';
import type { Queryable } from '../ledger/db.ts';
import type { DeliveryState, RevisionState } from '../ledger/types.ts';
import { expandTraceData, type TraceData, traceSentences, transcriptSegments } from './record.ts';
import type {
  Trace,
  TraceAttempt,
  TraceDelivery,
  TraceEvent,
  TraceMatch,
  TraceQuery,
  TraceRevision,
} from './types.ts';

export interface TraceOptions {
  /** The tenant's current review keys, to re-verify each signature now; without it only intake's result is shown. */
  readonly keys?: (tenant: string) => Promise<Jwks>;
  /** Include every transcript segment (`transcript`), not only each sentence's evidence (~2× the size). */
  readonly transcript?: boolean;
}

/** The trace for a query; NOT_FOUND when nothing matches. */
export async function readTrace(db: Queryable, query: TraceQuery, opts: TraceOptions = {}): Promise<Trace> {
  const found = await resolveQuery(db, query);
  if (!found) throw await notFound(db, query);
  const { tenant, noteId, match } = found;
  const onlyRevision = query.kind === 'note' ? query.revision : undefined;
  const revisionRows = await db.query<RevisionRow>(
    // The trace data whole (json, migration 007): its evidence cites the transcript's segments by id.
    `select id, revision, status, replaces, state, state_reason, content_sha256, envelope, sig_kid, sig_alg,
       sig_thumbprint, signed_at, artifacts, source, received_at, trace
     from note_revisions where tenant = $1 and note_id = $2 ${onlyRevision !== undefined ? 'and revision = $3' : ''}
     order by revision`,
    onlyRevision !== undefined ? [tenant, noteId, onlyRevision] : [tenant, noteId],
  );
  if (revisionRows.length === 0)
    throw new ScribeError('NOT_FOUND', `no such note revision`, {
      where: `${tenant}/${noteId}${onlyRevision !== undefined ? `@${onlyRevision}` : ''}`,
    });
  const [deliveryRows, attemptRows, eventRows, allRevisions] = await Promise.all([
    db.query<DeliveryRow>(
      `select d.id, d.revision_id, d.destination, d.state, d.receipt, d.last_error_code, d.updated_at,
         r.mapping_id, r.mapping_version, r.mapping_digest, r.content_type, r.payload_sha256, r.identifiers,
         encode(sha256(convert_to(r.payload, 'UTF8')), 'hex') as payload_computed
       from deliveries d join renderings r on r.id = d.rendering_id
       where d.tenant = $1 and d.note_id = $2
       order by d.revision, d.destination`,
      [tenant, noteId],
    ),
    db.query<AttemptRow>(
      `select a.delivery_id, a.attempt, a.at, a.duration_ms, a.outcome, a.http_status, a.ack_code, a.error_code,
         a.payload_sha256, a.receipt
       from deliveries d join delivery_attempts a on a.delivery_id = d.id
       where d.tenant = $1 and d.note_id = $2
       order by a.delivery_id, a.id`,
      [tenant, noteId],
    ),
    db.query<EventRow>(
      // Reads of the note (read.phi) are left out: they are about the auditors, and they grow with every trace.
      `select seq, at, actor, action, revision, destination, details from audit_log
       where tenant = $1 and note_id = $2 and action <> 'read.phi' order by seq`,
      [tenant, noteId],
    ),
    onlyRevision === undefined
      ? Promise.resolve(revisionRows.map((r) => r.revision))
      : db
          .query<{ revision: number }>(
            'select revision from note_revisions where tenant = $1 and note_id = $2 order by revision',
            [tenant, noteId],
          )
          .then((rows) => rows.map((r) => r.revision)),
  ]);

  const attemptsByDelivery = groupBy(attemptRows, (a) => a.delivery_id);
  const deliveriesByRevision = groupBy(deliveryRows, (d) => d.revision_id);
  const eventsByRevision = groupBy(
    eventRows.filter((e) => e.revision !== null),
    (e) => e.revision as number,
  );
  const keys = opts.keys;
  const revisions = await Promise.all(
    revisionRows.map((row) =>
      buildRevision(row, {
        deliveries: deliveriesByRevision.get(row.id) ?? [],
        attempts: attemptsByDelivery,
        events: eventsByRevision.get(row.revision) ?? [],
        next: allRevisions.find((n) => n > row.revision),
        transcript: opts.transcript === true,
        ...(keys ? { keys } : {}),
      }),
    ),
  );
  const noteEvents = eventRows.filter((e) => e.revision === null).map(toEvent);
  return {
    tenant,
    noteId,
    query,
    match,
    revisions,
    ...(noteEvents.length ? { events: noteEvents } : {}),
  };
}

/**
 * The note (and revision, destination) a query names, or undefined. A note key without a revision matches the
 * latest revision that was not dead-lettered (a refused revision is listed, but is not what the note is now).
 */
export async function resolveQuery(
  db: Queryable,
  q: TraceQuery,
): Promise<{ tenant: string; noteId: string; match: TraceMatch } | undefined> {
  if (q.kind === 'note') {
    const rows = await db.query<{ revision: number }>(
      `select revision from note_revisions where tenant = $1 and note_id = $2
       ${q.revision !== undefined ? 'and revision = $3' : ''}
       order by (state = 'dead-lettered'), revision desc limit 1`,
      q.revision !== undefined ? [q.tenant, q.noteId, q.revision] : [q.tenant, q.noteId],
    );
    const r = rows[0];
    return r ? { tenant: q.tenant, noteId: q.noteId, match: { revision: r.revision } } : undefined;
  }
  let rows: { tenant: string; note_id: string; revision: number; destination: string }[];
  if (q.kind === 'resourceId') {
    rows = await db.query(
      `select d.tenant, d.note_id, d.revision, d.destination from deliveries d
       where d.destination = $1 and d.receipt is not null
         and (jsonb_path_query_array(d.receipt, 'lax $.id')
              || jsonb_path_query_array(d.receipt, 'lax $.entries[*].id')) ? $2
         and (d.receipt @> $3::jsonb or d.receipt @> $4::jsonb)
       order by d.revision, d.id limit 1`,
      [
        q.destination,
        q.id,
        { resourceType: q.resourceType, id: q.id },
        { entries: [{ resourceType: q.resourceType, id: q.id }] },
      ],
    );
  } else {
    const probe =
      q.kind === 'identifier'
        ? [{ system: q.system, value: q.value }]
        : q.kind === 'documentNumber'
          ? [{ documentNumber: q.documentNumber }]
          : [{ controlId: q.controlId }];
    rows = await db.query(
      `select v.tenant, v.note_id, v.revision, r.destination
       from renderings r join note_revisions v on v.id = r.revision_id
       where r.destination = $1 and r.identifiers @> $2::jsonb
       order by v.revision, r.id limit 1`,
      [q.destination, probe],
    );
  }
  const r = rows[0];
  return r
    ? { tenant: r.tenant, noteId: r.note_id, match: { revision: r.revision, destination: r.destination } }
    : undefined;
}

/** A PHI-free description of a query (for messages). */
/** NOT_FOUND for a query that matched nothing, saying as much as is known: a note without that revision. */
async function notFound(db: Queryable, query: TraceQuery): Promise<ScribeError> {
  if (query.kind === 'note' && query.revision !== undefined) {
    const rows = await db.query<{ revision: number }>(
      'select revision from note_revisions where tenant = $1 and note_id = $2 order by revision',
      [query.tenant, query.noteId],
    );
    if (rows.length > 0)
      return new ScribeError('NOT_FOUND', `this note has no revision ${query.revision}`, {
        where: `${query.tenant}/${query.noteId}`,
        hint: `Its revisions are ${rows.map((r) => r.revision).join(', ')}; leave out revision for all of them.`,
      });
  }
  return noMatch(query);
}

/** The answer to a query nothing matches — also to one that matches only a tenant the caller may not read. */
export function noMatch(query: TraceQuery): ScribeError {
  return new ScribeError('NOT_FOUND', `no delivered document matches this ${describe(query)}`, {
    ...(query.kind === 'note'
      ? {}
      : {
          hint: `Check the destination id and the value exactly as that destination received it (README § The trace).`,
        }),
  });
}

export function describe(q: TraceQuery): string {
  switch (q.kind) {
    case 'note':
      return 'tenant and note id';
    case 'identifier':
      return `identifier at destination ${JSON.stringify(q.destination)}`;
    case 'resourceId':
      return `${q.resourceType} id at destination ${JSON.stringify(q.destination)}`;
    case 'documentNumber':
      return `document number (TXA-12.1) at destination ${JSON.stringify(q.destination)}`;
    case 'controlId':
      return `message control id (MSH-10) at destination ${JSON.stringify(q.destination)}`;
  }
}

interface RevisionRow {
  id: number;
  revision: number;
  status: TraceRevision['status'];
  replaces: number | null;
  state: RevisionState;
  state_reason: string | null;
  content_sha256: string;
  envelope: { [k: string]: JsonValue };
  sig_kid: string;
  sig_alg: string;
  sig_thumbprint: string | null;
  signed_at: Date;
  artifacts: { name: string; source: string; uri?: string; sha256: string; hashSigned: boolean }[];
  source: string;
  received_at: Date;
  /** The stored trace data (src/trace/record.ts), null for revisions recorded before migration 002. */
  trace: unknown;
}

interface DeliveryRow {
  id: number;
  revision_id: number;
  destination: string;
  state: DeliveryState;
  receipt: JsonValue | null;
  last_error_code: string | null;
  updated_at: Date;
  mapping_id: string;
  mapping_version: string;
  mapping_digest: string;
  content_type: string;
  payload_sha256: string;
  identifiers: JsonValue[];
  payload_computed: string;
}

interface AttemptRow {
  delivery_id: number;
  attempt: number;
  at: Date;
  duration_ms: number | null;
  outcome: string;
  http_status: number | null;
  ack_code: string | null;
  error_code: string | null;
  payload_sha256: string | null;
  receipt: JsonValue | null;
}

interface EventRow {
  seq: number;
  at: Date;
  actor: string;
  action: string;
  revision: number | null;
  destination: string | null;
  details: JsonValue;
}

async function buildRevision(
  row: RevisionRow,
  ctx: {
    deliveries: readonly DeliveryRow[];
    attempts: ReadonlyMap<number, AttemptRow[]>;
    events: readonly EventRow[];
    next: number | undefined;
    transcript: boolean;
    keys?: (tenant: string) => Promise<Jwks>;
  },
): Promise<TraceRevision> {
  const envelope = row.envelope as unknown as Envelope;
  const data: TraceData =
    row.trace !== null && row.trace !== undefined
      ? expandTraceData(row.trace)
      : traceDataFromInline(envelope);
  const sentences = data.sentences;
  const content = signedContent(row.envelope);
  const computed = createHash('sha256').update(content).digest('hex');
  const hs = envelope.healthscribe;
  const signedHashes: Record<string, string | undefined> = {
    transcript: hs.transcript?.sha256,
    clinicalDocument: hs.clinicalDocument?.sha256,
  };
  const deliveries: TraceDelivery[] = ctx.deliveries.map((d) => ({
    destination: d.destination,
    status: d.state,
    mapping: { id: d.mapping_id, version: d.mapping_version, digest: d.mapping_digest },
    contentType: d.content_type,
    payloadSha256: d.payload_sha256,
    identifiers: d.identifiers,
    attempts: (ctx.attempts.get(d.id) ?? []).map(attempt),
    ...(d.receipt !== null ? { receipt: d.receipt } : {}),
    ...(d.last_error_code ? { lastErrorCode: d.last_error_code } : {}),
    updatedAt: d.updated_at.toISOString(),
  }));
  return {
    revision: row.revision,
    status: row.status,
    ...(row.replaces !== null ? { replaces: row.replaces } : {}),
    ...(ctx.next !== undefined ? { replacedBy: ctx.next } : {}),
    state: row.state,
    ...(row.state_reason ? { stateReason: row.state_reason } : {}),
    template: envelope.template,
    source: row.source,
    receivedAt: row.received_at.toISOString(),
    contentSha256: row.content_sha256,
    signature: {
      kid: row.sig_kid,
      alg: row.sig_alg,
      ...(row.sig_thumbprint ? { thumbprint: row.sig_thumbprint } : {}),
      signedAt: envelope.signature.signedAt, // exactly as signed
      // Only verified revisions are ever recorded (RevisionInput.signature.verified must be true).
      verified: true,
      signer: {
        identifier: envelope.author.identifier.map((i) => ({ system: i.system, value: i.value })),
        ...(envelope.author.name ? { name: envelope.author.name as JsonValue } : {}),
      },
    },
    healthscribe: {
      ...(data.jobName ? { jobName: data.jobName } : hs.jobName ? { jobName: hs.jobName } : {}),
      ...(data.sessionId ? { sessionId: data.sessionId } : hs.sessionId ? { sessionId: hs.sessionId } : {}),
      artifacts: row.artifacts.map((a) => ({
        name: a.name,
        source: a.source,
        ...(a.uri ? { uri: a.uri } : {}),
        sha256: a.sha256,
        hashSigned: a.hashSigned,
      })),
    },
    sentences,
    removedDraftSentences: data.removedDraftSentences,
    ...(ctx.transcript ? { transcript: data.transcript } : {}),
    deliveries,
    events: ctx.events.map(toEvent),
    checks: {
      contentSha256: { recorded: row.content_sha256, computed, ok: computed === row.content_sha256 },
      ...(ctx.keys ? { signature: await recheckSignature(ctx.keys, envelope, content) } : {}),
      payloads: ctx.deliveries.map((d) => ({
        destination: d.destination,
        ok: d.payload_computed === d.payload_sha256,
      })),
      artifacts: row.artifacts.map((a) => ({
        name: a.name,
        ok: signedHashes[a.name] === undefined || signedHashes[a.name] === a.sha256,
      })),
    },
  };
}

async function recheckSignature(
  keys: (tenant: string) => Promise<Jwks>,
  envelope: Envelope,
  content: Uint8Array,
): Promise<{ ok: boolean; code?: string }> {
  try {
    const jwks = await keys(envelope.tenant);
    await verifyDetachedJws(envelope.signature.jws, content, jwks, envelope.signature.signedAt);
    return { ok: true };
  } catch (e) {
    return { ok: false, code: toScribeError(e).code };
  }
}

function attempt(a: AttemptRow): TraceAttempt {
  return {
    attempt: a.attempt,
    at: a.at.toISOString(),
    outcome: a.outcome,
    ...(a.duration_ms !== null ? { durationMs: a.duration_ms } : {}),
    ...(a.http_status !== null ? { httpStatus: a.http_status } : {}),
    ...(a.ack_code ? { ackCode: a.ack_code } : {}),
    ...(a.error_code ? { errorCode: a.error_code } : {}),
    ...(a.payload_sha256 ? { payloadSha256: a.payload_sha256 } : {}),
    ...(a.receipt !== null ? { receipt: a.receipt } : {}),
  };
}

function toEvent(e: EventRow): TraceEvent {
  const details = e.details;
  const empty =
    details && typeof details === 'object' && !Array.isArray(details) && !Object.keys(details).length;
  return {
    seq: e.seq,
    at: e.at.toISOString(),
    actor: e.actor,
    action: e.action,
    ...(e.destination ? { destination: e.destination } : {}),
    ...(empty ? {} : { details }),
  };
}

/**
 * Revisions recorded before migration 002 carry no trace data: rebuild it from inline artifacts (the only ones
 * the ledger holds). Other artifacts cannot be re-read here.
 */
function traceDataFromInline(env: Envelope): TraceData {
  const t = env.healthscribe.transcript;
  const c = env.healthscribe.clinicalDocument;
  if (!t || !c || !('inline' in t) || !('inline' in c))
    throw new ScribeError(
      'NOT_FOUND',
      'this revision was recorded without trace data and its artifacts are not inline',
      { where: `${env.tenant}/${env.noteId}@${env.revision}`, hint: 'Re-send the note to record its trace.' },
    );
  const { sentences, removed } = classifySentences(env, parseClinicalDocument(c.inline));
  const transcript = transcriptSegments(parseTranscript(t.inline));
  return {
    sentences: traceSentences(sentences, transcript),
    removedDraftSentences: removed,
    transcript,
  };
}

function groupBy<T, K>(items: readonly T[], key: (t: T) => K): Map<K, T[]> {
  const out = new Map<K, T[]>();
  for (const it of items) {
    const k = key(it);
    const list = out.get(k);
    if (list) list.push(it);
    else out.set(k, [it]);
  }
  return out;
}
