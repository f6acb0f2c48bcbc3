/**
 * The data a mapping sees: FHIRPath environment variables built from a verified note. Pure: no IO, no clock.
 * Every value is plain JSON (no `resourceType` members, no nested arrays, no nulls inside arrays), which is the
 * domain the fast FHIRPath subset is proven on (expr.property.test.ts).
 *
 * | variable | what |
 * |---|---|
 * | `%note` | tenant, noteId, revision, status, replaces, template, signedAt, hasAiContent, sections[], sentences[], removed[] |
 * | `%patient` `%encounter` `%author` `%organization` | as signed in the envelope |
 * | `%healthscribe` | jobName or sessionId, mode (batch / streaming), transcript and clinicalDocument {uri, sha256, hashSigned, source} |
 * | `%signature` | kid, alg, thumbprint, signedAt |
 * | `%ids` | deterministic identifiers (src/map/ids.ts) |
 * | `%prior` | for revision > 1: revision and identifier of the revision it replaces; else empty |
 * | `%retraction` | when rendering a retraction: revision, signedAt, replaces; `%note` is then the retracted revision |
 * | `%mapping` | id, version, digest |
 * | `%options` | the destination's rendering options |
 * | `%renderings` | the note rendered as text (per the mapping's renderings): contentType, data (base64), size, hash |
 *
 * A sentence: id, text, section, sectionKey, sectionIndex, index, number (1-based in the note), editClass,
 * aiDerived, elementId, provenanceId, provenanceUuid, draft {section, index}, evidence[] of
 * {segmentId, begin, end, role}.
 */
import type { VerifiedNote } from '../contract/verify.ts';
import type { Vars } from './expr.ts';
import {
  documentIdentifier,
  type NoteKey,
  noteIdentifier,
  resourceId,
  segmentSystem,
  uuidFor,
} from './ids.ts';

export interface MappingStamp {
  readonly id: string;
  readonly version: string;
  readonly digest: string;
}

/** Destination-specific choices a mapping may read. */
export interface RenderOptions {
  /** Rendering names to include (default: the mapping's defaultRenderings). */
  readonly renderings?: readonly string[];
  /** How a new revision is written to a FHIR server. */
  readonly write?: 'conditional-create' | 'put';
  /** Destination id (for per-destination identifiers such as MSH-10). */
  readonly destination?: string;
  /** Anything else a destination's mapping options carry (sending application, …). */
  readonly [k: string]: unknown;
}

/** "PAST_MEDICAL_HISTORY" → "Past Medical History": the title of a section the code table does not know. */
export function titleFromToken(token: string): string {
  return token
    .trim()
    .split(/[_\s]+/)
    .filter(Boolean)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1).toLowerCase())
    .join(' ');
}

function keyOf(note: VerifiedNote, revision = note.envelope.revision): NoteKey {
  return { tenant: note.envelope.tenant, noteId: note.envelope.noteId, revision };
}

/** Builds the variables for rendering `note` (for a retraction: the retracted revision, with `retraction` set). */
export function buildVars(
  note: VerifiedNote,
  mapping: MappingStamp,
  options: RenderOptions,
  retraction?: VerifiedNote,
): Vars {
  const env = note.envelope;
  const key = keyOf(note);
  const job = env.healthscribe.jobName ?? env.healthscribe.sessionId!;
  const segSystem = segmentSystem(env.tenant, job);
  const segments = note.transcript.segments;

  const sentences: Record<string, unknown>[] = [];
  const sections = env.note.sections.map((section, sectionIndex) => {
    const own = note.sentences
      .filter((s) => s.sectionIndex === sectionIndex)
      .map((s) => {
        const sentence = {
          id: s.id,
          text: s.text,
          section: s.section,
          sectionKey: s.section.trim().toUpperCase(),
          sectionIndex,
          index: s.index,
          number: sentences.length + 1,
          editClass: s.editClass,
          aiDerived: s.editClass !== 'clinician-added',
          elementId: `sentence-${s.id}`,
          provenanceId: resourceId(key, 'Provenance', s.id),
          provenanceUuid: uuidFor(key, 'Provenance', s.id),
          ...(s.draft ? { draft: { section: s.draft.section, index: s.draft.index } } : {}),
          evidence: s.evidence.map((segmentId) => {
            const seg = segments.get(segmentId)!;
            return {
              segmentId,
              begin: seg.BeginAudioTime,
              end: seg.EndAudioTime,
              role: seg.ParticipantDetails.ParticipantRole,
            };
          }),
        };
        sentences.push(sentence);
        return sentence;
      });
    return {
      name: section.name,
      key: section.name.trim().toUpperCase(),
      index: sectionIndex,
      number: sectionIndex + 1,
      defaultTitle: titleFromToken(section.name),
      elementId: `section-${sectionIndex + 1}`,
      sentences: own,
    };
  });

  const prior =
    env.revision > 1
      ? {
          revision: env.revision - 1,
          identifier: noteIdentifier(keyOf(note, env.revision - 1)),
          documentIdentifier: documentIdentifier(keyOf(note, env.revision - 1)),
        }
      : null;

  const hs = env.healthscribe;
  const artifact = (a: VerifiedNote['artifacts']['transcript']) => ({
    ...(a.uri ? { uri: a.uri } : {}),
    sha256: a.sha256,
    hashSigned: a.hashSigned,
    source: a.source,
  });

  return {
    note: {
      tenant: env.tenant,
      noteId: env.noteId,
      revision: env.revision,
      status: env.status,
      ...(env.replaces ? { replaces: env.replaces } : {}),
      template: env.template,
      signedAt: env.signature.signedAt,
      hasAiContent: sentences.some((s) => s['aiDerived'] === true),
      sections,
      sentences,
      removed: note.removedDraftSentences.map((r) => ({ section: r.section, index: r.index, text: r.text })),
    },
    patient: env.patient,
    encounter: env.encounter,
    author: env.author,
    organization: env.organization,
    healthscribe: {
      ...(hs.jobName ? { jobName: hs.jobName } : {}),
      ...(hs.sessionId ? { sessionId: hs.sessionId } : {}),
      mode: hs.jobName ? 'batch' : 'streaming',
      ...(note.transcript.file.Conversation.ConversationId
        ? { conversationId: note.transcript.file.Conversation.ConversationId }
        : {}),
      transcript: artifact(note.artifacts.transcript),
      clinicalDocument: artifact(note.artifacts.clinicalDocument),
    },
    signature: {
      kid: note.signature.kid,
      alg: note.signature.alg,
      ...(note.signature.thumbprint ? { thumbprint: note.signature.thumbprint } : {}),
      signedAt: note.signature.signedAt,
      verified: note.signature.verified,
    },
    ids: {
      note: noteIdentifier(key),
      document: documentIdentifier(key),
      segmentSystem: segSystem,
      draftSystem: segSystem.replace(/:segment$/, ':draft'),
      signOffProvenanceId: resourceId(key, 'Provenance', '#sign-off'),
      signOffProvenanceUuid: uuidFor(key, 'Provenance', '#sign-off'),
      documentReferenceId: resourceId(key, 'DocumentReference'),
      documentReferenceUuid: uuidFor(key, 'DocumentReference'),
      compositionId: resourceId(key, 'Composition'),
      compositionUuid: uuidFor(key, 'Composition'),
      deviceId: resourceId({ tenant: env.tenant, noteId: `job:${job}`, revision: 0 }, 'Device'),
      deviceUuid: uuidFor({ tenant: env.tenant, noteId: `job:${job}`, revision: 0 }, 'Device'),
      bundleUuid: uuidFor(key, 'Bundle'),
    },
    prior,
    retraction: retraction
      ? {
          revision: retraction.envelope.revision,
          signedAt: retraction.envelope.signature.signedAt,
          replaces: retraction.envelope.replaces ?? null,
          ids: {
            document: documentIdentifier(keyOf(retraction)),
            bundleUuid: uuidFor(keyOf(retraction), 'Bundle'),
          },
        }
      : null,
    mapping: { id: mapping.id, version: mapping.version, digest: mapping.digest },
    options: { ...options },
  };
}
