/**
 * What the trace needs that the envelope alone does not give, computed once at intake from the VerifiedNote and
 * stored with the revision (`note_revisions.trace`, migrations 002 and 007): each sentence's edit class, draft and
 * evidence SegmentIds, the draft sentences the clinician removed, and the whole transcript's segments (speaker,
 * audio times, text) — the transcript file itself is not stored, and for S3 / file / job artifacts it may be gone
 * by the time an auditor asks.
 *
 * Stored form 2 cites each evidence segment by its SegmentId and keeps every segment once, in `transcript`; the
 * trace expands the citations when it reads them ({@link expandTraceData}). Form 1 (revisions recorded before
 * migration 007) held a copy of the segment in every citation: ~270 copies for a typical note, 40% of the data
 * written per note (110 KB instead of 64 KB) and as much JSON for the service to write and PostgreSQL to store.
 */
import type { ClassifiedSentence } from '../contract/edits.ts';
import type { Transcript } from '../contract/healthscribe.ts';
import type { VerifiedNote } from '../contract/verify.ts';
import { ScribeError } from '../errors.ts';
import type { TraceRemovedDraftSentence, TraceSegment, TraceSentence } from './types.ts';

/** Bump when the stored shape changes; readers accept every version they know. */
export const TRACE_DATA_VERSION = 2;

/** The trace data as the trace uses it: every sentence's evidence expanded to its segments. */
export interface TraceData {
  readonly jobName?: string;
  readonly sessionId?: string;
  readonly sentences: readonly TraceSentence[];
  readonly removedDraftSentences: readonly TraceRemovedDraftSentence[];
  /** Every transcript segment, in transcript order. */
  readonly transcript: readonly TraceSegment[];
}

/** A sentence as stored: its evidence as SegmentIds, in the order the envelope cites them. */
export type StoredTraceSentence = Omit<TraceSentence, 'evidence'> & { readonly evidence: readonly string[] };

/** The `note_revisions.trace` column (json), form 2. */
export interface StoredTraceData extends Omit<TraceData, 'sentences'> {
  readonly v: typeof TRACE_DATA_VERSION;
  readonly sentences: readonly StoredTraceSentence[];
}

/** The trace data of a verified note, as stored (pure; a few ms for a 70-minute encounter). */
export function traceData(note: VerifiedNote): StoredTraceData {
  const hs = note.envelope.healthscribe;
  const transcript = transcriptSegments(note.transcript);
  const known = new Set(transcript.map((s) => s.segmentId));
  return {
    v: TRACE_DATA_VERSION,
    ...(hs.jobName ? { jobName: hs.jobName } : {}),
    ...(hs.sessionId ? { sessionId: hs.sessionId } : {}),
    sentences: note.sentences.map((s) => ({
      ...sentenceOf(s),
      evidence: s.evidence.map((id) => {
        // verifyEnvelope checked every reference; a miss here is a bug, not bad input.
        if (!known.has(id))
          throw new ScribeError('INTERNAL', `segment ${JSON.stringify(id)} is not in the transcript`);
        return id;
      }),
    })),
    removedDraftSentences: note.removedDraftSentences.map((r) => ({
      section: r.section,
      index: r.index,
      text: r.text,
    })),
    transcript,
  };
}

/**
 * The stored trace data (form 1 or 2, as read from the column) with every citation expanded. A citation form 2
 * stores is a SegmentId of its own `transcript`; one that is not there means the column was altered (INTERNAL).
 */
export function expandTraceData(stored: unknown): TraceData {
  const d = stored as {
    v?: number;
    jobName?: string;
    sessionId?: string;
    sentences?: readonly (Omit<TraceSentence, 'evidence'> & {
      evidence: readonly (string | TraceSegment)[];
    })[];
    removedDraftSentences?: readonly TraceRemovedDraftSentence[];
    transcript?: readonly TraceSegment[];
  };
  if (d.v !== 1 && d.v !== 2)
    throw new ScribeError(
      'INTERNAL',
      `the stored trace data has form ${JSON.stringify(d.v)}, which this version does not read`,
    );
  const transcript = d.transcript ?? [];
  const byId = new Map<string, TraceSegment>();
  for (const s of transcript) if (!byId.has(s.segmentId)) byId.set(s.segmentId, s);
  return {
    ...(d.jobName ? { jobName: d.jobName } : {}),
    ...(d.sessionId ? { sessionId: d.sessionId } : {}),
    sentences: (d.sentences ?? []).map((s) => ({
      ...s,
      evidence: s.evidence.map((e) => {
        if (typeof e !== 'string') return e; // form 1: the segment itself
        const seg = byId.get(e);
        if (!seg)
          throw new ScribeError(
            'INTERNAL',
            `the stored trace cites segment ${JSON.stringify(e)}, which it lacks`,
          );
        return seg;
      }),
    })),
    removedDraftSentences: d.removedDraftSentences ?? [],
    transcript,
  };
}

function sentenceOf(s: ClassifiedSentence): Omit<TraceSentence, 'evidence'> {
  return {
    id: s.id,
    section: s.section,
    sectionIndex: s.sectionIndex,
    index: s.index,
    text: s.text,
    editClass: s.editClass,
    ...(s.draft ? { draft: { section: s.draft.section, index: s.draft.index, text: s.draft.text } } : {}),
  };
}

/** Sentences with their evidence segments expanded (every SegmentId must be in the transcript). */
export function traceSentences(
  sentences: readonly ClassifiedSentence[],
  transcript: readonly TraceSegment[],
): TraceSentence[] {
  const byId = new Map<string, TraceSegment>();
  for (const s of transcript) if (!byId.has(s.segmentId)) byId.set(s.segmentId, s);
  return sentences.map((s) => ({
    ...sentenceOf(s),
    evidence: s.evidence.map((id) => {
      const seg = byId.get(id);
      // verifyEnvelope checked every reference; a miss here is a bug, not bad input.
      if (!seg) throw new ScribeError('INTERNAL', `segment ${JSON.stringify(id)} is not in the transcript`);
      return seg;
    }),
  }));
}

/** Every segment of a transcript, in its order, with AWS's values. */
export function transcriptSegments(t: Transcript): TraceSegment[] {
  return t.file.Conversation.TranscriptSegments.map((s) => ({
    segmentId: s.SegmentId,
    beginAudioTime: s.BeginAudioTime,
    endAudioTime: s.EndAudioTime,
    participantRole: s.ParticipantDetails.ParticipantRole,
    content: s.Content,
    ...(s.SectionDetails?.SectionName ? { sectionName: s.SectionDetails.SectionName } : {}),
  }));
}
