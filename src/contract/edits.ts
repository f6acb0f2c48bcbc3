/**
 * Edit classification (spec/signed-note-envelope.md § Identity and lifecycle rules): which sentences the AI
 * wrote verbatim, which the clinician edited, which the clinician added, and which draft sentences the
 * clinician removed. This is the provenance later stages carry to the EHR and to the auditor.
 */
import type { Envelope } from './envelope.ts';
import { type ClinicalDocument, sectionKey } from './healthscribe.ts';

export type EditClass = 'ai-verbatim' | 'clinician-edited' | 'clinician-added';
export const EDIT_CLASSES: readonly EditClass[] = ['ai-verbatim', 'clinician-edited', 'clinician-added'];

/** One signed sentence with its position, evidence and edit class. */
export interface ClassifiedSentence {
  readonly id: string;
  /** The note section's name as signed (a HealthScribe SectionName token). */
  readonly section: string;
  /** Position of the section in the note and of the sentence in its section (0-based). */
  readonly sectionIndex: number;
  readonly index: number;
  readonly text: string;
  readonly evidence: readonly string[];
  readonly draft?: { readonly section: string; readonly index: number; readonly text: string };
  readonly editClass: EditClass;
}

/** A draft sentence no signed sentence points to. */
export interface RemovedDraftSentence {
  readonly section: string;
  readonly index: number;
  readonly text: string;
}

/** Unicode's White_Space property (TAB–CR, space, NEL, NBSP, the Zs spaces, LS, PS, …). */
const WS_RUN = /\p{White_Space}+/gu;
const WS_EDGES = /^\p{White_Space}+|\p{White_Space}+$/gu;

/**
 * The spec's norm(x): trim, drop one leading "- ", replace every run of whitespace with one space, trim.
 * "Whitespace" is Unicode's White_Space property — not JavaScript's `\s` / `trim`, which also count U+FEFF (an
 * invisible zero-width no-break space: a sentence holding one is not the draft's words) and miss U+0085 (NEL).
 */
export function norm(x: string): string {
  let s = x.replace(WS_EDGES, '');
  if (s.startsWith('- ')) s = s.slice(2);
  return s.replace(WS_RUN, ' ').replace(WS_EDGES, '');
}

/** Classifies every sentence. Draft pointers must already be checked (see `checkReferences`). */
export function classifySentences(
  env: Envelope,
  doc: ClinicalDocument,
): {
  sentences: ClassifiedSentence[];
  removed: RemovedDraftSentence[];
} {
  const pointed = new Set<string>();
  const sentences: ClassifiedSentence[] = [];
  env.note.sections.forEach((section, sectionIndex) => {
    section.sentences.forEach((s, index) => {
      const base = {
        id: s.id,
        section: section.name,
        sectionIndex,
        index,
        text: s.text,
        evidence: s.evidence,
      };
      if (!s.draft) {
        sentences.push({ ...base, editClass: 'clinician-added' });
        return;
      }
      const key = sectionKey(s.draft.section);
      pointed.add(`${key}\u0000${s.draft.index}`);
      const draftText = doc.sections.get(key)?.Summary[s.draft.index]?.SummarizedSegment ?? '';
      sentences.push({
        ...base,
        draft: { section: s.draft.section, index: s.draft.index, text: draftText },
        editClass: norm(s.text) === norm(draftText) ? 'ai-verbatim' : 'clinician-edited',
      });
    });
  });
  const removed: RemovedDraftSentence[] = [];
  // A retraction (entered-in-error) carries no sentences: it withdraws the note, it does not remove its draft.
  if (env.status === 'entered-in-error') return { sentences, removed };
  for (const [key, section] of doc.sections) {
    section.Summary.forEach((item, index) => {
      if (norm(item.SummarizedSegment) === '') return; // empty draft items are not sentences (quirk Q4)
      if (!pointed.has(`${key}\u0000${index}`)) {
        removed.push({ section: section.SectionName, index, text: item.SummarizedSegment });
      }
    });
  }
  return { sentences, removed };
}

/** Counts by edit class, in the fixed order of EDIT_CLASSES. */
export function countEditClasses(sentences: readonly ClassifiedSentence[]): Record<EditClass, number> {
  const out: Record<EditClass, number> = { 'ai-verbatim': 0, 'clinician-edited': 0, 'clinician-added': 0 };
  for (const s of sentences) out[s.editClass]++;
  return out;
}
