/**
 * The data a mapping sees: FHIRPath environment variables built from a verified note. Pure: no IO, no clock.
 * Every value is JSON-like (no `resourceType` members, no nested arrays, no nulls inside arrays), which is the
 * domain the fast FHIRPath subset is proven on (expr.property.test.ts). A few members are prototype getters
 * computed on first read (sentence ids and evidence, %ids): FHIRPath — both fhirpath.js and the fast subset —
 * reads them like fields, but JSON.stringify does not see them.
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
 * A section: name, key, index, number, defaultTitle, elementId, sentences[], blank (no sentence with text).
 * A sentence: id, text, section, sectionKey, sectionIndex, index, number (1-based in the note), editClass,
 * aiDerived, blank (no non-whitespace character), elementId, provenanceId, provenanceUuid, draft {section, index},
 * evidence[] of {segmentId, begin, end, role}.
 */
import type { ClassifiedSentence } from '../contract/edits.ts';
import { sectionKey } from '../contract/healthscribe.ts';
import type { VerifiedNote } from '../contract/verify.ts';
import type { Vars } from './expr.ts';
import {
  documentIdentifier,
  type NoteKey,
  noteIdentifier,
  resourceId,
  resourceIds,
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

/** Some character that is not whitespace — the test FHIR's txt-2 applies to narrative (as the validators read it). */
const NON_BLANK = /\S/;

/**
 * A sentence as mappings see it. The ids and the resolved evidence are computed on first read (prototype
 * getters, memoised): most mappings read neither, hashing costs microseconds per id, and a typical note has
 * ~270 evidence links. FHIRPath reads members with plain property access, so getters behave like fields.
 */
class SentenceVar {
  readonly id: string;
  readonly text: string;
  readonly section: string;
  readonly sectionKey: string;
  readonly sectionIndex: number;
  readonly index: number;
  readonly number: number;
  readonly editClass: string;
  readonly aiDerived: boolean;
  /**
   * The text has no non-whitespace character (empty, or blanks only: the envelope allows it). FHIR narrative
   * needs some non-whitespace content (txt-2), so the FHIR mappings leave such a sentence out of the
   * Composition and give it no Provenance; its evidence stays in the ledger and the trace.
   */
  readonly blank: boolean;
  readonly elementId: string;
  readonly draft?: { readonly section: string; readonly index: number };
  readonly #key: NoteKey;
  readonly #source: ClassifiedSentence;
  readonly #segments: VerifiedNote['transcript']['segments'];
  #provenance?: { id: string; uuid: string };
  #evidence?: unknown[];

  constructor(
    s: ClassifiedSentence,
    number: number,
    key: NoteKey,
    segments: VerifiedNote['transcript']['segments'],
  ) {
    this.id = s.id;
    this.text = s.text;
    this.section = s.section;
    this.sectionKey = sectionKey(s.section);
    this.sectionIndex = s.sectionIndex;
    this.index = s.index;
    this.number = number;
    this.editClass = s.editClass;
    this.aiDerived = s.editClass !== 'clinician-added';
    this.blank = !NON_BLANK.test(s.text);
    this.elementId = `sentence-${s.id}`;
    if (s.draft) this.draft = { section: s.draft.section, index: s.draft.index };
    this.#key = key;
    this.#source = s;
    this.#segments = segments;
  }

  get provenanceId(): string {
    this.#provenance ??= resourceIds(this.#key, 'Provenance', this.id);
    return this.#provenance.id;
  }

  get provenanceUuid(): string {
    this.#provenance ??= resourceIds(this.#key, 'Provenance', this.id);
    return this.#provenance.uuid;
  }

  get evidence(): unknown[] {
    this.#evidence ??= this.#source.evidence.map((segmentId) => {
      const seg = this.#segments.get(segmentId)!;
      const role = seg.ParticipantDetails.ParticipantRole;
      return {
        segmentId,
        begin: seg.BeginAudioTime,
        end: seg.EndAudioTime,
        // An empty role, or one of only spaces, says nothing: absent (FHIR strings need non-whitespace).
        ...(NON_BLANK.test(role) ? { role } : {}),
      };
    });
    return this.#evidence;
  }
}

/** `%ids`: every deterministic identifier of the note, computed on first read. */
class NoteIds {
  readonly #key: NoteKey;
  readonly #jobKey: NoteKey;
  readonly segmentSystem: string;
  readonly #memo = new Map<string, unknown>();

  constructor(key: NoteKey, jobKey: NoteKey, segmentSystem: string) {
    this.#key = key;
    this.#jobKey = jobKey;
    this.segmentSystem = segmentSystem;
  }

  #once<T>(name: string, f: () => T): T {
    let v = this.#memo.get(name) as T | undefined;
    if (v === undefined) {
      v = f();
      this.#memo.set(name, v);
    }
    return v;
  }

  get note() {
    return this.#once('note', () => noteIdentifier(this.#key));
  }
  get document() {
    return this.#once('document', () => documentIdentifier(this.#key));
  }
  get draftSystem() {
    return this.segmentSystem.replace(/:segment$/, ':draft');
  }
  get signOffProvenanceId() {
    return this.#once('spi', () => resourceIds(this.#key, 'Provenance', '#sign-off').id);
  }
  get signOffProvenanceUuid() {
    return this.#once('spu', () => resourceIds(this.#key, 'Provenance', '#sign-off').uuid);
  }
  get documentReferenceId() {
    return this.#once('dri', () => resourceId(this.#key, 'DocumentReference'));
  }
  get documentReferenceUuid() {
    return this.#once('dru', () => uuidFor(this.#key, 'DocumentReference'));
  }
  get compositionId() {
    return this.#once('ci', () => resourceId(this.#key, 'Composition'));
  }
  get compositionUuid() {
    return this.#once('cu', () => uuidFor(this.#key, 'Composition'));
  }
  get deviceId() {
    return this.#once('di', () => resourceId(this.#jobKey, 'Device'));
  }
  get deviceUuid() {
    return this.#once('du', () => uuidFor(this.#jobKey, 'Device'));
  }
  get bundleUuid() {
    return this.#once('bu', () => uuidFor(this.#key, 'Bundle'));
  }
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
  const jobKey: NoteKey = { tenant: env.tenant, noteId: `job:${job}`, revision: 0 };

  const sentences: SentenceVar[] = [];
  const sections = env.note.sections.map((section, sectionIndex) => {
    const own = note.sentences
      .filter((s) => s.sectionIndex === sectionIndex)
      .map((s) => {
        const sentence = new SentenceVar(s, sentences.length + 1, key, segments);
        sentences.push(sentence);
        return sentence;
      });
    return {
      name: section.name,
      key: sectionKey(section.name),
      index: sectionIndex,
      number: sectionIndex + 1,
      defaultTitle: titleFromToken(section.name),
      elementId: `section-${sectionIndex + 1}`,
      sentences: own,
      /** No sentence with text (none at all, or only blank ones). */
      blank: own.every((s) => s.blank),
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
      // The transcript's language (BCP 47; AWS's only value today is en-US), en-US when it names none.
      language: note.transcript.file.Conversation.LanguageCode ?? 'en-US',
      hasAiContent: sentences.some((s) => s.aiDerived),
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
    ids: new NoteIds(key, jobKey, segSystem),
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
