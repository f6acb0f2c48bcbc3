/**
 * What a rendering did not carry from its input: the integration engineer's "which input did my mapping
 * ignore?". Measured on the delivered bytes, so it reports what the EHR actually receives:
 * - sentences: signed sentences whose text appears nowhere in the payload (in any encoding the format uses);
 * - evidence links: (sentence, segment) links, counted as carried when the segment id appears in the payload
 *   as a whole token, outside base64 attachment data;
 * - draft sentences the clinician removed, clinical insights and uncited transcript segments, which no shipped
 *   mapping carries (they stay in the ledger and the trace).
 */
import type { VerifiedNote } from '../contract/verify.ts';
import type { Rendering } from './engine.ts';

export interface Coverage {
  readonly sentences: {
    readonly total: number;
    readonly carried: number;
    readonly missing: readonly string[];
  };
  readonly evidenceLinks: { readonly total: number; readonly carried: number };
  readonly segments: { readonly total: number; readonly cited: number; readonly carried: number };
  readonly removedDraftSentences: { readonly total: number; readonly carried: number };
  readonly clinicalInsights: { readonly total: number; readonly carried: number };
}

/** Every form a text may take in a payload: as is, JSON-escaped, base64 inside an attachment. */
function payloadViews(r: Rendering): string[] {
  const views = [r.body];
  for (const m of r.body.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g))
    views.push(Buffer.from(m[1]!, 'base64').toString('utf8'));
  return views;
}

function appears(views: readonly string[], text: string): boolean {
  if (text === '') return true;
  const forms = [text, JSON.stringify(text).slice(1, -1)];
  return views.some((v) => forms.some((f) => v.includes(f)));
}

/**
 * Whether an id (a SegmentId, an InsightId) is carried: found as a whole token — not inside a longer word, a
 * hash or a version (a segment id `b3` is in most sha256 digests) — outside base64 attachment data.
 */
export function carriesId(text: string, id: string): boolean {
  if (id === '') return false;
  const word = /[A-Za-z0-9_-]/;
  for (let i = text.indexOf(id); i >= 0; i = text.indexOf(id, i + 1)) {
    const before = i > 0 ? text[i - 1]! : '';
    const after = text[i + id.length] ?? '';
    if (!word.test(before) && !word.test(after)) return true;
  }
  return false;
}

export function coverage(note: VerifiedNote, r: Rendering, decode?: (body: string) => string[]): Coverage {
  const views = [...payloadViews(r), ...(decode ? decode(r.body) : [])];
  const idText = r.body.replace(/"data":"[A-Za-z0-9+/=]*"/g, '""');
  const missing = note.sentences.filter((s) => !appears(views, s.text)).map((s) => s.id);
  let links = 0;
  let carriedLinks = 0;
  const cited = new Set<string>();
  for (const s of note.sentences) {
    for (const id of s.evidence) {
      links++;
      cited.add(id);
      if (carriesId(idText, id)) carriedLinks++;
    }
  }
  const carriedSegments = [...cited].filter((id) => carriesId(idText, id)).length;
  const insights = note.transcript.file.Conversation.ClinicalInsights;
  const removed = note.removedDraftSentences;
  return {
    sentences: { total: note.sentences.length, carried: note.sentences.length - missing.length, missing },
    evidenceLinks: { total: links, carried: carriedLinks },
    segments: { total: note.transcript.segments.size, cited: cited.size, carried: carriedSegments },
    removedDraftSentences: {
      total: removed.length,
      carried: removed.filter((d) => appears(views, d.text)).length,
    },
    clinicalInsights: {
      total: insights.length,
      carried: insights.filter((i) => carriesId(idText, i.InsightId)).length,
    },
  };
}

/** A few lines for people (no PHI: counts and sentence ids only). */
export function formatCoverage(c: Coverage): string {
  const line = (label: string, carried: number, total: number, extra = '') =>
    `  ${label.padEnd(26)} ${String(carried).padStart(5)} / ${String(total).padEnd(5)} carried${extra}`;
  return [
    line(
      'sentences',
      c.sentences.carried,
      c.sentences.total,
      c.sentences.missing.length ? `  (not carried: ${c.sentences.missing.join(', ')})` : '',
    ),
    line('evidence links', c.evidenceLinks.carried, c.evidenceLinks.total),
    line(
      'cited transcript segments',
      c.segments.carried,
      c.segments.cited,
      `  (${c.segments.total - c.segments.cited} of ${c.segments.total} segments cited by no sentence)`,
    ),
    line('removed draft sentences', c.removedDraftSentences.carried, c.removedDraftSentences.total),
    line('clinical insights', c.clinicalInsights.carried, c.clinicalInsights.total),
  ].join('\n');
}
