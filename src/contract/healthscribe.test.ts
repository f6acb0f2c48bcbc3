import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ScribeError } from '../errors.ts';
import {
  itemContent,
  itemType,
  parseClinicalDocument,
  parseTranscript,
  sectionKey,
  spanRange,
} from './healthscribe.ts';

const ref = (f: string) =>
  JSON.parse(readFileSync(new URL(`../../../shared/reference/healthscribe/${f}`, import.meta.url), 'utf8'));

describe('HealthScribe transcript', () => {
  it('parses the AWS batch and streaming examples (both item shapes, both Type cases)', () => {
    const batch = parseTranscript(ref('batch-job__transcript.json'));
    expect(batch.jobName).toBeTruthy();
    expect(batch.segments.size).toBeGreaterThan(0);
    const stream = parseTranscript(ref('streaming__transcript.json'));
    expect(stream.sessionId).toBeTruthy();
    for (const t of [batch, stream]) {
      for (const item of t.file.Conversation.TranscriptItems) {
        expect(['pronunciation', 'punctuation']).toContain(itemType(item));
        expect(typeof itemContent(item)).toBe('string');
      }
    }
  });

  it('keeps unknown members and accepts item-level Content with lower-case types', () => {
    const t = parseTranscript({
      Conversation: {
        ConversationId: 'c',
        SessionId: 's',
        LanguageCode: 'en-US',
        NewAwsField: { x: 1 },
        TranscriptItems: [
          {
            Content: 'Hi',
            Confidence: 0.5,
            BeginAudioTime: 0,
            EndAudioTime: 1,
            Type: 'pronunciation',
            Extra: true,
          },
        ],
        TranscriptSegments: [
          {
            SegmentId: 'a',
            Content: 'Hi.',
            BeginAudioTime: 0,
            EndAudioTime: 1,
            ParticipantDetails: { ParticipantRole: 'PATIENT_1' },
            Vendor: 'x',
          },
        ],
      },
    });
    expect((t.file.Conversation as Record<string, unknown>)['NewAwsField']).toEqual({ x: 1 });
    expect(itemContent(t.file.Conversation.TranscriptItems[0]!)).toBe('Hi');
    expect((t.file.Conversation.TranscriptSegments[0] as Record<string, unknown>)['Vendor']).toBe('x');
  });

  it('checks every word item in place, at its path: either shape, numbers where AWS gives numbers', () => {
    const items = (list: unknown[]) => ({
      Conversation: {
        TranscriptItems: list,
        TranscriptSegments: [],
      },
    });
    const word = { BeginAudioTime: 0, EndAudioTime: 0.5, Type: 'pronunciation' };
    const refused = (list: unknown[]) => {
      try {
        parseTranscript(items(list), { file: 's3://hs/t.json' });
      } catch (e) {
        return e as ScribeError;
      }
      throw new Error('accepted');
    };
    // Either shape, unknown members kept; the items returned are the file's own objects (not copies).
    const ok = [
      { ...word, Alternatives: [{ Confidence: null, Content: 'Hi' }], Vendor: 1 },
      { ...word, Content: ',', Confidence: 0, Type: 'PUNCTUATION' },
    ];
    const t = parseTranscript(items(ok));
    expect(t.file.Conversation.TranscriptItems[0]).toBe(ok[0]);
    expect(t.file.Conversation.TranscriptItems.map(itemContent)).toEqual(['Hi', ',']);
    expect(
      parseTranscript({ Conversation: { TranscriptSegments: [] } }).file.Conversation.TranscriptItems,
    ).toEqual([]);

    const neither = refused([word, { ...word, Alternatives: [] }]);
    expect([neither.code, neither.where]).toEqual([
      'HEALTHSCRIBE_SCHEMA',
      '$.Conversation.TranscriptItems[0] (s3://hs/t.json)',
    ]);
    expect(neither.message).toContain('needs Alternatives[] or an item-level Content');
    // Every item is checked: an empty Alternatives[] is no shape either.
    expect(neither.issues?.map((i) => i.where)).toEqual([
      '$.Conversation.TranscriptItems[0] (s3://hs/t.json)',
      '$.Conversation.TranscriptItems[1] (s3://hs/t.json)',
    ]);
    const missing = refused([{ Content: 'x', Type: 'pronunciation', EndAudioTime: 1 }]);
    expect(missing.where).toBe('$.Conversation.TranscriptItems[0].BeginAudioTime (s3://hs/t.json)');
    expect(missing.message).toContain('is required');
    expect(refused([{ ...word, BeginAudioTime: -1, Content: 'x' }]).where).toMatch(/\[0\]\.BeginAudioTime /);
    expect(refused([{ ...word, Alternatives: [{ Content: 7 }] }]).where).toMatch(
      /TranscriptItems\[0\]\.Alternatives\[0\]\.Content /,
    );
    expect(refused([{ ...word, Content: 'x', Confidence: '0.9' }]).message).toMatch(/must be number,null/);
    expect(refused({ length: 1 } as never).where).toMatch(/TranscriptItems /);
  });

  it('refuses control characters and lone surrogates in the text it carries, at their path', () => {
    const file = (segment: Record<string, unknown>) => ({
      Conversation: {
        TranscriptSegments: [
          {
            SegmentId: 'a',
            Content: 'Hi.',
            BeginAudioTime: 0,
            EndAudioTime: 1,
            ParticipantDetails: { ParticipantRole: 'PATIENT_0' },
            ...segment,
          },
        ],
      },
    });
    const refused = (segment: Record<string, unknown>) => {
      try {
        parseTranscript(file(segment), { prefix: ['healthscribe', 'transcript', 'inline'] });
      } catch (e) {
        return e as ScribeError;
      }
      throw new Error('accepted');
    };
    const role = refused({ ParticipantDetails: { ParticipantRole: 'PATIENT\u0007\u0000_0' } });
    expect(role.code).toBe('HEALTHSCRIBE_SCHEMA');
    expect(role.where).toBe(
      '$.healthscribe.transcript.inline.Conversation.TranscriptSegments[0].ParticipantDetails.ParticipantRole',
    );
    expect(role.message).toContain('control character');
    expect(refused({ Content: 'chest \ud800 pain' }).message).toContain('lone UTF-16 surrogate');
    expect(refused({ SegmentId: 'a\u001b' }).where).toMatch(/SegmentId$/);
    expect(() =>
      parseTranscript({ Conversation: { LanguageCode: 'en US!', TranscriptSegments: [] } }),
    ).toThrow(/BCP 47/);
    // TAB, LF, CR and any well-formed Unicode are text.
    expect(parseTranscript(file({ Content: 'a\tb\r\nc 😀 e\u0301' })).segments.get('a')!.Content).toBe(
      'a\tb\r\nc 😀 e\u0301',
    );
    expect(() =>
      parseClinicalDocument({
        ClinicalDocumentation: {
          Sections: [{ SectionName: 'PLAN', Summary: [{ SummarizedSegment: 'x\u007f', EvidenceLinks: [] }] }],
        },
      }),
    ).toThrow(/control character/);
  });

  it('refuses a repeated SegmentId and a segment ending before it begins; names the file of a fetched artifact', () => {
    const seg = (id: string, begin: number, end: number) => ({
      SegmentId: id,
      Content: 'x',
      BeginAudioTime: begin,
      EndAudioTime: end,
      ParticipantDetails: { ParticipantRole: 'CLINICIAN_0' },
    });
    const refused = (segments: unknown[]) => {
      try {
        parseTranscript({ Conversation: { TranscriptSegments: segments } }, { file: 's3://hs/t.json' });
      } catch (e) {
        return e as ScribeError;
      }
      throw new Error('accepted');
    };
    const dup = refused([seg('a', 0, 1), seg('b', 1, 2), seg('a', 100, 105)]);
    expect([dup.code, dup.where]).toEqual([
      'HEALTHSCRIBE_SCHEMA',
      '$.Conversation.TranscriptSegments[2].SegmentId (s3://hs/t.json)',
    ]);
    expect(dup.message).toContain('repeats the SegmentId');
    const reversed = refused([seg('a', 9, 2.8)]);
    expect(reversed.where).toBe('$.Conversation.TranscriptSegments[0].BeginAudioTime (s3://hs/t.json)');
    expect(reversed.message).toContain('later than EndAudioTime');
    expect(parseTranscript({ Conversation: { TranscriptSegments: [seg('a', 3, 3)] } }).segments.size).toBe(1);
  });

  it('matches section names ignoring case, spaces and underscores, and refuses two sections under one name', () => {
    expect(sectionKey(' History of present_illness ')).toBe('HISTORY_OF_PRESENT_ILLNESS');
    const doc = (...names: string[]) => ({
      ClinicalDocumentation: { Sections: names.map((SectionName) => ({ SectionName, Summary: [] })) },
    });
    expect([...parseClinicalDocument(doc('CHIEF COMPLAINT', 'PLAN')).sections.keys()]).toEqual([
      'CHIEF_COMPLAINT',
      'PLAN',
    ]);
    let err: ScribeError | undefined;
    try {
      parseClinicalDocument(doc('PLAN', 'ASSESSMENT', 'plan'), {
        prefix: ['healthscribe', 'clinicalDocument', 'inline'],
      });
    } catch (e) {
      err = e as ScribeError;
    }
    expect(err?.code).toBe('HEALTHSCRIBE_SCHEMA');
    expect(err?.where).toBe(
      '$.healthscribe.clinicalDocument.inline.ClinicalDocumentation.Sections[2].SectionName',
    );
  });

  it('converts inclusive span ends to half-open ranges', () => {
    expect(spanRange({ BeginCharacterOffset: 12, EndCharacterOffset: 15 })).toEqual([12, 16]);
    expect('I have pain'.slice(...spanRange({ BeginCharacterOffset: 7, EndCharacterOffset: 10 }))).toBe(
      'pain',
    );
  });

  it('names the JSON path of every problem', () => {
    const err = (() => {
      try {
        parseTranscript(
          { Conversation: { TranscriptSegments: [{ SegmentId: 'a', Content: 1 }] } },
          {
            prefix: ['healthscribe', 'transcript', 'inline'],
          },
        );
      } catch (e) {
        return e as ScribeError;
      }
    })()!;
    expect(err.code).toBe('HEALTHSCRIBE_SCHEMA');
    expect(err.issues.map((i) => i.where)).toContain(
      '$.healthscribe.transcript.inline.Conversation.TranscriptSegments[0].Content',
    );
  });
});

describe('HealthScribe clinical document', () => {
  it('parses the AWS examples, including empty sections in any order', () => {
    expect(parseClinicalDocument(ref('batch-job__summary.json')).sections.size).toBeGreaterThan(0);
    const doc = parseClinicalDocument({
      ClinicalDocumentation: {
        Sections: [
          {
            SectionName: 'PLAN',
            Summary: [{ SummarizedSegment: 'Chest pain\n  - Order an EKG\n', EvidenceLinks: [] }],
          },
          { SectionName: 'PHYSICAL_EXAMINATION', Summary: [] },
          { SectionName: 'Chief_Complaint', Summary: [{ SummarizedSegment: '', EvidenceLinks: [] }] },
        ],
      },
    });
    expect([...doc.sections.keys()]).toEqual(['PLAN', 'PHYSICAL_EXAMINATION', 'CHIEF_COMPLAINT']);
    expect(
      parseClinicalDocument(ref('streaming__clinicalDoc.json')).file.ClinicalDocumentation.SessionId,
    ).toBeTruthy();
  });

  it('rejects the preview-era format with a message that says so', () => {
    try {
      parseClinicalDocument({
        ClinicalDocumentation: {
          Sections: [
            {
              SectionName: 'X',
              Subsections: [{ SubsectionName: 'Y', Summary: [{ SummarizedSegment: 'a', EvidenceMap: [] }] }],
            },
          ],
        },
      });
      expect.unreachable();
    } catch (e) {
      expect((e as ScribeError).code).toBe('HEALTHSCRIBE_PREVIEW_FORMAT');
      expect((e as ScribeError).message).toMatch(/preview-era/);
      expect((e as ScribeError).where).toBe('$.ClinicalDocumentation.Sections[0]');
    }
  });
});
