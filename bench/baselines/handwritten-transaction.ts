/**
 * Benchmark baseline (the floor): the `fhir-transaction` mapping (mappings/fhir-transaction.yaml with
 * mappings/common/fhir-common.yaml) written by hand as a plain TypeScript builder — object literals and loops,
 * no template interpreter, no FHIRPath. It builds the same Bundle, byte for byte after JSON.stringify, as
 * `render(loadMappingFile('mappings/fhir-transaction.yaml'), { note })` for a new note or an amendment
 * (test/bench-baselines.test.ts checks that). Retractions are not covered.
 *
 * Its input is exactly what the engine's templates see: `prepareVars` calls the engine's own `buildVars`
 * (src/map/model.ts) and adds `renderings` the way `render` does. The text renderings are NOT taken from the
 * engine: `plain` and `html` of fhir-common.yaml are re-implemented here (`renderPlain`, `renderHtml`), faithful
 * to `renderText` in src/map/engine.ts, so that prepareVars + buildTransaction is a hand-written pipeline end to
 * end. The code tables are likewise copied from fhir-common.yaml; any drift from the YAML shows up as a byte
 * difference in the test.
 */
import { createHash } from 'node:crypto';
import type {
  Bundle,
  BundleEntry,
  Coding,
  Composition,
  CompositionSection,
  Device,
  DocumentReference,
  DocumentReferenceContent,
  Encounter,
  Extension,
  Meta,
  Organization,
  Patient,
  Period,
  Practitioner,
  Provenance,
  ProvenanceAgent,
  ProvenanceEntity,
  Reference,
  Resource,
} from '@medplum/fhirtypes';
import type { VerifiedNote } from '../../src/contract/verify.ts';
import { lifecycleMode, MAPPING_DIGEST_TAG_SYSTEM, MAPPING_TAG_SYSTEM } from '../../src/map/engine.ts';
import type { Vars } from '../../src/map/expr.ts';
import { buildVars, type MappingStamp, type RenderOptions } from '../../src/map/model.ts';

// ---------------------------------------------------------------------------------------------------------------
// The variables (a typed view of what src/map/model.ts `buildVars` returns, plus `renderings`).

export interface IdentifierVars {
  readonly system: string;
  readonly value: string;
}

export interface EvidenceVars {
  readonly segmentId: string;
  readonly begin: number;
  readonly end: number;
  readonly role?: string;
}

export interface SentenceVars {
  readonly id: string;
  readonly text: string;
  readonly section: string;
  readonly sectionKey: string;
  readonly sectionIndex: number;
  readonly index: number;
  readonly number: number;
  readonly editClass: string;
  readonly aiDerived: boolean;
  readonly blank: boolean;
  readonly elementId: string;
  readonly provenanceId: string;
  readonly provenanceUuid: string;
  readonly draft?: { readonly section: string; readonly index: number };
  readonly evidence: readonly EvidenceVars[];
}

export interface SectionVars {
  readonly name: string;
  readonly key: string;
  readonly index: number;
  readonly number: number;
  readonly defaultTitle: string;
  readonly elementId: string;
  readonly sentences: readonly SentenceVars[];
  readonly blank: boolean;
}

export interface RenderingVars {
  readonly name: string;
  readonly contentType: string;
  readonly text: string;
  readonly data: string;
  readonly size: number;
  readonly hash: string;
}

interface PartyVars {
  readonly identifier: readonly IdentifierVars[];
  readonly name?: unknown;
}

/** The template variables of a new note or an amendment (see the table in src/map/model.ts). */
export interface TransactionVars {
  readonly note: {
    readonly tenant: string;
    readonly noteId: string;
    readonly revision: number;
    readonly status: string;
    readonly replaces?: number;
    readonly template: NoteTemplateName;
    readonly signedAt: string;
    readonly language: string;
    readonly hasAiContent: boolean;
    readonly sections: readonly SectionVars[];
    readonly sentences: readonly SentenceVars[];
  };
  readonly patient: PartyVars;
  readonly encounter: {
    readonly identifier: readonly IdentifierVars[];
    readonly period: { readonly start: string; readonly end?: string };
  };
  readonly author: PartyVars;
  readonly organization: { readonly identifier: readonly IdentifierVars[]; readonly name?: string };
  readonly healthscribe: {
    readonly jobName?: string;
    readonly sessionId?: string;
    readonly mode: 'batch' | 'streaming';
    readonly transcript: { readonly sha256: string };
    readonly clinicalDocument: { readonly sha256: string };
  };
  readonly ids: {
    readonly note: IdentifierVars;
    readonly segmentSystem: string;
    readonly draftSystem: string;
    readonly signOffProvenanceId: string;
    readonly signOffProvenanceUuid: string;
    readonly documentReferenceId: string;
    readonly documentReferenceUuid: string;
    readonly compositionId: string;
    readonly compositionUuid: string;
    readonly deviceId: string;
    readonly deviceUuid: string;
  };
  readonly prior: { readonly revision: number; readonly identifier: IdentifierVars } | null;
  readonly retraction: unknown;
  readonly mapping: MappingStamp;
  readonly renderings: { readonly all: readonly RenderingVars[] };
}

// ---------------------------------------------------------------------------------------------------------------
// Code tables (copied from mappings/common/fhir-common.yaml).

type NoteTemplateName =
  | 'HISTORY_AND_PHYSICAL'
  | 'GIRPP'
  | 'BIRP'
  | 'SIRP'
  | 'DAP'
  | 'BEHAVIORAL_SOAP'
  | 'PHYSICAL_SOAP';

interface NoteTypeRow {
  readonly code: string;
  readonly display: string;
  readonly title: string;
}

const LOINC = 'http://loinc.org';
const PROGRESS_NOTE = { code: '11506-3', display: 'Progress note' } as const;

const NOTE_TYPES: Readonly<Record<NoteTemplateName, NoteTypeRow>> = {
  HISTORY_AND_PHYSICAL: {
    code: '34117-2',
    display: 'History and physical note',
    title: 'History and Physical',
  },
  GIRPP: { ...PROGRESS_NOTE, title: 'Progress Note (GIRPP)' },
  BIRP: { ...PROGRESS_NOTE, title: 'Progress Note (BIRP)' },
  SIRP: { ...PROGRESS_NOTE, title: 'Progress Note (SIRP)' },
  DAP: { ...PROGRESS_NOTE, title: 'Progress Note (DAP)' },
  BEHAVIORAL_SOAP: { ...PROGRESS_NOTE, title: 'Behavioral Health SOAP Note' },
  PHYSICAL_SOAP: { ...PROGRESS_NOTE, title: 'SOAP Note' },
};

/** Section token → LOINC section code and title; a token not listed has no code and a title from the token. */
interface SectionRow {
  readonly title: string;
  readonly code?: string;
  readonly display?: string;
}

const HEALTH_STATUS = { code: '11383-7', display: 'Health status evaluations & outcomes' } as const;

const SECTIONS: Readonly<Record<string, SectionRow>> = {
  CHIEF_COMPLAINT: { code: '10154-3', display: 'Chief complaint', title: 'Chief Complaint' },
  HISTORY_OF_PRESENT_ILLNESS: {
    code: '10164-2',
    display: 'History of present illness',
    title: 'History of Present Illness',
  },
  REVIEW_OF_SYSTEMS: { code: '10187-3', display: 'Review of systems', title: 'Review of Systems' },
  PAST_MEDICAL_HISTORY: {
    code: '11348-0',
    display: 'History of past illness',
    title: 'Past Medical History',
  },
  PAST_FAMILY_HISTORY: { code: '10157-6', display: 'Family history', title: 'Family History' },
  PAST_SOCIAL_HISTORY: { code: '29762-2', display: 'Social history', title: 'Social History' },
  PHYSICAL_EXAMINATION: { code: '29545-1', display: 'Physical findings', title: 'Physical Examination' },
  DIAGNOSTIC_TESTING: {
    code: '30954-2',
    display: 'Relevant diagnostic tests/laboratory data',
    title: 'Diagnostic Testing',
  },
  ASSESSMENT: { code: '51848-0', display: 'Assessment (evaluation)', title: 'Assessment' },
  PLAN: { code: '18776-5', display: 'Plan of treatment', title: 'Plan' },
  ASSESSMENT_AND_PLAN: { code: '51847-2', display: 'Assessment and plan', title: 'Assessment and Plan' },
  SUBJECTIVE: { code: '61150-9', display: 'Subjective', title: 'Subjective' },
  OBJECTIVE: { code: '61149-1', display: 'Objective', title: 'Objective' },
  GOAL: { code: '61146-7', display: 'Goals', title: 'Goal' },
  INTERVENTION: { code: '62387-6', display: 'Interventions provided', title: 'Intervention' },
  RESPONSE: { ...HEALTH_STATUS, title: 'Response' },
  PROGRESS: { ...HEALTH_STATUS, title: 'Progress' },
  BEHAVIOR: { title: 'Behavior' },
  DATA: { title: 'Data' },
  SITUATION: { title: 'Situation' },
};

const sectionTitle = (s: SectionVars): string =>
  (Object.hasOwn(SECTIONS, s.key) ? SECTIONS[s.key]!.title : undefined) ?? s.defaultTitle;

// ---------------------------------------------------------------------------------------------------------------
// Text renderings (re-implemented from fhir-common.yaml `renderings`, the way engine.ts `renderText` joins them).

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);

interface TextRendering {
  readonly contentType: string;
  readonly render: (note: TransactionVars['note']) => string;
}

/** `plain`: title, then per section an upper-cased heading and one sentence per line. */
export function renderPlain(note: TransactionVars['note']): string {
  const parts: string[] = [];
  for (const section of note.sections) {
    if (section.sentences.length === 0) continue;
    const heading = sectionTitle(section).toUpperCase();
    const lines = section.sentences.map((s) => s.text).join('\n');
    parts.push(heading ? `${heading}\n${lines}` : lines);
  }
  return `${NOTE_TYPES[note.template].title}\n\n${parts.join('\n\n')}\n`;
}

/** `html`: the same as escaped XHTML, one `<p id=…>` per sentence. */
export function renderHtml(note: TransactionVars['note']): string {
  const title = escapeHtml(NOTE_TYPES[note.template].title);
  const parts: string[] = [];
  for (const section of note.sections) {
    if (section.sentences.length === 0) continue;
    const lines = section.sentences.map((s) => `<p id="${s.elementId}">${escapeHtml(s.text)}</p>`);
    parts.push(`<h2>${escapeHtml(sectionTitle(section))}</h2>\n${lines.join('\n')}`);
  }
  const body = `<h1>${title}</h1>\n${parts.join('\n')}`;
  return (
    `<!DOCTYPE html>\n<html lang="${note.language}"><head><meta charset="utf-8" /><title>${title}</title></head><body>\n` +
    `${body}\n</body></html>\n`
  );
}

const TEXT_RENDERINGS: Readonly<Record<string, TextRendering>> = {
  plain: { contentType: 'text/plain; charset=utf-8', render: renderPlain },
  html: { contentType: 'text/html; charset=utf-8', render: renderHtml },
};

/** The mapping's `defaultRenderings`. */
const DEFAULT_RENDERINGS: readonly string[] = ['plain'];

/** `%renderings` as engine.ts `renderTexts` builds it: one entry per name, plus `all` in order. */
export function renderTexts(note: TransactionVars['note'], options: RenderOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const all: RenderingVars[] = [];
  for (const name of options.renderings ?? DEFAULT_RENDERINGS) {
    const r = Object.hasOwn(TEXT_RENDERINGS, name) ? TEXT_RENDERINGS[name] : undefined;
    if (!r) throw new Error(`fhir-transaction has no rendering ${name}`);
    const text = r.render(note);
    const bytes = Buffer.from(text, 'utf8');
    const entry: RenderingVars = {
      name,
      contentType: r.contentType,
      text,
      data: bytes.toString('base64'),
      size: bytes.length,
      hash: createHash('sha1').update(bytes).digest('base64'),
    };
    out[name] = entry;
    all.push(entry);
  }
  out['all'] = all;
  return out;
}

/**
 * The variables `render(mapping, { note, options })` evaluates its template with, for a new note or an
 * amendment: the engine's `buildVars`, plus `renderings` (re-implemented, see renderTexts).
 */
export function prepareVars(note: VerifiedNote, mapping: MappingStamp, options: RenderOptions = {}): Vars {
  if (lifecycleMode(note) === 'retraction')
    throw new Error('the hand-written baseline covers new notes and amendments only');
  const stamp = { id: mapping.id, version: mapping.version, digest: mapping.digest };
  const vars = buildVars(note, stamp, options);
  vars['renderings'] = renderTexts(vars['note'] as TransactionVars['note'], options);
  return vars;
}

// ---------------------------------------------------------------------------------------------------------------
// The Bundle.

const EDIT_CLASS_URL = 'https://fhir.scribe-bridge.dev/StructureDefinition/edit-class';
const PARTICIPANT_TYPE = 'http://terminology.hl7.org/CodeSystem/provenance-participant-type';
const AI_DEVICE_TYPE = 'http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS';
const UCUM = 'http://unitsofmeasure.org';
const ARTIFACT_SYSTEM = 'urn:scribe-bridge:healthscribe-artifact';
const ARTIFACT_SHA256_URL = 'https://fhir.scribe-bridge.dev/StructureDefinition/artifact-sha256';

const aiLabel = (): Coding => ({
  system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
  code: 'AIAST',
  display: 'Artificial Intelligence asserted',
});

function identifierRef<T extends Resource>(p: {
  readonly identifier: readonly IdentifierVars[];
}): Reference<T> {
  return { identifier: { system: p.identifier[0]!.system, value: p.identifier[0]!.value } };
}

const period = (p: TransactionVars['encounter']['period']): Period => ({
  start: p.start,
  ...(p.end ? { end: p.end } : {}),
});

const participantType = (code: string) => ({ coding: [{ system: PARTICIPANT_TYPE, code }] });

const editClass = (code: string): Extension[] => [{ url: EDIT_CLASS_URL, valueCode: code }];

const seconds = (value: number) => ({ value, unit: 's', system: UCUM, code: 's' });

/** Adds the mapping tags like engine.ts `stampFhir`: an existing `meta` keeps its place, else it comes last. */
function stamp<T extends Resource>(resource: T, tag: Coding[]): T {
  const existing = resource.meta?.tag;
  resource.meta = { ...resource.meta, tag: existing ? [...existing, ...tag] : tag };
  return resource;
}

/** The `output.new` Bundle of fhir-transaction (also used for an amendment). */
export function buildTransaction(input: Vars): unknown {
  const v = input as unknown as TransactionVars;
  if (v.retraction) throw new Error('the hand-written baseline covers new notes and amendments only');
  const { note, ids, encounter, healthscribe: hs } = v;
  const noteType = NOTE_TYPES[note.template];
  const amended = v.prior !== null;
  const hasAi = note.hasAiContent;
  const documentRef = `urn:uuid:${ids.documentReferenceUuid}`;
  const compositionRef = `urn:uuid:${ids.compositionUuid}`;
  const deviceRef = `urn:uuid:${ids.deviceUuid}`;
  const priorTarget = v.prior?.identifier;
  const tags: Coding[] = [
    { system: MAPPING_TAG_SYSTEM, code: `${v.mapping.id}|${v.mapping.version}` },
    { system: MAPPING_DIGEST_TAG_SYSTEM, code: v.mapping.digest },
  ];

  const patientRef = () => identifierRef<Patient>(v.patient);
  const encounterRef = () => identifierRef<Encounter>(encounter);
  const authorRef = () => identifierRef<Practitioner>(v.author);
  const organizationRef = (): Reference<Organization> => ({
    ...identifierRef<Organization>(v.organization),
    ...(v.organization.name ? { display: v.organization.name } : {}),
  });
  const noteTypeConcept = () => ({
    coding: [{ system: LOINC, code: noteType.code, display: noteType.display }],
    text: noteType.title,
  });
  const securityMeta = (): { meta?: Meta } => (hasAi ? { meta: { security: [aiLabel()] } } : {});
  const deviceAuthor = (): ProvenanceAgent => ({
    type: participantType('author'),
    role: [{ coding: [{ system: AI_DEVICE_TYPE, code: 'Artificial-Intelligence' }] }],
    who: { reference: deviceRef },
    onBehalfOf: organizationRef(),
  });
  const clinician = (code: string): ProvenanceAgent => ({
    type: participantType(code),
    who: authorRef(),
    onBehalfOf: organizationRef(),
  });

  // DocumentReference (US Core 8)
  const content: DocumentReferenceContent[] = v.renderings.all.map((r) => ({
    attachment: {
      contentType: r.contentType,
      language: note.language,
      data: r.data,
      size: r.size,
      hash: r.hash,
      title: noteType.title,
      creation: note.signedAt,
    },
    format: {
      system: 'http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode',
      code: 'urn:ihe:iti:xds:2017:mimeTypeSufficient',
      display: 'mimeType Sufficient',
    },
  }));
  // `content` is 1..* in FHIR, but the engine omits it (an empty array) when no rendering is asked for
  // (options.renderings: []); the cast keeps that behaviour.
  const documentReference = {
    resourceType: 'DocumentReference',
    id: ids.documentReferenceId,
    ...securityMeta(),
    identifier: [{ system: ids.note.system, value: ids.note.value }],
    status: 'current',
    docStatus: amended ? 'amended' : 'final',
    type: noteTypeConcept(),
    category: [
      {
        coding: [
          {
            system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category',
            code: 'clinical-note',
            display: 'Clinical Note',
          },
        ],
      },
    ],
    subject: patientRef(),
    date: note.signedAt,
    author: [authorRef()],
    authenticator: authorRef(),
    custodian: organizationRef(),
    ...(v.prior
      ? {
          relatesTo: [
            {
              code: 'replaces' as const,
              target: { identifier: { system: v.prior.identifier.system, value: v.prior.identifier.value } },
            },
          ],
        }
      : {}),
    description: noteType.title,
    ...(content.length > 0 ? { content } : {}),
    context: { encounter: [encounterRef()], period: period(encounter.period) },
  } as DocumentReference;

  // Composition: every section and sentence an addressable element
  const sections: CompositionSection[] = [];
  for (const section of note.sections) {
    if (section.blank) continue;
    const row = Object.hasOwn(SECTIONS, section.key) ? SECTIONS[section.key] : undefined;
    const title = row?.title ?? section.defaultTitle;
    sections.push({
      id: section.elementId,
      ...(title ? { title } : {}),
      ...(row?.code ? { code: { coding: [{ system: LOINC, code: row.code, display: row.display! }] } } : {}),
      section: section.sentences
        .filter((s) => !s.blank)
        .map((s) => ({
          id: s.elementId,
          extension: editClass(s.editClass),
          text: {
            status: 'additional' as const,
            div: `<div xmlns="http://www.w3.org/1999/xhtml">${escapeHtml(s.text)}</div>`,
          },
        })),
    });
  }
  const composition: Composition = {
    resourceType: 'Composition',
    id: ids.compositionId,
    ...securityMeta(),
    identifier: { system: ids.note.system, value: ids.note.value },
    status: amended ? 'amended' : 'final',
    type: noteTypeConcept(),
    subject: patientRef(),
    encounter: encounterRef(),
    date: note.signedAt,
    author: [authorRef()],
    title: noteType.title,
    attester: [{ mode: 'legal', time: note.signedAt, party: authorRef() }],
    custodian: organizationRef(),
    ...(priorTarget
      ? {
          relatesTo: [
            { code: 'replaces', targetIdentifier: { system: priorTarget.system, value: priorTarget.value } },
          ],
        }
      : {}),
    ...(sections.length > 0 ? { section: sections } : {}),
  };

  const entry: BundleEntry[] = [
    {
      fullUrl: documentRef,
      resource: stamp(documentReference, tags),
      request: {
        method: 'POST',
        url: 'DocumentReference',
        ifNoneExist: `identifier=${ids.note.system}|${ids.note.value}`,
      },
    },
    {
      fullUrl: compositionRef,
      resource: stamp(composition, tags),
      request: { method: 'PUT', url: `Composition/${ids.compositionId}` },
    },
  ];

  // The AI Device (HealthScribe job or session)
  if (hasAi) {
    const device: Device = {
      resourceType: 'Device',
      id: ids.deviceId,
      identifier: [
        {
          system: hs.jobName
            ? 'urn:aws:transcribe:medical-scribe-job'
            : 'urn:aws:transcribe:medical-scribe-session',
          value: hs.jobName ? hs.jobName : hs.sessionId!,
        },
      ],
      type: { coding: [{ system: AI_DEVICE_TYPE, code: 'Artificial-Intelligence' }] },
      manufacturer: 'Amazon Web Services',
      deviceName: [{ name: 'AWS HealthScribe', type: 'manufacturer-name' }],
      version: [{ type: { text: 'note template' }, value: note.template }],
    };
    entry.push({
      fullUrl: deviceRef,
      resource: stamp(device, tags),
      request: { method: 'PUT', url: `Device/${ids.deviceId}` },
    });
  }

  // One Provenance per sentence
  for (const s of note.sentences) {
    if (s.blank) continue;
    const entity: ProvenanceEntity[] = s.evidence.map((ev) => ({
      role: 'source',
      what: { identifier: { system: ids.segmentSystem, value: ev.segmentId } },
      extension: [
        {
          url: 'https://fhir.scribe-bridge.dev/StructureDefinition/audio-offset',
          valueRange: { low: seconds(ev.begin), high: seconds(ev.end) },
        },
        ...(ev.role
          ? [
              {
                url: 'https://fhir.scribe-bridge.dev/StructureDefinition/participant-role',
                valueString: ev.role,
              },
            ]
          : []),
      ],
    }));
    if (s.draft) {
      entity.push({
        role: 'derivation',
        what: { identifier: { system: ids.draftSystem, value: `${s.draft.section}/${s.draft.index}` } },
      });
    }
    const provenance: Provenance = {
      resourceType: 'Provenance',
      id: s.provenanceId,
      target: [
        {
          reference: compositionRef,
          extension: [
            { url: 'http://hl7.org/fhir/StructureDefinition/targetElement', valueUri: s.elementId },
          ],
        },
        { reference: documentRef },
      ],
      occurredPeriod: period(encounter.period),
      recorded: note.signedAt,
      ...(s.aiDerived ? { reason: [{ coding: [aiLabel()] }] } : {}),
      activity: {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'CREATE' }],
      },
      agent: s.aiDerived ? [deviceAuthor(), clinician('verifier')] : [clinician('author')],
      ...(entity.length > 0 ? { entity } : {}),
      extension: editClass(s.editClass),
    };
    entry.push({
      fullUrl: `urn:uuid:${s.provenanceUuid}`,
      resource: stamp(provenance, tags),
      request: { method: 'PUT', url: `Provenance/${s.provenanceId}` },
    });
  }

  // Note-level sign-off Provenance with the artifact hashes
  const artifactEntity = (
    role: 'source' | 'derivation',
    display: string,
    sha256: string,
  ): ProvenanceEntity => ({
    role,
    what: { display, identifier: { system: ARTIFACT_SYSTEM, value: `sha256:${sha256}` } },
    extension: [{ url: ARTIFACT_SHA256_URL, valueString: sha256 }],
  });
  const signOff: Provenance = {
    resourceType: 'Provenance',
    id: ids.signOffProvenanceId,
    target: [{ reference: compositionRef }, { reference: documentRef }],
    occurredPeriod: period(encounter.period),
    recorded: note.signedAt,
    activity: {
      coding: [
        {
          system: 'http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion',
          code: 'LA',
          display: 'legally authenticated',
        },
      ],
    },
    agent: hasAi ? [clinician('attester'), deviceAuthor()] : [clinician('attester')],
    entity: [
      artifactEntity('source', 'HealthScribe transcript', hs.transcript.sha256),
      artifactEntity(
        'derivation',
        'HealthScribe clinical documentation (draft note)',
        hs.clinicalDocument.sha256,
      ),
    ],
  };
  entry.push({
    fullUrl: `urn:uuid:${ids.signOffProvenanceUuid}`,
    resource: stamp(signOff, tags),
    request: { method: 'PUT', url: `Provenance/${ids.signOffProvenanceId}` },
  });

  const bundle: Bundle = { resourceType: 'Bundle', type: 'transaction', entry };
  return stamp(bundle, tags);
}

/** The exact bytes: JSON.stringify of buildTransaction (what the engine's `fhir` serializer does). */
export function buildTransactionBody(vars: Vars): string {
  return JSON.stringify(buildTransaction(vars));
}
