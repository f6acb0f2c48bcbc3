/**
 * The FHIR answer table of standards.md §10, Retry-After, receipts, and query encoding: the pure parts of
 * the FHIR destination (the HTTP paths are in test/fhir-destination.int.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { classifyAnswer, parseLocation, parseRetryAfter, receiptOf } from './fhir-classify.ts';
import { logicalReferences, withResolvedReferences } from './fhir-references.ts';
import { encodeQuery, searchPath, tokenOf } from './fhir-request.ts';

const NOW = Date.parse('2026-11-20T12:00:00Z');
const oo = (...codes: string[]) => ({
  resourceType: 'OperationOutcome',
  issue: codes.map((code) => ({ severity: 'error', code })),
});

describe('classifyAnswer', () => {
  it.each([
    [200, undefined, 'delivered'],
    [201, undefined, 'delivered'],
    [408, undefined, 'retry'],
    [500, oo('exception'), 'retry'],
    [503, undefined, 'retry'],
    [429, oo('throttled'), 'retry'],
    [409, oo('conflict'), 'ambiguous'],
    [412, undefined, 'ambiguous'],
    [400, oo('duplicate'), 'ambiguous'],
    [400, oo('invalid'), 'rejected'],
    [422, oo('business-rule'), 'rejected'],
    [422, oo('required', 'value'), 'rejected'],
    [404, oo('not-found'), 'rejected'],
    [400, oo('transient'), 'retry'],
    [400, oo('throttled', 'timeout'), 'retry'],
    [400, oo('invalid', 'transient'), 'rejected'],
    [401, undefined, 'auth'],
    [403, oo('forbidden'), 'auth'],
    [400, oo('login'), 'auth'],
    [400, undefined, 'rejected'],
    [302, undefined, 'rejected'],
  ] as const)('%i %j → %s', (status, body, outcome) => {
    expect(classifyAnswer(status, {}, body, NOW).outcome).toBe(outcome);
  });

  it('ignores warning issues when there are errors', () => {
    const body = {
      resourceType: 'OperationOutcome',
      issue: [
        { severity: 'warning', code: 'informational' },
        { severity: 'error', code: 'business-rule' },
      ],
    };
    expect(classifyAnswer(422, {}, body, NOW).issueCodes).toEqual(['business-rule']);
  });

  it('Retry-After on 429 and 503, as seconds or an HTTP-date', () => {
    expect(classifyAnswer(429, { 'retry-after': '120' }, undefined, NOW).retryAfterMs).toBe(120_000);
    const date = new Date(NOW + 30_000).toUTCString();
    expect(classifyAnswer(503, { 'retry-after': date }, undefined, NOW).retryAfterMs).toBe(30_000);
    expect(parseRetryAfter('Thu, 19 Nov 2026 00:00:00 GMT', NOW)).toBe(0);
    expect(parseRetryAfter('soon', NOW)).toBeUndefined();
    expect(parseRetryAfter('5.5', NOW)).toBeUndefined();
  });
});

describe('receipts', () => {
  it('from Location and ETag', () => {
    expect(parseLocation('https://ehr/fhir/R4/DocumentReference/abc/_history/3')).toEqual({
      resourceType: 'DocumentReference',
      id: 'abc',
      versionId: '3',
    });
    expect(parseLocation('DocumentReference/abc')).toEqual({ resourceType: 'DocumentReference', id: 'abc' });
    const r = receiptOf(
      201,
      { location: 'https://ehr/fhir/R4/DocumentReference/abc', etag: 'W/"7"' },
      undefined,
    );
    expect(r).toMatchObject({ resourceType: 'DocumentReference', id: 'abc', versionId: '7', created: true });
  });

  it('from a transaction response: its DocumentReference entry first, every entry listed', () => {
    const body = {
      resourceType: 'Bundle',
      type: 'transaction-response',
      entry: [
        { response: { status: '200 OK', location: 'Composition/c1/_history/2' } },
        { response: { status: '201 Created', location: 'DocumentReference/d1/_history/1', etag: 'W/"1"' } },
      ],
    };
    const r = receiptOf(200, {}, body);
    expect(r).toMatchObject({ resourceType: 'DocumentReference', id: 'd1', versionId: '1', created: true });
    expect(r.entries).toHaveLength(2);
  });
});

describe('queries', () => {
  it('encodes what would change the query, keeps | : / literal', () => {
    expect(encodeQuery('identifier=urn:scribe-bridge:t:note|enc-1 r&1')).toBe(
      'identifier=urn:scribe-bridge:t:note|enc-1%20r&1',
    );
    expect(encodeQuery('identifier=http://x/sys|a+b#c%d')).toBe('identifier=http://x/sys|a%2Bb%23c%25d');
    expect(tokenOf('urn:x', 'a|b,c')).toBe('urn:x|a\\|b\\,c');
    expect(searchPath('Patient', 'urn:oid:1.2', 'MRN 1')).toBe('Patient?identifier=urn:oid:1.2|MRN%201');
  });
});

describe('logical references', () => {
  const doc = {
    resourceType: 'DocumentReference',
    subject: { identifier: { system: 'urn:mrn', value: 'M1' } },
    author: [{ identifier: { system: 'npi', value: 'P1' } }, { reference: 'urn:uuid:dev' }],
    custodian: { identifier: { system: 'npi', value: 'O1' }, display: 'Clinic' },
    context: { encounter: [{ identifier: { system: 'urn:enc', value: 'E1' } }] },
  };

  it('finds identifier-only references by element, typed, once each', () => {
    expect(logicalReferences(doc).map((r) => `${r.resourceType} ${r.value}`)).toEqual([
      'Patient M1',
      'Practitioner P1',
      'Organization O1',
      'Encounter E1',
    ]);
  });

  it('rewrites a copy, reference first, identifier kept; unknown ones untouched', () => {
    const out = withResolvedReferences(doc, new Map([['Organization|npi|O1', 'org-9']])) as typeof doc;
    expect(JSON.stringify(out.custodian)).toBe(
      '{"reference":"Organization/org-9","identifier":{"system":"npi","value":"O1"},"display":"Clinic"}',
    );
    expect(out.subject).toEqual(doc.subject);
    expect(doc.custodian).not.toHaveProperty('reference');
  });
});
