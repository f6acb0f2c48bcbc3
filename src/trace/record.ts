/**
 * What the trace needs that the envelope alone does not give, computed once at intake from the VerifiedNote and
 * stored with the revision (`note_revisions.trace`, migration 002): each sentence's edit class, draft and
 * evidence segments (speaker, audio times, text), the draft sentences the clinician removed, and the whole
 * transcript's segments for context. The transcript file itself is not stored, and for S3 / file / job
 * artifacts it may be gone by the time an auditor asks.
 *
 * The evidence is stored expanded in each sentence, so the usual trace reads `sentences` and never the (much
 * larger) `transcript` member, which is read only when asked for (the auditor's page).
 */
import type { ClassifiedSentence } from '../contract/edits.ts';
import type { Transcript } from '../contract/healthscribe.ts';
import type { VerifiedNote } from '../contract/verify.ts';
import { ScribeError } from '../errors.ts';
import type { TraceRemovedDraftSentence, TraceSegment, TraceSentence } from './types.ts';

/** Bump when the stored shape changes; readers accept every version they know. */
export const TRACE_DATA_VERSION = 1;

/** The `note_revisions.trace` column (jsonb). */
export interface TraceData {
  readonly v: typeof TRACE_DATA_VERSION;
  readonly jobName?: string;
  readonly sessionId?: string;
  readonly sentences: readonly TraceSentence[];
  readonly removedDraftSentences: readonly TraceRemovedDraftSentence[];
  /** Every transcript segment, in transcript order. */
  readonly transcript: readonly TraceSegment[];
}

/** The trace data of a verified note (pure; a few ms for a 70-minute encounter). */
export function traceData(note: VerifiedNote): TraceData {
  const hs = note.envelope.healthscribe;
  const transcript = transcriptSegments(note.transcript);
  return {
    v: TRACE_DATA_VERSION,
    ...(hs.jobName ? { jobName: hs.jobName } : {}),
    ...(hs.sessionId ? { sessionId: hs.sessionId } : {}),
    sentences: traceSentences(note.sentences, transcript),
    removedDraftSentences: note.removedDraftSentences.map((r) => ({
      section: r.section,
      index: r.index,
      text: r.text,
    })),
    transcript,
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
    id: s.id,
    section: s.section,
    sectionIndex: s.sectionIndex,
    index: s.index,
    text: s.text,
    editClass: s.editClass,
    ...(s.draft ? { draft: { section: s.draft.section, index: s.draft.index, text: s.draft.text } } : {}),
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
