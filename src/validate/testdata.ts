/**
 * Test-only builders for the resources the validation tests (and the timing script) use: a US Core
 * DocumentReference, a sentence-per-section Composition and a sentence-level Provenance using the
 * project's extensions. Each call returns a fresh object, so tests can break one field at a time.
 */
import type {
  Bundle,
  Composition,
  CompositionSection,
  Device,
  DocumentReference,
  Organization,
  Patient,
  Practitioner,
  Provenance,
  Reference,
} from '@medplum/fhirtypes';

export const PROFILES_DIR = new URL('../../../shared/reference/profiles', import.meta.url);

const SB = 'https://fhir.scribe-bridge.dev/StructureDefinition';
export const EXT = {
  editClass: `${SB}/edit-class`,
  audioOffset: `${SB}/audio-offset`,
  participantRole: `${SB}/participant-role`,
  artifactSha256: `${SB}/artifact-sha256`,
} as const;

const ORG: Reference<Organization> = {
  type: 'Organization',
  identifier: { system: 'urn:ietf:rfc:3986', value: 'urn:oid:2.16.840.1.113883.3.1' },
};
const CLINICIAN: Reference<Practitioner> = {
  type: 'Practitioner',
  identifier: { system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' },
};
const PATIENT: Reference<Patient> = {
  type: 'Patient',
  identifier: { system: 'urn:oid:2.16.840.1.113883.3.1.2', value: 'MRN-0001' },
};
const SCRIBE: Reference<Device> = {
  type: 'Device',
  identifier: { system: 'urn:scribe-bridge:device', value: 'healthscribe-2026-05' },
};
const SECONDS = { unit: 's', system: 'http://unitsofmeasure.org', code: 's' };

/** A DocumentReference that satisfies US Core 8 and scribe-bridge's stricter rules. */
export function documentReference(): DocumentReference {
  return {
    resourceType: 'DocumentReference',
    identifier: [{ system: 'urn:scribe-bridge:note', value: 'job-7-r2' }],
    status: 'current',
    docStatus: 'final',
    type: { coding: [{ system: 'http://loinc.org', code: '34117-2', display: 'History and physical note' }] },
    category: [
      {
        coding: [
          {
            system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category',
            code: 'clinical-note',
          },
        ],
      },
    ],
    subject: { identifier: PATIENT.identifier },
    date: '2026-05-02T15:10:00Z',
    author: [{ identifier: CLINICIAN.identifier }],
    custodian: { identifier: ORG.identifier },
    relatesTo: [
      { code: 'replaces', target: { identifier: { system: 'urn:scribe-bridge:note', value: 'job-7-r1' } } },
    ],
    content: [
      {
        attachment: {
          contentType: 'text/plain; charset=utf-8',
          data: Buffer.from('History of present illness: …').toString('base64'),
        },
      },
    ],
    context: {
      encounter: [{ identifier: { system: 'urn:oid:2.16.840.1.113883.3.1.3', value: 'ENC-42' } }],
      period: { start: '2026-05-02T14:40:00Z', end: '2026-05-02T14:55:00Z' },
    },
  };
}

function sentence(id: string, text: string): CompositionSection {
  return {
    id,
    text: { status: 'additional', div: `<div xmlns="http://www.w3.org/1999/xhtml">${text}</div>` },
    extension: [{ url: EXT.editClass, valueCode: 'ai-verbatim' }],
  };
}

/** A final Composition whose sections hold one sub-section per sentence (standards.md §4.5 option A). */
export function composition(): Composition {
  return {
    resourceType: 'Composition',
    id: 'note-123',
    identifier: { system: 'urn:scribe-bridge:note', value: 'job-7' },
    status: 'final',
    type: { coding: [{ system: 'http://loinc.org', code: '34117-2' }] },
    subject: { reference: 'Patient/p1' },
    date: '2026-05-02T15:04:00Z',
    author: [{ reference: 'Practitioner/c1' }],
    title: 'History and Physical',
    attester: [{ mode: 'legal', time: '2026-05-02T15:10:00Z', party: { reference: 'Practitioner/c1' } }],
    custodian: { reference: 'Organization/o1' },
    section: [
      {
        id: 'hpi',
        title: 'History of Present Illness',
        code: { coding: [{ system: 'http://loinc.org', code: '10164-2' }] },
        section: [
          sentence('hpi-s1', 'Pain started two days ago.'),
          sentence('hpi-s2', 'It is worse at night.'),
        ],
      },
      {
        id: 'plan',
        title: 'Plan',
        code: { coding: [{ system: 'http://loinc.org', code: '18776-5' }] },
        section: [sentence('plan-s1', 'Follow up in two weeks.')],
      },
    ],
  };
}

/**
 * A sentence-level Provenance: AI author and clinician verifier (both on behalf of the organisation),
 * `segments` transcript-segment entities with audio offsets and speaker roles, and a model-card entity
 * carrying the artifact hash.
 */
export function provenance(segments = 2): Provenance {
  return {
    resourceType: 'Provenance',
    extension: [{ url: EXT.editClass, valueCode: 'clinician-edited' }],
    target: [
      {
        reference: 'Composition/note-123/_history/1',
        extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/targetElement', valueUri: 'hpi-s1' }],
      },
    ],
    occurredPeriod: { start: '2026-05-02T14:40:00Z', end: '2026-05-02T14:55:00Z' },
    recorded: '2026-05-02T15:10:00Z',
    activity: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'CREATE' }],
    },
    agent: [
      {
        type: {
          coding: [
            { system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' },
          ],
        },
        who: SCRIBE,
        onBehalfOf: ORG,
      },
      {
        type: {
          coding: [
            { system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'verifier' },
          ],
        },
        who: CLINICIAN,
        onBehalfOf: ORG,
      },
    ],
    entity: [
      ...Array.from({ length: segments }, (_, i) => ({
        role: 'source' as const,
        what: {
          type: 'DocumentReference' as const,
          identifier: { system: 'urn:scribe-bridge:healthscribe:job-7:segment', value: `seg-${i}` },
        },
        extension: [
          {
            url: EXT.audioOffset,
            valueRange: { low: { value: i * 4.5, ...SECONDS }, high: { value: i * 4.5 + 3.25, ...SECONDS } },
          },
          { url: EXT.participantRole, valueString: i % 2 === 0 ? 'PATIENT_0' : 'CLINICIAN_0' },
        ],
        agent: [
          {
            type: {
              coding: [
                {
                  system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type',
                  code: 'informant',
                },
              ],
            },
            who: i % 2 === 0 ? PATIENT : CLINICIAN,
          },
        ],
      })),
      {
        role: 'derivation',
        what: {
          type: 'DocumentReference' as const,
          identifier: { system: 'urn:scribe-bridge:model-card', value: 'hs-2026-05' },
        },
        extension: [{ url: EXT.artifactSha256, valueString: 'ab'.repeat(32) }],
      },
    ],
  };
}

/** A FHIR document Bundle: Composition first, then the DocumentReference and a Provenance. */
export function documentBundle(): Bundle {
  return {
    resourceType: 'Bundle',
    identifier: { system: 'urn:scribe-bridge:document', value: 'job-7-r2' },
    type: 'document',
    timestamp: '2026-05-02T15:11:00Z',
    entry: [
      { fullUrl: 'urn:uuid:6c1f3e1e-5a55-4a43-9f0e-0d1f4b1b2a01', resource: composition() },
      { fullUrl: 'urn:uuid:6c1f3e1e-5a55-4a43-9f0e-0d1f4b1b2a02', resource: documentReference() },
      { fullUrl: 'urn:uuid:6c1f3e1e-5a55-4a43-9f0e-0d1f4b1b2a03', resource: provenance() },
    ],
  };
}
