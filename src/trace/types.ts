/**
 * The provenance trace of a delivered document (spec/PRODUCT.md "The trace endpoint", issue 6 part 1): every
 * revision of a note with its lifecycle, signature, HealthScribe source and artifact hashes, each sentence with
 * its edit class and evidence segments, the draft sentences the clinician removed, and each destination's
 * rendering, attempts and receipts.
 *
 * This is the JSON `GET /v1/trace` answers and `scribe-bridge trace --json` prints, and the input of the FHIR
 * Provenance + AuditEvent export. Members of the PRODUCT.md shape are never removed or renamed; optional members
 * are absent (never null) when unknown. Times are RFC 3339 strings (UTC, `toISOString()`); audio times are
 * seconds, exactly as the transcript file gives them. The trace carries PHI (sentence and transcript text): it is
 * for the auditor role only and every read is audited.
 */
import type { EditClass } from '../contract/edits.ts';
import type { NoteStatus } from '../contract/envelope.ts';
import type { JsonValue } from '../contract/json.ts';
import type { DeliveryState, RevisionState } from '../ledger/types.ts';

/** The query forms of `GET /v1/trace` and `scribe-bridge trace`. */
export type TraceQuery =
  | { readonly kind: 'note'; readonly tenant: string; readonly noteId: string; readonly revision?: number }
  /** A FHIR identifier (`system|value`) that `destination` received. */
  | {
      readonly kind: 'identifier';
      readonly destination: string;
      readonly system: string;
      readonly value: string;
    }
  /** An id the EHR assigned (`Type/id`, from the delivery receipt); any entry of a transaction response. */
  | {
      readonly kind: 'resourceId';
      readonly destination: string;
      readonly resourceType: string;
      readonly id: string;
    }
  /** TXA-12.1 of an MDM message. */
  | { readonly kind: 'documentNumber'; readonly destination: string; readonly documentNumber: string }
  /** MSH-10 of an HL7 message. */
  | { readonly kind: 'controlId'; readonly destination: string; readonly controlId: string };

/** What the query matched: the revision (and destination) the identifier belongs to. */
export interface TraceMatch {
  readonly revision: number;
  readonly destination?: string;
}

/** One transcript segment, with AWS's values (the transcript is the source of truth for these). */
export interface TraceSegment {
  readonly segmentId: string;
  readonly beginAudioTime: number;
  readonly endAudioTime: number;
  /** `CLINICIAN`, `PATIENT`, `PATIENT_0`, … as HealthScribe gives it. */
  readonly participantRole: string;
  readonly content: string;
  /** The transcript's SectionDetails.SectionName, when present. */
  readonly sectionName?: string;
}

/** An evidence segment of a sentence: the transcript segment the sentence cites. */
export type TraceEvidence = TraceSegment;

export interface TraceSentence {
  readonly id: string;
  /** The note section's name as signed. */
  readonly section: string;
  /** Position of the section in the note and of the sentence in its section (0-based). */
  readonly sectionIndex: number;
  readonly index: number;
  readonly text: string;
  readonly editClass: EditClass;
  /** The AI draft sentence the clinician started from (absent for clinician-added sentences). */
  readonly draft?: { readonly section: string; readonly index: number; readonly text: string };
  /** In the order the envelope cites them. */
  readonly evidence: readonly TraceEvidence[];
}

export interface TraceRemovedDraftSentence {
  readonly section: string;
  readonly index: number;
  readonly text: string;
}

export interface TraceSignature {
  readonly kid: string;
  readonly alg: string;
  /** RFC 7638 thumbprint of the key that verified at intake. */
  readonly thumbprint?: string;
  readonly signedAt: string;
  /** The verification result: true when the signature verified at intake (and, if re-checked, now). */
  readonly verified: boolean;
  /** The signer: the envelope's author (the reviewing clinician) as signed. */
  readonly signer: {
    readonly identifier: readonly { readonly system: string; readonly value: string }[];
    readonly name?: JsonValue;
  };
}

/** A HealthScribe artifact as resolved and hashed at intake. */
export interface TraceArtifact {
  readonly name: string;
  /** `inline`, `uri` or `job`. */
  readonly source: string;
  readonly uri?: string;
  readonly sha256: string;
  /** True when the envelope's signed content carries this hash (false: computed at intake only). */
  readonly hashSigned: boolean;
}

export interface TraceHealthScribe {
  /** The batch MedicalScribeJobName, or */
  readonly jobName?: string;
  /** the streaming SessionId. */
  readonly sessionId?: string;
  readonly artifacts: readonly TraceArtifact[];
}

/** One lifecycle event of a revision, from the audit log (PHI-free). */
export interface TraceEvent {
  readonly seq: number;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly destination?: string;
  readonly details?: JsonValue;
}

export interface TraceAttempt {
  readonly attempt: number;
  readonly at: string;
  /** `delivered` | `rejected` | `retry` | `ambiguous` | `failed` | `lease-expired`. */
  readonly outcome: string;
  readonly durationMs?: number;
  readonly httpStatus?: number;
  /** HL7 MSA-1. */
  readonly ackCode?: string;
  readonly errorCode?: string;
  /** sha256 of the bytes actually sent, when recorded. */
  readonly payloadSha256?: string;
  /** FHIR: {status, resourceType, id, versionId, location, entries[]}; MLLP: {controlId, msa2, reason}. */
  readonly receipt?: JsonValue;
}

export interface TraceDelivery {
  readonly destination: string;
  /** The delivery state (`delivered`, `pending`, …). */
  readonly status: DeliveryState;
  readonly mapping: { readonly id: string; readonly version: string; readonly digest: string };
  readonly contentType: string;
  /** sha256 of the rendered payload as recorded at intake. */
  readonly payloadSha256: string;
  /** What this destination can be asked about: FHIR identifiers, or MDM document number + MSH-10. */
  readonly identifiers: readonly JsonValue[];
  readonly attempts: readonly TraceAttempt[];
  /** The final receipt (EHR id and version, or the ACK), when delivered. */
  readonly receipt?: JsonValue;
  readonly lastErrorCode?: string;
  readonly updatedAt: string;
}

/** Checks the trace makes when it is read (not just what intake recorded). */
export interface TraceChecks {
  /** sha256 of the stored envelope's canonical signed content equals the recorded content hash. */
  readonly contentSha256: {
    readonly recorded: string;
    readonly computed: string;
    readonly ok: boolean;
  };
  /** The signature re-verified now with the tenant's current keys (absent when no keys were available). */
  readonly signature?: { readonly ok: boolean; readonly code?: string };
  /** sha256 of each stored rendering's payload equals its recorded payloadSha256. */
  readonly payloads: readonly {
    readonly destination: string;
    readonly ok: boolean;
  }[];
  /** Artifact hashes recorded at intake equal the envelope's signed hashes (where the envelope gives one). */
  readonly artifacts: readonly { readonly name: string; readonly ok: boolean }[];
}

export interface TraceRevision {
  readonly revision: number;
  readonly status: NoteStatus;
  readonly replaces?: number;
  /** The revision that replaced this one (the next revision), if any. */
  readonly replacedBy?: number;
  /** Its place in the lifecycle (`accepted`, `waiting`, `dead-lettered`). */
  readonly state: RevisionState;
  readonly stateReason?: string;
  readonly template: string;
  readonly source: string;
  readonly receivedAt: string;
  readonly contentSha256: string;
  readonly signature: TraceSignature;
  readonly healthscribe: TraceHealthScribe;
  readonly sentences: readonly TraceSentence[];
  readonly removedDraftSentences: readonly TraceRemovedDraftSentence[];
  /**
   * The transcript's segments, in transcript order, for context around the evidence (the whole transcript;
   * absent for revisions recorded before the trace data was stored).
   */
  readonly transcript?: readonly TraceSegment[];
  readonly deliveries: readonly TraceDelivery[];
  /** The revision's audit records (intake, duplicate, rendering, attempts …), oldest first; reads are not listed. */
  readonly events: readonly TraceEvent[];
  readonly checks: TraceChecks;
}

export interface Trace {
  readonly tenant: string;
  readonly noteId: string;
  readonly query: TraceQuery;
  readonly match: TraceMatch;
  /** Oldest first; with a `revision` query, only that revision. */
  readonly revisions: readonly TraceRevision[];
  /** Audit records about the whole note rather than one revision, oldest first (reads of the note are not listed). */
  readonly events?: readonly TraceEvent[];
}
