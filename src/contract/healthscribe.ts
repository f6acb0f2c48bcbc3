/**
 * AWS HealthScribe output files: the transcript (`transcript.json`) and the clinical documentation
 * (batch `summary.json`, streaming `clinicalDoc.json`). Field names are AWS's, exactly.
 *
 * Parsing is tolerant of what real output does (reference/healthscribe.md §3–4): unknown members are kept
 * (`looseObject`), word items may carry `Alternatives[]` or item-level `Content`, item types come in either
 * case, sections may be empty or in any order, span end offsets are inclusive. The preview-era format
 * (`Subsections` / `EvidenceMap`) is refused with a message that says so.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { z } from 'zod';
import { ScribeError } from '../errors.ts';
import { FORBIDDEN_CONTROL, formatPath, type JsonValue, type PathSegment } from './json.ts';
import { locatedIssues, schemaError } from './zod-issues.ts';

const seconds = z.number().finite().nonnegative();

/**
 * HealthScribe text the product delivers or keeps in the ledger's trace (segment ids and text, speaker roles,
 * section names, draft sentences, the conversation's ids): the envelope's rule for note text holds for it too —
 * TAB, LF and CR but no other control character, which would break HL7 framing and which FHIR strings (and
 * PostgreSQL's jsonb) cannot hold — and no lone surrogate (`\ud800` escaped in the JSON: not text, and refused by
 * jsonb). Refused here, named by its path, rather than failing later in the ledger or at each destination as if
 * the mapping were at fault.
 */
const carriedText = z
  .string()
  .refine((s) => !FORBIDDEN_CONTROL.test(s), {
    message:
      'contains a control character (U+0000–U+0008, U+000B, U+000C, U+000E–U+001F or U+007F); text the EHR receives may hold TAB, LF and CR only',
  })
  .refine((s) => s.isWellFormed(), {
    message: 'contains a lone UTF-16 surrogate (\\uD800–\\uDFFF unpaired)',
  });

const Span = z.looseObject({
  SegmentId: z.string(),
  BeginCharacterOffset: z.number().int().nonnegative(),
  /** inclusive (HealthScribe's convention, unlike Comprehend Medical's exclusive EndOffset) */
  EndCharacterOffset: z.number().int().nonnegative(),
  Content: z.string().optional(),
});

const ClinicalInsight = z.looseObject({
  InsightId: z.string(),
  InsightType: z.string(),
  Category: z.string().optional(),
  Type: z.string().optional(),
  Spans: z.array(Span).default([]),
  Attributes: z
    .array(
      z.looseObject({
        AttributeId: z.string().optional(),
        Type: z.string().optional(),
        Spans: z.array(Span).default([]),
      }),
    )
    .optional(),
});

/** A word-level transcript item (reference/healthscribe.md §3.2): `Alternatives[]` (batch) or item-level `Content`. */
export interface HsTranscriptItem {
  readonly Alternatives?: readonly { readonly Confidence?: number | null; readonly Content: string }[];
  readonly Confidence?: number | null;
  readonly Content?: string;
  readonly BeginAudioTime: number;
  readonly EndAudioTime: number;
  readonly Type: string;
  readonly [member: string]: unknown;
}

/**
 * The word-level items are checked with ajv, in place: a typical transcript has ~1,600 of them and zod's parse
 * copies every object it checks (half of all the memory a note's intake allocated, and ~0.6 ms of CPU per note,
 * for items the product keeps but never reads). ajv's compiled check allocates nothing: ~0.06 ms. Same rules as
 * the rest of the file: unknown members kept, either item shape (Q9), numbers where AWS gives numbers.
 */
const TRANSCRIPT_ITEMS_SCHEMA = {
  type: 'array',
  items: {
    type: 'object',
    required: ['BeginAudioTime', 'EndAudioTime', 'Type'],
    properties: {
      Alternatives: {
        type: 'array',
        items: {
          type: 'object',
          required: ['Content'],
          properties: { Confidence: { type: ['number', 'null'] }, Content: { type: 'string' } },
        },
      },
      Confidence: { type: ['number', 'null'] },
      Content: { type: 'string' },
      BeginAudioTime: { type: 'number', minimum: 0 },
      EndAudioTime: { type: 'number', minimum: 0 },
      Type: { type: 'string' },
    },
    // Either shape: item-level Content, else a non-empty Alternatives[]. As if/else rather than anyOf, whose failed
    // first branch would allocate an error object for every item of the other shape.
    if: { required: ['Content'] },
    else: { required: ['Alternatives'], properties: { Alternatives: { type: 'array', minItems: 1 } } },
  },
} as const;

const validateItems = new Ajv({
  allErrors: true,
  strict: true,
  // The either-shape rule names members the enclosing object defines.
  strictRequired: false,
}).compile<HsTranscriptItem[]>(TRANSCRIPT_ITEMS_SCHEMA);

/** ajv's errors as zod issues at the item's path (ajv's messages name types and rules, never values). */
function itemIssues(errors: readonly ErrorObject[]): { path: PathSegment[]; message: string }[] {
  const issues: { path: PathSegment[]; message: string }[] = [];
  for (const e of errors) {
    // The else branch of the either-shape rule fails together with it; its own message says what is wanted.
    if (e.schemaPath.startsWith('#/items/else/')) continue;
    const path: PathSegment[] = e.instancePath
      .split('/')
      .slice(1)
      .map((p) => (/^\d+$/.test(p) ? Number(p) : p.replace(/~1/g, '/').replace(/~0/g, '~')));
    if (e.keyword === 'if')
      issues.push({ path, message: 'a transcript item needs Alternatives[] or an item-level Content' });
    else if (e.keyword === 'required')
      issues.push({
        path: [...path, (e.params as { missingProperty: string }).missingProperty],
        message: 'is required',
      });
    else issues.push({ path, message: e.message ?? `fails ${e.keyword}` });
  }
  return issues;
}

const TranscriptItems = z
  .custom<HsTranscriptItem[]>()
  .superRefine((items, ctx) => {
    if (validateItems(items)) return;
    for (const issue of itemIssues(validateItems.errors ?? [])) ctx.addIssue({ code: 'custom', ...issue });
  })
  .default([]);

const TranscriptSegment = z.looseObject({
  SegmentId: carriedText.min(1),
  Content: carriedText,
  BeginAudioTime: seconds,
  EndAudioTime: seconds,
  ParticipantDetails: z.looseObject({ ParticipantRole: carriedText }),
  SectionDetails: z.looseObject({ SectionName: carriedText }).optional(),
});

const TranscriptFileSchema = z.looseObject({
  Conversation: z.looseObject({
    ConversationId: carriedText.optional(),
    JobName: carriedText.optional(),
    JobType: z.string().optional(),
    SessionId: carriedText.optional(),
    // Carried as the note's language (attachment.language, the HTML's lang): a BCP 47 tag like en-US.
    LanguageCode: z
      .string()
      .regex(/^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/, 'must be a BCP 47 language tag like en-US')
      .optional(),
    ClinicalInsights: z.array(ClinicalInsight).default([]),
    TranscriptItems,
    TranscriptSegments: z.array(TranscriptSegment),
  }),
});

const SummaryItem = z.looseObject({
  SummarizedSegment: carriedText,
  // Always present in observed output; tolerated when absent (an item with no evidence).
  EvidenceLinks: z.array(z.looseObject({ SegmentId: z.string() })).default([]),
});

const Section = z.looseObject({ SectionName: carriedText.min(1), Summary: z.array(SummaryItem) });

const ClinicalDocumentFileSchema = z.looseObject({
  ClinicalDocumentation: z.looseObject({ Sections: z.array(Section), SessionId: carriedText.optional() }),
});

export type HsTranscriptFile = z.infer<typeof TranscriptFileSchema>;
export type HsTranscriptSegment = z.infer<typeof TranscriptSegment>;
export type HsClinicalInsight = z.infer<typeof ClinicalInsight>;
export type HsClinicalDocumentFile = z.infer<typeof ClinicalDocumentFileSchema>;
export type HsSection = z.infer<typeof Section>;
export type HsSummaryItem = z.infer<typeof SummaryItem>;

/** A parsed transcript with its segments indexed by SegmentId. */
export interface Transcript {
  readonly file: HsTranscriptFile;
  readonly segments: ReadonlyMap<string, HsTranscriptSegment>;
  /** The batch job name or streaming session id the file names, if any. */
  readonly jobName?: string;
  readonly sessionId?: string;
}

/** A parsed clinical document with sections indexed by upper-cased SectionName (first occurrence wins). */
export interface ClinicalDocument {
  readonly file: HsClinicalDocumentFile;
  readonly sections: ReadonlyMap<string, HsSection>;
}

/**
 * Section names are matched case-insensitively, and a space is the same as an underscore: AWS publishes no enum,
 * and its guide writes the display form ("CHIEF COMPLAINT") where the output has the token (CHIEF_COMPLAINT)
 * (reference/healthscribe.md §0.3).
 */
export function sectionKey(name: string): string {
  return name
    .trim()
    .toUpperCase()
    .replace(/[\s_]+/g, '_');
}

/** The word text of an item, whichever shape it has (Q9). */
export function itemContent(item: HsTranscriptItem): string {
  return item.Alternatives?.[0]?.Content ?? item.Content ?? '';
}

/** `pronunciation` | `punctuation` | other, lower-cased (Q10). */
export function itemType(item: HsTranscriptItem): string {
  return item.Type.toLowerCase();
}

/** A span's half-open character range `[begin, end)` from HealthScribe's inclusive end offset (Q8). */
export function spanRange(span: {
  BeginCharacterOffset: number;
  EndCharacterOffset: number;
}): [number, number] {
  return [span.BeginCharacterOffset, span.EndCharacterOffset + 1];
}

/**
 * Where a problem in a HealthScribe file is: the JSON path inside the file, after `prefix` (the file's place in
 * the envelope when it is inline), and the file itself (its URI) when it was fetched.
 */
export interface HsFileAt {
  readonly prefix?: readonly PathSegment[];
  readonly file?: string;
}

function located(at: HsFileAt, path: readonly PathSegment[]): string {
  return `${formatPath([...(at.prefix ?? []), ...path])}${at.file ? ` (${at.file})` : ''}`;
}

function structureError(what: string, at: HsFileAt, path: PathSegment[], message: string): ScribeError {
  return schemaError('HEALTHSCRIBE_SCHEMA', what, [{ where: located(at, path), message }]);
}

export function parseTranscript(json: unknown, at: HsFileAt = {}): Transcript {
  const what = 'the transcript file is not HealthScribe output';
  const r = TranscriptFileSchema.safeParse(json);
  if (!r.success)
    throw schemaError('HEALTHSCRIBE_SCHEMA', what, locatedIssues(r.error, at.prefix, fileOf(at)));
  const segments = new Map<string, HsTranscriptSegment>();
  r.data.Conversation.TranscriptSegments.forEach((s, i) => {
    const path = ['Conversation', 'TranscriptSegments', i];
    // SegmentId is the key evidence cites: a second segment under one id would make the cited audio time and
    // speaker a guess (reference/healthscribe.md §3.3).
    if (segments.has(s.SegmentId))
      throw structureError(what, at, [...path, 'SegmentId'], 'repeats the SegmentId of an earlier segment');
    if (s.BeginAudioTime > s.EndAudioTime)
      throw structureError(what, at, [...path, 'BeginAudioTime'], 'is later than EndAudioTime');
    segments.set(s.SegmentId, s);
  });
  const c = r.data.Conversation;
  return {
    file: r.data,
    segments,
    ...(c.JobName ? { jobName: c.JobName } : {}),
    ...(c.SessionId ? { sessionId: c.SessionId } : {}),
  };
}

export function parseClinicalDocument(json: unknown, at: HsFileAt = {}): ClinicalDocument {
  const what = 'the clinical document file is not HealthScribe output';
  rejectPreviewFormat(json, at);
  const r = ClinicalDocumentFileSchema.safeParse(json);
  if (!r.success)
    throw schemaError('HEALTHSCRIBE_SCHEMA', what, locatedIssues(r.error, at.prefix, fileOf(at)));
  const sections = new Map<string, HsSection>();
  r.data.ClinicalDocumentation.Sections.forEach((s, i) => {
    const k = sectionKey(s.SectionName);
    // A draft pointer names its section: two sections under one name (PLAN and plan) would leave the second's
    // items unreachable, and never counted as removed.
    if (sections.has(k))
      throw structureError(
        what,
        at,
        ['ClinicalDocumentation', 'Sections', i, 'SectionName'],
        `names the same section as an earlier one (${JSON.stringify(k)}: names match ignoring case, spaces and underscores)`,
      );
    sections.set(k, s);
  });
  return { file: r.data, sections };
}

function fileOf(at: HsFileAt): (() => string) | undefined {
  const file = at.file;
  return file === undefined ? undefined : () => file;
}

function rejectPreviewFormat(json: unknown, at: HsFileAt): void {
  const sections = (json as { ClinicalDocumentation?: { Sections?: unknown } } | null)?.ClinicalDocumentation
    ?.Sections;
  if (!Array.isArray(sections)) return;
  sections.forEach((s: unknown, i) => {
    if (s && typeof s === 'object' && ('Subsections' in s || 'EvidenceMap' in s)) {
      throw new ScribeError(
        'HEALTHSCRIBE_PREVIEW_FORMAT',
        'the clinical document uses the preview-era layout (Sections[].Subsections[] with EvidenceMap)',
        { where: located(at, ['ClinicalDocumentation', 'Sections', i]) },
      );
    }
  });
}

/** Re-exported for callers that hold raw JSON. */
export type { JsonValue };
