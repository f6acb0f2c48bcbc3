/**
 * Probe notes: small synthetic notes that exercise everything a mapping's output can vary with — every template
 * and its sections, an unknown section, AI-verbatim, clinician-edited and clinician-added sentences, sentences
 * with no evidence and with many, escaping-hostile text, blank sentences, streaming and batch jobs, and the three
 * lifecycle steps.
 * `mappings check` renders a mapping over all of them and validates every result, which is how a mapping
 * version is proven conformant once (see docs/mappings.md § Validation).
 *
 * Synthetic data only; the signature is not checked (these never leave the process).
 */

import { NOTE_TEMPLATES, type NoteTemplate } from '../contract/envelope.ts';
import type { JsonValue } from '../contract/json.ts';
import { type VerifiedNote, verifyEnvelope } from '../contract/verify.ts';

/** HealthScribe's section tokens per template (reference/healthscribe.md §4.3). */
export const TEMPLATE_SECTIONS: Readonly<Record<NoteTemplate, readonly string[]>> = {
  HISTORY_AND_PHYSICAL: [
    'CHIEF_COMPLAINT',
    'HISTORY_OF_PRESENT_ILLNESS',
    'REVIEW_OF_SYSTEMS',
    'PAST_MEDICAL_HISTORY',
    'ASSESSMENT',
    'PLAN',
    'PHYSICAL_EXAMINATION',
    'PAST_FAMILY_HISTORY',
    'PAST_SOCIAL_HISTORY',
    'DIAGNOSTIC_TESTING',
  ],
  GIRPP: ['GOAL', 'INTERVENTION', 'RESPONSE', 'PROGRESS', 'PLAN'],
  BIRP: ['BEHAVIOR', 'INTERVENTION', 'RESPONSE', 'PLAN'],
  SIRP: ['SITUATION', 'INTERVENTION', 'RESPONSE', 'PLAN'],
  DAP: ['DATA', 'ASSESSMENT', 'PLAN'],
  BEHAVIORAL_SOAP: ['SUBJECTIVE', 'OBJECTIVE', 'ASSESSMENT', 'PLAN'],
  PHYSICAL_SOAP: ['SUBJECTIVE', 'OBJECTIVE', 'ASSESSMENT', 'PLAN'],
};

const TEXTS = [
  'Patient reports intermittent chest tightness for two weeks.',
  'Pain 7/10 | worse at night ^ relieved by rest ~ uses A&D ointment; path C:\\temp\\notes.',
  'Line one of a sentence\nline two\r\nline three\rand a TAB\there.',
  'Émoji 😀, CJK 胸痛, Arabic ألم الصدر, Hebrew כאב בחזה, combining é.',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: escaping-hostile text on purpose
  '<script>alert(1)</script> ]]> &amp; {{x}} ${x} "quoted" \'single\'',
];

const seg = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;

interface ProbeSpec {
  readonly name: string;
  readonly template: NoteTemplate;
  readonly revision: number;
  readonly status: 'final' | 'amended' | 'entered-in-error';
  readonly streaming?: boolean;
  readonly clinicianOnly?: boolean;
  /** Blank sentences (empty or whitespace only, which the envelope allows): a whole section of them, one more. */
  readonly blank?: boolean;
}

/** Texts with no non-whitespace character: empty, ASCII blanks, and Unicode spaces JavaScript's `\s` knows. */
const BLANK_TEXTS = ['', ' \t\r\n ', '\u00a0\u3000\u2003'];

function probeEnvelope(spec: ProbeSpec): { [k: string]: JsonValue } {
  const sections = [...TEMPLATE_SECTIONS[spec.template], 'PATIENT_EDUCATION'];
  const segments: JsonValue[] = [];
  for (let i = 1; i <= 24; i++) {
    segments.push({
      SegmentId: seg(i),
      Content: `Segment ${i}: ${TEXTS[i % TEXTS.length]}`,
      BeginAudioTime: i * 3.25,
      EndAudioTime: i * 3.25 + 2.5,
      ParticipantDetails: {
        // The blank probe also has segments with no speaker role (empty, or spaces: a mapping must not emit
        // an extension without a value for them).
        ParticipantRole:
          spec.blank && i % 4 === 0
            ? BLANK_TEXTS[(i / 4) % 2]!
            : i % 3 === 0
              ? 'CLINICIAN_0'
              : i % 3 === 1
                ? 'PATIENT_0'
                : 'PATIENT_1',
      },
      SectionDetails: { SectionName: 'SUBJECTIVE' },
    });
  }
  const docSections: JsonValue[] = [];
  const noteSections: JsonValue[] = [];
  let n = 0;
  sections.forEach((name, si) => {
    const summary: JsonValue[] = [];
    const sentences: JsonValue[] = [];
    for (let k = 0; k < 3; k++) {
      const text = TEXTS[(si + k) % TEXTS.length]!;
      const evidence = k === 2 ? [] : [seg(((si * 3 + k) % 24) + 1), seg(((si * 5 + k * 7) % 24) + 1)];
      summary.push({
        SummarizedSegment: k === 0 ? `- ${text}` : text,
        EvidenceLinks: evidence.map((s) => ({ SegmentId: s })),
      });
      n++;
      const id = `p${n}`;
      if (spec.blank && (si === 0 || (si === 1 && k === 1)))
        sentences.push({
          id,
          text: BLANK_TEXTS[k]!,
          evidence,
          ...(k < 2 ? { draft: { section: name, index: k } } : {}),
        });
      else if (spec.clinicianOnly) sentences.push({ id, text: `Clinician wrote: ${text}`, evidence: [] });
      else if (k === 0) sentences.push({ id, text, evidence, draft: { section: name, index: 0 } });
      else if (k === 1)
        sentences.push({ id, text: `${text} Edited.`, evidence, draft: { section: name, index: 1 } });
      else sentences.push({ id, text: `Added by clinician (${name.toLowerCase()}).`, evidence: [seg(1)] });
    }
    summary.push({ SummarizedSegment: '', EvidenceLinks: [] });
    docSections.push({ SectionName: name, Summary: summary });
    noteSections.push({ name, sentences });
  });
  docSections.push({ SectionName: 'EMPTY_SECTION', Summary: [] });
  const transcript = {
    Conversation: {
      ConversationId: `probe-${spec.name}`,
      ...(spec.streaming
        ? { SessionId: '6f1c2a9e-3b7d-4c51-9a0e-2d8f4b6c1e77' }
        : { JobName: 'probe-job', JobType: 'ASYNC' }),
      LanguageCode: 'en-US',
      TranscriptSegments: segments,
    },
  };
  const clinicalDocument = { ClinicalDocumentation: { Sections: docSections } };
  return {
    kind: 'signed-note',
    schemaVersion: 1,
    tenant: 'probe-tenant',
    noteId: `probe-${spec.template.toLowerCase()}`,
    revision: spec.revision,
    status: spec.status,
    replaces: spec.revision > 1 ? spec.revision - 1 : null,
    template: spec.template,
    patient: {
      identifier: [{ system: 'urn:oid:2.16.840.1.113883.3.7418.2.1', value: 'PROBE-MRN-1' }],
      name: { family: "O'Brien|Ñúñez^Smith~&\\", given: ['Zoë', 'أحمد'] },
      birthDate: '1961-03-09',
      gender: 'female',
    },
    encounter: {
      identifier: [{ system: 'urn:oid:2.16.840.1.113883.3.7418.2.7', value: 'PROBE-ENC-1' }],
      period: { start: '2026-11-20T14:02:00-05:00', end: '2026-11-20T14:31:00-05:00' },
      class: 'AMB',
    },
    author: {
      identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1144221847' }],
      name: { family: 'Lindqvist', given: ['Maren'], prefix: ['Dr.'] },
    },
    organization: {
      identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1356789012' }],
      name: 'Probe & Sons Clinic',
    },
    healthscribe: {
      ...(spec.streaming ? { sessionId: '6f1c2a9e-3b7d-4c51-9a0e-2d8f4b6c1e77' } : { jobName: 'probe-job' }),
      transcript: { inline: transcript },
      clinicalDocument: { inline: clinicalDocument },
    },
    note: { sections: spec.status === 'entered-in-error' ? [] : noteSections },
    signature: {
      signedAt: `2026-11-20T2${spec.revision}:45:12Z`,
      jws: 'eyJhbGciOiJFUzI1NiIsImtpZCI6InByb2JlIn0..cHJvYmU',
    },
  };
}

export interface Probe {
  readonly name: string;
  readonly note: VerifiedNote;
  readonly prior?: VerifiedNote;
}

async function noteOf(spec: ProbeSpec): Promise<VerifiedNote> {
  return verifyEnvelope(JSON.stringify(probeEnvelope(spec)), { keys: 'skip-signature' });
}

/** Every probe: each template as a new note, plus amendment, retraction, streaming and clinician-only variants. */
export async function probeNotes(): Promise<Probe[]> {
  const out: Probe[] = [];
  for (const template of NOTE_TEMPLATES) {
    out.push({
      name: `${template.toLowerCase()}-new`,
      note: await noteOf({ name: template, template, revision: 1, status: 'final' }),
    });
  }
  const hp: NoteTemplate = 'HISTORY_AND_PHYSICAL';
  const r2 = await noteOf({ name: 'amended', template: hp, revision: 2, status: 'amended' });
  out.push({ name: 'amendment', note: r2 });
  out.push({
    name: 'retraction',
    note: await noteOf({ name: 'retracted', template: hp, revision: 3, status: 'entered-in-error' }),
    prior: r2,
  });
  out.push({
    name: 'streaming',
    note: await noteOf({
      name: 'streaming',
      template: 'GIRPP',
      revision: 1,
      status: 'final',
      streaming: true,
    }),
  });
  out.push({
    name: 'clinician-only',
    note: await noteOf({
      name: 'clinician',
      template: 'DAP',
      revision: 1,
      status: 'final',
      clinicianOnly: true,
    }),
  });
  out.push({
    name: 'blank-sentences',
    note: await noteOf({ name: 'blank', template: hp, revision: 1, status: 'final', blank: true }),
  });
  return out;
}
