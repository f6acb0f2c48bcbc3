/**
 * Builds small, internally consistent HealthScribe files and signed envelopes in memory, with keys made
 * for the test run. For tests that need a specific shape; the checked-in fixtures cover realistic notes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { type Config, loadConfig } from '../../src/config/index.ts';
import { sha256Hex } from '../../src/contract/artifacts.ts';
import type { JsonValue } from '../../src/contract/json.ts';
import { canonicalJson, type Jwks, type SignatureAlg, signEnvelope } from '../../src/contract/signature.ts';

export interface TestKey {
  readonly kid: string;
  readonly alg: SignatureAlg;
  readonly privateJwk: JWK;
  readonly publicJwk: JWK;
}

const keyCache = new Map<string, Promise<TestKey>>();

/** A key pair per (alg, kid), made once per test file. */
export function testKey(alg: SignatureAlg = 'ES256', kid = `test-${alg.toLowerCase()}`): Promise<TestKey> {
  const k = `${alg}:${kid}`;
  let p = keyCache.get(k);
  if (!p) {
    p = (async () => {
      const { privateKey, publicKey } = await generateKeyPair(alg, {
        extractable: true,
        ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}),
      });
      const privateJwk = { ...(await exportJWK(privateKey)), kid, alg };
      const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
      return { kid, alg, privateJwk, publicJwk };
    })();
    keyCache.set(k, p);
  }
  return p;
}

export function jwksOf(...keys: TestKey[]): Jwks {
  return { keys: keys.map((k) => k.publicJwk) };
}

export const SEG = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

/** A tiny transcript: `n` segments alternating clinician / patient. */
export function transcriptJson(n = 6): { [k: string]: JsonValue } {
  return {
    Conversation: {
      ConversationId: 'conv-1',
      JobName: 'job-1',
      JobType: 'ASYNC',
      LanguageCode: 'en-US',
      ClinicalInsights: [],
      TranscriptItems: [
        {
          Alternatives: [{ Confidence: 0.9, Content: 'Hello' }],
          BeginAudioTime: 0,
          EndAudioTime: 0.4,
          Type: 'PRONUNCIATION',
        },
      ],
      TranscriptSegments: Array.from({ length: n }, (_, i) => ({
        SegmentId: SEG(i + 1),
        Content: `Segment ${i + 1} words.`,
        BeginAudioTime: i * 2,
        EndAudioTime: i * 2 + 1.5,
        ParticipantDetails: { ParticipantRole: i % 2 === 0 ? 'CLINICIAN_0' : 'PATIENT_0' },
        SectionDetails: { SectionName: 'SUBJECTIVE' },
      })),
    },
  };
}

/** A tiny clinical document. */
export function clinicalDocJson(): { [k: string]: JsonValue } {
  return {
    ClinicalDocumentation: {
      Sections: [
        {
          SectionName: 'CHIEF_COMPLAINT',
          Summary: [
            {
              SummarizedSegment: 'Chest tightness on exertion for two weeks.',
              EvidenceLinks: [{ SegmentId: SEG(1) }, { SegmentId: SEG(2) }],
            },
          ],
        },
        {
          SectionName: 'PLAN',
          Summary: [
            { SummarizedSegment: '- Order an EKG.', EvidenceLinks: [{ SegmentId: SEG(3) }] },
            { SummarizedSegment: '', EvidenceLinks: [] },
            { SummarizedSegment: 'Follow up in two weeks.', EvidenceLinks: [{ SegmentId: SEG(4) }] },
          ],
        },
      ],
    },
  };
}

/** An unsigned envelope with inline artifacts; override anything with `patch`. */
export function envelopeJson(patch: { [k: string]: JsonValue } = {}): { [k: string]: JsonValue } {
  const transcript = transcriptJson();
  const doc = clinicalDocJson();
  return {
    kind: 'signed-note',
    schemaVersion: 1,
    tenant: 'riverside-clinic',
    noteId: 'enc-4471-hp',
    revision: 1,
    status: 'final',
    replaces: null,
    template: 'HISTORY_AND_PHYSICAL',
    patient: {
      identifier: [{ system: 'urn:oid:2.16.840.1.113883.3.7418.2.1', value: 'MRN-000417' }],
      name: { family: 'Okafor', given: ['Adaeze'] },
      birthDate: '1961-03-09',
      gender: 'female',
    },
    encounter: {
      identifier: [{ system: 'urn:oid:2.16.840.1.113883.3.7418.2.7', value: 'ENC-4471' }],
      period: { start: '2026-11-20T14:02:00-05:00', end: '2026-11-20T14:31:00-05:00' },
      class: 'AMB',
    },
    author: {
      identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1144221847' }],
      name: { family: 'Lindqvist', given: ['Maren'], prefix: ['Dr.'] },
    },
    organization: {
      identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1356789012' }],
      name: 'Riverside Family Medicine',
    },
    healthscribe: {
      jobName: 'job-1',
      transcript: { inline: transcript, sha256: sha256Hex(canonicalJson(transcript)) },
      clinicalDocument: { inline: doc, sha256: sha256Hex(canonicalJson(doc)) },
    },
    note: {
      sections: [
        {
          name: 'CHIEF_COMPLAINT',
          sentences: [
            {
              id: 's1',
              text: 'Chest tightness on exertion for two weeks.',
              evidence: [SEG(1), SEG(2)],
              draft: { section: 'CHIEF_COMPLAINT', index: 0 },
            },
          ],
        },
        {
          name: 'PLAN',
          sentences: [
            {
              id: 's2',
              text: 'Order an EKG today.',
              evidence: [SEG(3)],
              draft: { section: 'PLAN', index: 0 },
            },
            { id: 's3', text: 'Patient prefers morning appointments.', evidence: [] },
          ],
        },
      ],
    },
    signature: { signedAt: '2026-11-20T16:45:12Z', jws: '' },
    ...patch,
  };
}

export async function signed(
  env: { [k: string]: JsonValue },
  key?: TestKey,
): Promise<{ [k: string]: JsonValue }> {
  const k = key ?? (await testKey());
  return signEnvelope(env, k.privateJwk, { kid: k.kid, alg: k.alg });
}

export const bytesOf = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

/** Fixture envelopes made queueable (artifacts inlined, re-signed with the fixture's TEST key): see src/demo. */
export { queueableFixture } from '../../src/demo/fixtures.ts';

/** A configuration with one tenant (riverside-clinic, its fixture keys unless `o.reviewKeys` names others) and one
 * file-drop destination `ehr` (us-core-docref), written to `<dir>/config.yaml` and loaded as the service would;
 * `o.head` adds top-level keys (http, auth). */
export async function fileDropConfig(
  dir: string,
  o: { reviewKeys?: string; head?: string } = {},
): Promise<Config> {
  const keys =
    o.reviewKeys ?? new URL('../../fixtures/keys/riverside-clinic.jwks.json', import.meta.url).pathname;
  writeFileSync(
    join(dir, 'config.yaml'),
    `store: pglite://./data
${o.head ?? ''}tenants:
  - id: riverside-clinic
    reviewKeys: ${keys}
    destinations: [ehr]
destinations:
  - id: ehr
    type: file
    directory: ./out
    mapping: us-core-docref
`,
  );
  return loadConfig(join(dir, 'config.yaml'), {});
}
