/**
 * The signed-note envelope, version 1 (spec/signed-note-envelope.md): a strict schema — unknown members are
 * refused everywhere except inside HealthScribe's own inline files — plus the rules zod cannot express
 * (control characters in note text, unique sentence ids, lifecycle of revision/status/replaces).
 */
import { z } from 'zod';
import { type LocatedIssue, ScribeError } from '../errors.ts';
import {
  decodeUtf8,
  FORBIDDEN_CONTROL,
  formatPath,
  type JsonValue,
  type PathSegment,
  parseStrictJson,
  type StrictJson,
} from './json.ts';
import { locatedIssues, schemaError } from './zod-issues.ts';

export const NOTE_TEMPLATES = [
  'HISTORY_AND_PHYSICAL',
  'GIRPP',
  'BIRP',
  'SIRP',
  'DAP',
  'BEHAVIORAL_SOAP',
  'PHYSICAL_SOAP',
] as const;
export type NoteTemplate = (typeof NOTE_TEMPLATES)[number];

export const NOTE_STATUSES = ['final', 'amended', 'entered-in-error'] as const;
export type NoteStatus = (typeof NOTE_STATUSES)[number];

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits (a SHA-256)');
/**
 * RFC 3339 date-time with a zone (FHIR instant/dateTime need one), whose offset is one a clock can have: RFC 3339
 * allows up to ±23:59, but every time zone lies within -12:00 … +14:00 and FHIR's dateTime takes -14:00 … +14:00 —
 * a wider offset could not be delivered as written, so it is refused here rather than at one destination.
 */
const instant = z.iso
  .datetime({ offset: true, message: 'must be an RFC 3339 date-time with a time zone' })
  .refine((t) => {
    const m = /([+-])(\d{2}):(\d{2})$/.exec(t);
    return !m || Number(m[2]) * 60 + Number(m[3]) <= 14 * 60;
  }, 'its time zone offset must lie within -14:00 and +14:00 (as every time zone does; FHIR takes no wider)');
const fhirDate = z
  .string()
  .regex(/^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$/, 'must be a date: YYYY, YYYY-MM or YYYY-MM-DD')
  .refine(
    // (zod runs this even when the pattern failed: "1961-13-45" or a date-time must come out false, not throw)
    (d) => {
      if (d.length < 10) return true;
      const t = new Date(`${d}T00:00:00Z`);
      return !Number.isNaN(t.getTime()) && t.toISOString().startsWith(d);
    },
    'must be a day of the calendar (no 31 April, no 29 February outside a leap year)',
  );
const nonBlank = z
  .string()
  .min(1)
  .refine((s) => s.trim().length > 0, 'must not be blank');

// A FHIR Identifier.system is a uri: no whitespace (FHIR's uri pattern is \S*), e.g. urn:oid:… or http://….
const Identifier = z.strictObject({
  system: nonBlank.refine((s) => !/\s/.test(s), 'must be a URI (urn:oid:…, http://…), without whitespace'),
  value: nonBlank,
});
const Identifiers = z.array(Identifier).min(1, 'needs at least one identifier');
const HumanName = z.strictObject({
  family: z.string().optional(),
  given: z.array(z.string()).optional(),
  prefix: z.array(z.string()).optional(),
  suffix: z.array(z.string()).optional(),
});

const ArtifactByUri = z.strictObject({ uri: nonBlank, sha256: sha256Hex });
const ArtifactInline = z.strictObject({
  // HealthScribe's own file: parsed tolerantly later, so anything JSON is accepted here.
  inline: z.custom<JsonValue>(
    (v) => v !== undefined && v !== null && typeof v === 'object',
    'must be a JSON object',
  ),
  sha256: sha256Hex.optional(),
});
const Artifact = z.union([ArtifactByUri, ArtifactInline], {
  error: 'an artifact is {"uri","sha256"} or {"inline", "sha256"?}',
});
export type ArtifactRef = z.infer<typeof Artifact>;

const HealthScribeRef = z
  .strictObject({
    jobName: z
      .string()
      .regex(/^[0-9a-zA-Z._-]{1,200}$/, 'must be a MedicalScribeJobName: 1–200 of [0-9a-zA-Z._-]')
      .optional(),
    sessionId: z
      .string()
      .regex(/^[0-9a-zA-Z-]{1,64}$/, 'must be a HealthScribe streaming SessionId')
      .optional(),
    transcript: Artifact.optional(),
    clinicalDocument: Artifact.optional(),
  })
  .superRefine((h, ctx) => {
    if ((h.jobName === undefined) === (h.sessionId === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'needs exactly one of "jobName" (batch) or "sessionId" (streaming)',
      });
    }
    if ((h.transcript === undefined) !== (h.clinicalDocument === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [h.transcript ? 'clinicalDocument' : 'transcript'],
        message:
          'give both artifacts ("transcript" and "clinicalDocument"), or neither to locate them by jobName',
      });
    }
    if (h.transcript === undefined && h.clinicalDocument === undefined && h.jobName === undefined) {
      ctx.addIssue({
        code: 'custom',
        message:
          'a streaming session (sessionId) must give its artifacts; only a batch jobName can be located',
      });
    }
  });

const Sentence = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must match [A-Za-z0-9_-]{1,64}'),
  text: z.string(),
  evidence: z.array(z.string().min(1)),
  draft: z.strictObject({ section: nonBlank, index: z.number().int().nonnegative() }).optional(),
});

const NoteSection = z.strictObject({ name: nonBlank, sentences: z.array(Sentence) });

export const EnvelopeSchema = z.strictObject({
  kind: z.literal('signed-note'),
  schemaVersion: z.literal(1),
  tenant: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must match [a-z0-9][a-z0-9-]{0,62}'),
  noteId: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'must match [A-Za-z0-9._-]{1,128}'),
  revision: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  status: z.enum(NOTE_STATUSES),
  replaces: z.number().int().min(1).nullable().optional(),
  template: z.enum(NOTE_TEMPLATES),
  patient: z.strictObject({
    identifier: Identifiers,
    name: HumanName.optional(),
    birthDate: fhirDate.optional(),
    gender: z.enum(['male', 'female', 'other', 'unknown']).optional(),
  }),
  encounter: z.strictObject({
    identifier: Identifiers,
    period: z
      .strictObject({ start: instant, end: instant.optional() })
      .refine((p) => p.end === undefined || Date.parse(p.end) >= Date.parse(p.start), {
        path: ['end'],
        message: 'must not be before start (FHIR Period, per-1)',
      }),
    class: z.enum(['AMB', 'IMP', 'EMER', 'VR', 'HH']).optional(),
  }),
  author: z.strictObject({ identifier: Identifiers, name: HumanName.optional() }),
  organization: z.strictObject({ identifier: Identifiers, name: z.string().optional() }),
  healthscribe: HealthScribeRef,
  note: z.strictObject({ sections: z.array(NoteSection) }),
  signature: z.strictObject({ signedAt: instant, jws: nonBlank }),
});

/** A schema-valid envelope. Its signature is not yet checked: see `verifyEnvelope`. */
export type Envelope = z.infer<typeof EnvelopeSchema>;
export type EnvelopeSentence = z.infer<typeof Sentence>;

/** What a successfully read envelope carries besides its typed form. */
export interface ReadEnvelope {
  readonly envelope: Envelope;
  /** The exact parsed JSON (what is canonicalised for the signature). */
  readonly raw: { [k: string]: JsonValue };
  readonly json: StrictJson;
}

/**
 * Reads an envelope from bytes or text: strict JSON (I-JSON), the v1 schema, the control-character and
 * sentence-id rules. Lifecycle rules are checked by `checkLifecycle` after the signature (so a tampered
 * revision number reports as a signature failure, not a lifecycle one).
 */
export function readEnvelope(input: string | Uint8Array, source?: string): ReadEnvelope {
  const text = typeof input === 'string' ? input : decodeUtf8(input, 'the envelope');
  const json = parseStrictJson(text, source ? { source } : {});
  const r = EnvelopeSchema.safeParse(json.value);
  if (!r.success) {
    throw schemaError(
      'ENVELOPE_SCHEMA',
      'the envelope does not match signed-note v1',
      locatedIssues(r.error, [], json.locate),
    );
  }
  const envelope = r.data;
  checkControlCharacters(envelope, json.value, json);
  checkSizes(envelope, json);
  checkSentenceIds(envelope, json);
  return { envelope, raw: json.value as { [k: string]: JsonValue }, json };
}

/**
 * Forbidden control characters anywhere in the signed envelope except inside HealthScribe's own inline files:
 * the spec forbids them in note text (they break HL7 framing), and names, identifiers and ids travel into HL7
 * and FHIR fields just the same. The message names the sentence when the string belongs to one.
 */
function checkControlCharacters(env: Envelope, raw: unknown, json: StrictJson): void {
  // One path, grown and shrunk as the walk goes: almost every envelope is clean, so it is copied only for a hit.
  const path: PathSegment[] = [];
  const visit = (v: unknown): void => {
    if (typeof v === 'string') {
      if (!FORBIDDEN_CONTROL.test(v)) return;
      const at = [...path];
      const inSentence = at[0] === 'note' && at[3] === 'sentences' && typeof at[4] === 'number';
      const sentence = inSentence
        ? env.note.sections[at[2] as number]?.sentences[at[4] as number]
        : undefined;
      const what = sentence ? `sentence ${JSON.stringify(sentence.id)}` : `the member at ${formatPath(at)}`;
      throw new ScribeError(
        'ENVELOPE_CONTROL_CHAR',
        `${what} contains a forbidden control character (U+${codeOf(v)})`,
        {
          where: located(at, json),
        },
      );
    }
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        visit(v[i]);
        path.pop();
      }
    } else if (v && typeof v === 'object') {
      for (const k in v) {
        if (k === 'inline' && path[0] === 'healthscribe' && path.length === 2) continue; // HealthScribe's own file
        path.push(k);
        visit((v as Record<string, unknown>)[k]);
        path.pop();
      }
    }
  };
  visit(raw);
}

function codeOf(text: string): string {
  const m = FORBIDDEN_CONTROL.exec(text);
  return (m?.[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
}

/** FHIR's limit on one string (R4 §2.1.28.0.1: "SHALL NOT exceed 1 MB"), in UTF-8 bytes. */
export const MAX_STRING_BYTES = 1024 * 1024;
/**
 * The most note text (all sentences, UTF-8) one envelope may carry: its text/plain rendering goes out base64 in
 * one FHIR attachment, and base64Binary is limited to 16 MB (12 MB of bytes before encoding).
 */
export const MAX_NOTE_TEXT_BYTES = 10 * 1024 * 1024;

/**
 * Sizes every destination can carry, refused at intake (with the sentence) rather than after rendering: one
 * sentence's text at most MAX_STRING_BYTES, the note's text at most MAX_NOTE_TEXT_BYTES.
 */
function checkSizes(env: Envelope, json: StrictJson): void {
  let total = 0;
  const issues: LocatedIssue[] = [];
  env.note.sections.forEach((section, si) => {
    section.sentences.forEach((s, i) => {
      const bytes = Buffer.byteLength(s.text, 'utf8');
      total += bytes;
      if (bytes > MAX_STRING_BYTES)
        issues.push({
          where: located(['note', 'sections', si, 'sentences', i, 'text'], json),
          message: `sentence "${s.id}" has ${bytes} bytes of text; a FHIR string holds at most 1 MB (${MAX_STRING_BYTES} bytes)`,
        });
    });
  });
  if (total > MAX_NOTE_TEXT_BYTES)
    issues.push({
      where: located(['note'], json),
      message: `the note has ${total} bytes of text; at most ${MAX_NOTE_TEXT_BYTES} (10 MB) fit one FHIR attachment`,
    });
  if (issues.length > 0)
    throw schemaError('ENVELOPE_SCHEMA', 'the note is larger than a destination can carry', issues);
}

function checkSentenceIds(env: Envelope, json: StrictJson): void {
  const seen = new Map<string, string>();
  const dupes: LocatedIssue[] = [];
  env.note.sections.forEach((section, si) => {
    section.sentences.forEach((s, i) => {
      const path: PathSegment[] = ['note', 'sections', si, 'sentences', i, 'id'];
      const first = seen.get(s.id);
      if (first)
        dupes.push({
          where: located(path, json),
          message: `sentence id "${s.id}" is used again (first at ${first})`,
        });
      else seen.set(s.id, formatPath(path));
    });
  });
  if (dupes.length > 0)
    throw schemaError('ENVELOPE_SCHEMA', 'sentence ids must be unique within the envelope', dupes);
}

function located(path: PathSegment[], json: StrictJson): string {
  const loc = json.locate(path);
  return `${formatPath(path)}${loc ? ` (${loc})` : ''}`;
}

/** The lifecycle rules one envelope can be checked against on its own (the ledger checks the sequence). */
export function checkLifecycle(env: Envelope): void {
  const fail = (detail: string, path: PathSegment[]) => {
    throw new ScribeError('LIFECYCLE_INVALID', detail, { where: `${formatPath(path)} (note ${env.noteId})` });
  };
  if (env.revision === 1) {
    if (env.status !== 'final') fail(`revision 1 must have status "final", not "${env.status}"`, ['status']);
    if (env.replaces !== undefined && env.replaces !== null)
      fail('revision 1 replaces nothing: "replaces" must be null or absent', ['replaces']);
  } else {
    if (env.status === 'final')
      fail(`revision ${env.revision} must be "amended" or "entered-in-error", not "final"`, ['status']);
    if (env.replaces !== env.revision - 1) {
      fail(`revision ${env.revision} must have "replaces": ${env.revision - 1}`, ['replaces']);
    }
  }
  const sentences = env.note.sections.reduce((n, s) => n + s.sentences.length, 0);
  if (env.status !== 'entered-in-error' && sentences === 0) {
    fail(`a "${env.status}" note needs at least one sentence (only a retraction may be empty)`, [
      'note',
      'sections',
    ]);
  }
}
