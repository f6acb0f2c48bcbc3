/**
 * The provenance trace (./types.ts) as FHIR R4: one Bundle of type `collection` with
 *
 * - the AI Device (AWS HealthScribe, AI Transparency `AIdeviceTypeCS#Artificial-Intelligence`, identified by
 *   its job or session) and the scribe-bridge Device (the assembler and transmitter);
 * - per sentence, a Provenance (standards.md §4.5): target = what each destination received (the EHR's id and
 *   version from the receipt, or the identifier it got), with `targetElement` = the sentence's element id
 *   (`sentence-<id>`, as the FHIR mappings emit it); the edit class (project extension); entities = each
 *   evidence segment (role source, segment identifier, audio offsets, speaker role), the transcript and the
 *   clinical documentation artifacts with their sha256 (`artifact-sha256`), and the AI draft sentence it came
 *   from (role derivation); agents = the AI device (author; or informant when the clinician edited) and the
 *   signing clinician (verifier; author when edited or added), each on behalf of the tenant organisation;
 * - per delivered rendering, a Provenance: target = the delivered resource, activity CREATE / UPDATE, agents =
 *   the signing clinician (author, kept as the original author) and scribe-bridge (US Core `transmitter`),
 *   entities = the signed note (content sha256), the mapping (id, version, digest) and the payload (sha256);
 * - per delivery attempt, an AuditEvent (standards.md §6): FHIR REST `rest` + `create`/`update`, or DICOM
 *   110106 Export for HL7 v2 and file drops; outcome from the attempt (0 / 4 / 8 / 12); agents = scribe-bridge
 *   (requestor) and the destination; entity = the delivered resource, with HTTP status / ACK / MSH-10 /
 *   payload hash as details, and the audit record (seq, hash) that recorded it;
 * - per other audit record of the note (intake, duplicate, conflict, rendering, receipt, replay, reads), an
 *   AuditEvent carrying its action, seq and chained hash.
 *
 * Resource ids and fullUrls are derived from the note key (src/map/ids.ts): exporting the same trace twice
 * gives the same Bundle. The export carries what the trace carries; it contains no transcript text (segments
 * are referenced by id and audio time) and no sentence text, so sharing it discloses less than the trace.
 */
import type {
  AuditEvent,
  AuditEventAgent,
  AuditEventEntity,
  Bundle,
  BundleEntry,
  Coding,
  Device,
  Extension,
  Organization,
  Practitioner,
  Provenance,
  ProvenanceAgent,
  ProvenanceEntity,
  Reference,
  Resource,
} from '@medplum/fhirtypes';
import type { JsonValue } from '../contract/json.ts';
import { ScribeError } from '../errors.ts';
import { type NoteKey, noteIdentifier, resourceIds, segmentSystem } from '../map/ids.ts';
import type {
  Trace,
  TraceAttempt,
  TraceDelivery,
  TraceEvent,
  TraceRevision,
  TraceSentence,
} from './types.ts';

const SB = 'https://fhir.scribe-bridge.dev';
const EXT = {
  editClass: `${SB}/StructureDefinition/edit-class`,
  audioOffset: `${SB}/StructureDefinition/audio-offset`,
  participantRole: `${SB}/StructureDefinition/participant-role`,
  artifactSha256: `${SB}/StructureDefinition/artifact-sha256`,
  targetElement: 'http://hl7.org/fhir/StructureDefinition/targetElement',
} as const;
const PARTICIPANT = 'http://terminology.hl7.org/CodeSystem/provenance-participant-type';
const US_CORE_PARTICIPANT = 'http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type';
const AI_DEVICE = {
  system: 'http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS',
  code: 'Artificial-Intelligence',
};
const AIAST = {
  system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
  code: 'AIAST',
  display: 'Artificial Intelligence asserted',
};
const DATA_OPERATION = 'http://terminology.hl7.org/CodeSystem/v3-DataOperation';
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const AUDIT_EVENT_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-event-type';
const RESTFUL = 'http://hl7.org/fhir/restful-interaction';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
const SOURCE_TYPE = 'http://terminology.hl7.org/CodeSystem/security-source-type';
const ARTIFACT_SYSTEM = 'urn:scribe-bridge:healthscribe-artifact';
const HEX64 = /^[0-9a-f]{64}$/;

/** The FHIR media type of the export (`_format=fhir`, `Accept: application/fhir+json`). */
export const FHIR_EXPORT_CONTENT_TYPE = 'application/fhir+json';

/** The trace as a FHIR R4 `collection` Bundle of Devices, Provenances and AuditEvents. */
export function traceToFhir(trace: Trace): Bundle {
  const entries: BundleEntry[] = [];
  const add = <T extends Resource>(uuid: string, resource: T): string => {
    const fullUrl = `urn:uuid:${uuid}`;
    entries.push({ fullUrl, resource });
    return fullUrl;
  };
  const first = trace.revisions[0];
  const noteKey: NoteKey = { tenant: trace.tenant, noteId: trace.noteId, revision: first?.revision ?? 0 };
  const org = organization(trace.tenant);

  // scribe-bridge itself: assembler, transmitter, audit source.
  const bridge = resourceIds({ ...noteKey, revision: 0 }, 'fhir-export', 'scribe-bridge');
  const bridgeUrl = add(bridge.uuid, {
    resourceType: 'Device',
    id: bridge.id,
    deviceName: [{ name: 'scribe-bridge', type: 'manufacturer-name' }],
    owner: org,
  } satisfies Device);
  const bridgeRef: Reference<Device> = { reference: bridgeUrl, type: 'Device', display: 'scribe-bridge' };

  for (const rev of trace.revisions) {
    const key: NoteKey = { tenant: trace.tenant, noteId: trace.noteId, revision: rev.revision };
    const job = rev.healthscribe.jobName ?? rev.healthscribe.sessionId;
    const ai = resourceIds(key, 'fhir-export', 'ai-device');
    const aiUrl = add(ai.uuid, {
      resourceType: 'Device',
      id: ai.id,
      ...(job
        ? {
            identifier: [
              {
                system: rev.healthscribe.jobName
                  ? 'urn:aws:transcribe:medical-scribe-job'
                  : 'urn:aws:transcribe:medical-scribe-session',
                value: job,
              },
            ],
          }
        : {}),
      type: { coding: [AI_DEVICE] },
      manufacturer: 'Amazon Web Services',
      deviceName: [{ name: 'AWS HealthScribe', type: 'manufacturer-name' }],
      version: [{ type: { text: 'note template' }, value: rev.template }],
    } satisfies Device);
    const aiRef: Reference<Device> = { reference: aiUrl, type: 'Device', display: 'AWS HealthScribe' };
    const clinician = clinicianRef(rev);
    const targets = deliveredTargets(key, rev);
    const artifacts = artifactEntities(rev);

    for (const s of rev.sentences) {
      const p = resourceIds(key, 'fhir-export-sentence', s.id);
      add(
        p.uuid,
        sentenceProvenance(p.id, s, rev, targets, artifacts, { ai: aiRef, clinician, org, job, key }),
      );
    }
    for (const d of rev.deliveries) {
      const event = (a: TraceAttempt) =>
        rev.events.find(
          (e) =>
            e.destination === d.destination &&
            e.action === `delivery.${a.outcome}` &&
            attemptNumberOf(e) === a.attempt,
        );
      if (d.status === 'delivered') {
        const p = resourceIds(key, 'fhir-export-delivery', d.destination);
        add(p.uuid, deliveryProvenance(p.id, d, rev, { bridge: bridgeRef, clinician, org, key }));
      }
      for (const a of d.attempts) {
        const id = resourceIds(key, 'fhir-export-attempt', `${d.destination}/${a.attempt}`);
        add(id.uuid, attemptAuditEvent(id.id, d, a, rev, event(a), { bridge: bridgeRef, key }));
      }
    }
    const attemptActions = new Set(
      rev.deliveries.flatMap((d) => d.attempts.map((a) => `delivery.${a.outcome}`)),
    );
    for (const e of rev.events) {
      const matched =
        attemptActions.has(e.action) &&
        rev.deliveries.some((d) =>
          d.attempts.some(
            (a) =>
              e.destination === d.destination &&
              e.action === `delivery.${a.outcome}` &&
              attemptNumberOf(e) === a.attempt,
          ),
        );
      if (matched) continue; // already the attempt's AuditEvent
      const id = resourceIds(key, 'fhir-export-audit', String(e.seq));
      add(id.uuid, recordAuditEvent(id.id, e, { bridge: bridgeRef, key, targets }));
    }
  }
  for (const e of trace.events ?? []) {
    const id = resourceIds({ ...noteKey, revision: 0 }, 'fhir-export-audit', String(e.seq));
    add(
      id.uuid,
      recordAuditEvent(id.id, e, { bridge: bridgeRef, key: { ...noteKey, revision: 0 }, targets: [] }),
    );
  }

  const id = resourceIds({ ...noteKey, revision: 0 }, 'fhir-export', 'bundle');
  return {
    resourceType: 'Bundle',
    id: id.id,
    identifier: { system: `urn:scribe-bridge:${trace.tenant}:trace`, value: trace.noteId },
    type: 'collection',
    timestamp: latest(trace),
    entry: entries,
  };
}

function organization(tenant: string): Reference<Organization> {
  return { type: 'Organization', identifier: { system: 'urn:scribe-bridge:tenant', value: tenant } };
}

function clinicianRef(rev: TraceRevision): Reference<Practitioner> {
  const id = rev.signature.signer.identifier[0];
  return {
    type: 'Practitioner',
    ...(id
      ? { identifier: { system: id.system, value: id.value } }
      : { display: `signer of key ${rev.signature.kid}` }),
  };
}

/** What each destination received: the EHR's id (version-specific) from the receipt, else its identifier. */
function deliveredTargets(key: NoteKey, rev: TraceRevision): { destination: string; ref: Reference }[] {
  const out = rev.deliveries.map((d) => ({ destination: d.destination, ref: deliveredRef(key, d) }));
  return out.length > 0
    ? out
    : [{ destination: '', ref: { type: 'DocumentReference', identifier: noteIdentifier(key) } }];
}

function deliveredRef(key: NoteKey, d: TraceDelivery): Reference {
  const r = receiptOf(d);
  if (r.resourceType && r.id) {
    return {
      reference: `${r.resourceType}/${r.id}${r.versionId ? `/_history/${r.versionId}` : ''}`,
      type: r.resourceType as Resource['resourceType'],
    };
  }
  const fhirId = d.identifiers.find(
    (i): i is { system: string; value: string } =>
      typeof i === 'object' && i !== null && 'system' in i && 'value' in i,
  );
  if (fhirId)
    return { type: 'DocumentReference', identifier: { system: fhirId.system, value: fhirId.value } };
  const mdm = d.identifiers.find(
    (i): i is { documentNumber: string } => typeof i === 'object' && i !== null && 'documentNumber' in i,
  );
  if (mdm?.documentNumber) {
    return {
      type: 'DocumentReference',
      identifier: {
        system: `urn:scribe-bridge:${key.tenant}:${d.destination}:txa-12`,
        value: mdm.documentNumber,
      },
    };
  }
  return { type: 'DocumentReference', identifier: noteIdentifier(key) };
}

function receiptOf(d: TraceDelivery): {
  resourceType?: string;
  id?: string;
  versionId?: string;
  controlId?: string;
} {
  const r = (d.receipt ?? d.attempts.findLast((a) => a.receipt !== undefined)?.receipt) as
    | { [k: string]: JsonValue }
    | undefined;
  const str = (v: JsonValue | undefined) => (typeof v === 'string' && v !== '' ? v : undefined);
  if (!r || typeof r !== 'object' || Array.isArray(r)) return {};
  const out: { resourceType?: string; id?: string; versionId?: string; controlId?: string } = {};
  const rt = str(r['resourceType']);
  const id = str(r['id']);
  const v = str(r['versionId']);
  const c = str(r['controlId']);
  if (rt && /^[A-Z][A-Za-z]+$/.test(rt)) out.resourceType = rt;
  if (id && /^[A-Za-z0-9\-.]{1,64}$/.test(id)) out.id = id;
  if (v && /^[A-Za-z0-9\-.]{1,64}$/.test(v)) out.versionId = v;
  if (c) out.controlId = c;
  return out;
}

function sha256Extension(sha: string): Extension[] {
  return HEX64.test(sha) ? [{ url: EXT.artifactSha256, valueString: sha }] : [];
}

/** The transcript (role source) and the clinical documentation (role derivation), with their hashes. */
function artifactEntities(rev: TraceRevision): ProvenanceEntity[] {
  return rev.healthscribe.artifacts.map((a) => ({
    role: /transcript/i.test(a.name) ? 'source' : 'derivation',
    what: {
      display: /transcript/i.test(a.name)
        ? 'HealthScribe transcript'
        : 'HealthScribe clinical documentation (draft note)',
      identifier: { system: ARTIFACT_SYSTEM, value: `sha256:${a.sha256}` },
    },
    extension: sha256Extension(a.sha256),
  }));
}

function sentenceProvenance(
  id: string,
  s: TraceSentence,
  rev: TraceRevision,
  targets: readonly { destination: string; ref: Reference }[],
  artifacts: readonly ProvenanceEntity[],
  c: {
    ai: Reference<Device>;
    clinician: Reference<Practitioner>;
    org: Reference<Organization>;
    job: string | undefined;
    key: NoteKey;
  },
): Provenance {
  const segmentSys = c.job ? segmentSystem(c.key.tenant, c.job) : `urn:scribe-bridge:${c.key.tenant}:segment`;
  const evidence: ProvenanceEntity[] = s.evidence.map((e) => ({
    role: 'source',
    what: { identifier: { system: segmentSys, value: e.segmentId } },
    extension: [
      {
        url: EXT.audioOffset,
        valueRange: {
          low: { value: e.beginAudioTime, unit: 's', system: 'http://unitsofmeasure.org', code: 's' },
          high: { value: e.endAudioTime, unit: 's', system: 'http://unitsofmeasure.org', code: 's' },
        },
      },
      { url: EXT.participantRole, valueString: e.participantRole },
    ],
  }));
  const draft: ProvenanceEntity[] = s.draft
    ? [
        {
          role: 'derivation',
          what: {
            identifier: {
              system: c.job
                ? `urn:scribe-bridge:${c.key.tenant}:healthscribe:${c.job}:draft`
                : `urn:scribe-bridge:${c.key.tenant}:draft`,
              value: `${s.draft.section}/${s.draft.index}`,
            },
          },
        },
      ]
    : [];
  const type = (code: string): { coding: Coding[] } => ({ coding: [{ system: PARTICIPANT, code }] });
  const agents: ProvenanceAgent[] =
    s.editClass === 'ai-verbatim'
      ? [
          { type: type('author'), role: [{ coding: [AI_DEVICE] }], who: c.ai, onBehalfOf: c.org },
          { type: type('verifier'), who: c.clinician, onBehalfOf: c.org },
        ]
      : s.editClass === 'clinician-edited'
        ? [
            { type: type('author'), who: c.clinician, onBehalfOf: c.org },
            { type: type('informant'), role: [{ coding: [AI_DEVICE] }], who: c.ai, onBehalfOf: c.org },
          ]
        : [{ type: type('author'), who: c.clinician, onBehalfOf: c.org }];
  return {
    resourceType: 'Provenance',
    id,
    extension: [{ url: EXT.editClass, valueCode: s.editClass }],
    // A blank sentence (no non-whitespace text) is left out of the FHIR mappings' Composition: no element to name.
    target: targets.map((t) => ({
      ...t.ref,
      ...(/\S/.test(s.text) ? { extension: [{ url: EXT.targetElement, valueUri: `sentence-${s.id}` }] } : {}),
    })),
    recorded: rev.signature.signedAt,
    ...(s.editClass === 'clinician-added' ? {} : { reason: [{ coding: [AIAST] }] }),
    activity: {
      coding: [{ system: DATA_OPERATION, code: s.editClass === 'clinician-edited' ? 'UPDATE' : 'CREATE' }],
    },
    agent: agents,
    entity: [...evidence, ...(s.editClass === 'clinician-added' ? [] : [...artifacts, ...draft])],
  };
}

function deliveryProvenance(
  id: string,
  d: TraceDelivery,
  rev: TraceRevision,
  c: {
    bridge: Reference<Device>;
    clinician: Reference<Practitioner>;
    org: Reference<Organization>;
    key: NoteKey;
  },
): Provenance {
  const delivered = d.attempts.findLast((a) => a.outcome === 'delivered');
  return {
    resourceType: 'Provenance',
    id,
    target: [deliveredRef(c.key, d)],
    recorded: delivered?.at ?? d.updatedAt,
    activity: { coding: [{ system: DATA_OPERATION, code: rev.revision > 1 ? 'UPDATE' : 'CREATE' }] },
    agent: [
      { type: { coding: [{ system: PARTICIPANT, code: 'author' }] }, who: c.clinician, onBehalfOf: c.org },
      {
        type: { coding: [{ system: US_CORE_PARTICIPANT, code: 'transmitter' }] },
        who: c.bridge,
        onBehalfOf: c.org,
      },
    ],
    entity: [
      {
        role: 'source',
        what: {
          display: `signed note ${c.key.noteId} revision ${rev.revision}`,
          identifier: {
            system: `urn:scribe-bridge:${c.key.tenant}:signed-note`,
            value: `${c.key.noteId}-r${rev.revision}`,
          },
        },
        extension: sha256Extension(rev.contentSha256),
      },
      {
        role: 'derivation',
        what: {
          display: `mapping ${d.mapping.id} ${d.mapping.version}`,
          identifier: { system: 'urn:scribe-bridge:mapping', value: `${d.mapping.id}|${d.mapping.version}` },
        },
        extension: sha256Extension(d.mapping.digest),
      },
      {
        role: 'revision',
        what: {
          display: `payload for ${d.destination} (${d.contentType})`,
          identifier: {
            system: `urn:scribe-bridge:${c.key.tenant}:payload`,
            value: `sha256:${d.payloadSha256}`,
          },
        },
        extension: sha256Extension(d.payloadSha256),
      },
    ],
  };
}

const OUTCOME: Readonly<Record<string, '0' | '4' | '8' | '12'>> = {
  delivered: '0',
  retry: '4',
  ambiguous: '4',
  'lease-expired': '4',
  rejected: '8',
  failed: '12',
};

function isHl7(d: TraceDelivery): boolean {
  return /hl7|er7/i.test(d.contentType);
}

function attemptAuditEvent(
  id: string,
  d: TraceDelivery,
  a: TraceAttempt,
  rev: TraceRevision,
  record: TraceEvent | undefined,
  c: { bridge: Reference<Device>; key: NoteKey },
): AuditEvent {
  const rest = !isHl7(d) && a.httpStatus !== undefined;
  const update = rev.revision > 1;
  const detail: NonNullable<AuditEventEntity['detail']> = [];
  if (a.httpStatus !== undefined) detail.push({ type: 'http-status', valueString: String(a.httpStatus) });
  if (a.ackCode !== undefined) detail.push({ type: 'ack-code', valueString: a.ackCode });
  const control = receiptOf(d).controlId ?? controlIdOf(d);
  if (isHl7(d) && control) detail.push({ type: 'MSH-10', valueString: control });
  if (a.errorCode !== undefined) detail.push({ type: 'error-code', valueString: a.errorCode });
  detail.push({ type: 'payload-sha256', valueString: a.payloadSha256 ?? d.payloadSha256 });
  detail.push({ type: 'attempt', valueString: String(a.attempt) });
  if (record) {
    detail.push({ type: 'audit-seq', valueString: String(record.seq) });
    const hash = (record as { hash?: string }).hash;
    if (hash) detail.push({ type: 'audit-hash', valueString: hash });
  }
  const start = new Date(a.at);
  const end = a.durationMs !== undefined ? new Date(start.getTime() + a.durationMs) : undefined;
  return {
    resourceType: 'AuditEvent',
    id,
    type: rest
      ? { system: AUDIT_EVENT_TYPE, code: 'rest', display: 'RESTful Operation' }
      : { system: DCM, code: '110106', display: 'Export' },
    ...(rest ? { subtype: [{ system: RESTFUL, code: update ? 'update' : 'create' }] } : {}),
    action: update ? 'U' : 'C',
    period: { start: a.at, ...(end ? { end: end.toISOString() } : {}) },
    recorded: a.at,
    outcome: OUTCOME[a.outcome] ?? '4',
    outcomeDesc: `${a.outcome}${a.errorCode ? ` (${a.errorCode})` : ''}`,
    agent: [bridgeAgent(c.bridge), destinationAgent(d.destination)],
    source: auditSource(c.bridge, c.key.tenant),
    entity: [
      {
        what: deliveredRef(c.key, d),
        type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
        role: { system: OBJECT_ROLE, code: '3', display: 'Report' },
        detail,
      },
    ],
  };
}

function controlIdOf(d: TraceDelivery): string | undefined {
  const m = d.identifiers.find(
    (i): i is { controlId: string } => typeof i === 'object' && i !== null && 'controlId' in i,
  );
  return m?.controlId || undefined;
}

function bridgeAgent(bridge: Reference<Device>): AuditEventAgent {
  return {
    type: { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] },
    who: bridge,
    requestor: true,
  };
}

function destinationAgent(destination: string): AuditEventAgent {
  return {
    type: { coding: [{ system: DCM, code: '110152', display: 'Destination Role ID' }] },
    who: {
      identifier: { system: 'urn:scribe-bridge:destination', value: destination },
      display: destination,
    },
    requestor: false,
  };
}

function auditSource(bridge: Reference<Device>, tenant: string): AuditEvent['source'] {
  return {
    site: tenant,
    observer: bridge,
    type: [{ system: SOURCE_TYPE, code: '4', display: 'Application Server' }],
  };
}

/** DICOM audit event type and action for one audit record kind. */
function recordKind(action: string): {
  type: Coding;
  action: 'C' | 'R' | 'U' | 'D' | 'E';
  outcome: '0' | '4' | '8' | '12';
} {
  const [kind, what] = action.split('.');
  // Dead-letter replays (`delivery.replayed`, `revision.replayed`, `replay.*`, `dead-letter.*`): an operator's act.
  if (what === 'replayed' || kind === 'replay' || kind === 'dead-letter')
    return {
      type: { system: DCM, code: '110100', display: 'Application Activity' },
      action: 'E',
      outcome: '0',
    };
  if (kind === 'read')
    return { type: { system: DCM, code: '110110', display: 'Patient Record' }, action: 'R', outcome: '0' };
  if (kind === 'delivery') {
    const o = OUTCOME[what ?? ''];
    return {
      type: { system: DCM, code: '110106', display: 'Export' },
      action: 'C',
      outcome: o ?? '0',
    };
  }
  if (kind === 'revision' || kind === 'intake') {
    const outcome =
      what === 'conflict' || what === 'rejected' || what === 'refused' || what === 'dead-lettered'
        ? '8'
        : what === 'duplicate-suppressed'
          ? '4'
          : '0';
    return { type: { system: DCM, code: '110107', display: 'Import' }, action: 'C', outcome };
  }
  return {
    type: { system: DCM, code: '110100', display: 'Application Activity' },
    action: 'E',
    outcome: '0',
  };
}

function recordAuditEvent(
  id: string,
  e: TraceEvent,
  c: { bridge: Reference<Device>; key: NoteKey; targets: readonly { destination: string; ref: Reference }[] },
): AuditEvent {
  const k = recordKind(e.action);
  const target = e.destination ? c.targets.find((t) => t.destination === e.destination)?.ref : undefined;
  const detail: NonNullable<AuditEventEntity['detail']> = [
    { type: 'action', valueString: e.action },
    { type: 'audit-seq', valueString: String(e.seq) },
  ];
  const hash = (e as { hash?: string }).hash;
  if (hash) detail.push({ type: 'audit-hash', valueString: hash });
  const code = (e.details as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') detail.push({ type: 'error-code', valueString: code });
  // The actor is a role (and a token-hash prefix) or a worker id: never a person's name.
  const actorIsUser = /^(auditor|operator|intake|cli)\b/.test(e.actor);
  return {
    resourceType: 'AuditEvent',
    id,
    type: k.type,
    action: k.action,
    recorded: e.at,
    outcome: k.outcome,
    outcomeDesc: e.action,
    agent: actorIsUser
      ? [
          {
            type: { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] },
            who: { identifier: { system: 'urn:scribe-bridge:actor', value: e.actor }, display: e.actor },
            requestor: true,
          },
          { ...bridgeAgent(c.bridge), requestor: false },
        ]
      : [{ ...bridgeAgent(c.bridge), altId: e.actor }],
    source: auditSource(c.bridge, c.key.tenant),
    entity: [
      {
        what:
          target ??
          (c.key.revision > 0
            ? { type: 'DocumentReference', identifier: noteIdentifier(c.key) }
            : { display: `${c.key.tenant}/${c.key.noteId}` }),
        type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
        role: { system: OBJECT_ROLE, code: '3', display: 'Report' },
        detail,
      },
    ],
  };
}

function latest(trace: Trace): string {
  let t = '';
  for (const r of trace.revisions) {
    if (r.receivedAt > t) t = r.receivedAt;
    for (const d of r.deliveries) if (d.updatedAt > t) t = d.updatedAt;
    for (const e of r.events) if (e.at > t) t = e.at;
  }
  return t || new Date(0).toISOString();
}

/**
 * Whether a trace request asks for the FHIR export: `_format=fhir` (or `application/fhir+json`,
 * `json+fhir`), or an Accept header preferring `application/fhir+json` over `application/json`.
 * `_format=json` asks for the trace JSON; any other `_format` is a USAGE error.
 */
export function wantsFhir(format: unknown, accepts: (types: string[]) => string | false): boolean {
  if (format !== undefined) {
    if (format === 'fhir' || format === FHIR_EXPORT_CONTENT_TYPE || format === 'json+fhir') return true;
    if (format === 'json' || format === 'application/json') return false;
    throw new ScribeError('USAGE', `unknown _format ${JSON.stringify(String(format))}`, {
      hint: 'Use _format=fhir for the FHIR Bundle (Provenance + AuditEvent), or omit it for the trace JSON.',
    });
  }
  return accepts(['application/json', FHIR_EXPORT_CONTENT_TYPE]) === FHIR_EXPORT_CONTENT_TYPE;
}

/**
 * The number of the attempt an audit record of a delivery attempt reports: `attempt` (since migration 005; it
 * never repeats for a delivery), or for records written before it `attempts`, which was the same number until
 * an operator replayed the delivery.
 */
function attemptNumberOf(e: { details?: unknown }): unknown {
  const d = e.details as { attempt?: unknown; attempts?: unknown } | undefined;
  return d?.attempt ?? d?.attempts;
}
