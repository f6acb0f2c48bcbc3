/**
 * Promise: a write request that does not fit the resource it carries (another type, another id, a duplicate check
 * on an identifier the resource lacks) is refused before it is sent, in a mapping's `request:` and in each entry of
 * a transaction Bundle; the shipped mappings' requests fit.
 */
import { describe, expect, it } from 'vitest';
import { render } from '../map/engine.ts';
import { probeNotes } from '../map/probes.ts';
import { MappingRegistry } from '../map/registry.ts';
import { requestIssues } from './requests.ts';

const doc = {
  resourceType: 'DocumentReference',
  id: 'doc-1',
  identifier: [{ system: 'urn:x:note', value: 'n 1|a' }],
};
const encoded = `identifier=${encodeURIComponent('urn:x:note|n 1|a')}`;

describe('requestIssues', () => {
  it('accepts a conditional create, a PUT by id and a conditional update that fit the resource', () => {
    expect(requestIssues(doc, { method: 'POST', url: 'DocumentReference', ifNoneExist: encoded })).toEqual(
      [],
    );
    expect(requestIssues(doc, { method: 'PUT', url: 'DocumentReference/doc-1' })).toEqual([]);
    expect(requestIssues(doc, { method: 'PUT', url: `DocumentReference?${encoded}` })).toEqual([]);
    // Written unencoded, as mappings write it (the transport encodes): a + or % in a value is itself.
    const plus = { ...doc, identifier: [{ system: 'urn:x:mrn', value: 'A+B%zz' }] };
    expect(
      requestIssues(plus, {
        method: 'POST',
        url: 'DocumentReference',
        ifNoneExist: 'identifier=urn:x:mrn|A+B%zz',
      }),
    ).toEqual([]);
    expect(
      requestIssues(doc, {
        method: 'POST',
        url: 'DocumentReference',
        ifNoneExist: 'identifier=urn:x:note|n 1|a',
      }),
    ).toEqual([]);
  });

  it('refuses another type, another id, and a search for an identifier the resource lacks', () => {
    expect(requestIssues(doc, { method: 'POST', url: 'Observation' })).toEqual([
      { path: 'request.url', message: 'the request writes Observation but carries a DocumentReference' },
    ]);
    expect(requestIssues(doc, { method: 'PUT', url: 'DocumentReference/doc-2' })[0]!.message).toMatch(
      /PUT to Type\/id must carry a resource with that id/,
    );
    const other = requestIssues(doc, {
      method: 'POST',
      url: 'DocumentReference',
      ifNoneExist: 'identifier=urn:x:note|n-2',
    });
    expect(other).toEqual([
      {
        path: 'request.ifNoneExist',
        message:
          'searches for an identifier the resource does not carry: the conditional write would never find it, so every resend would write a duplicate',
      },
    ]);
    // Values never appear in the message (they may be identifiers of a person).
    expect(JSON.stringify(other)).not.toContain('n-2');
    expect(
      requestIssues(doc, { method: 'POST', url: 'DocumentReference', ifNoneExist: 'identifier=n-2' })[0]!
        .message,
    ).toBe('an identifier search needs system|value');
  });

  it('checks each entry of a transaction Bundle, and fits every shipped mapping on every probe note', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: doc, request: { method: 'POST', url: 'DocumentReference', ifNoneExist: encoded } },
        {
          resource: { resourceType: 'Provenance', id: 'p-1' },
          request: { method: 'PUT', url: 'Observation/p-1' },
        },
        {
          resource: { resourceType: 'Provenance', id: 'p-1' },
          request: { method: 'PUT', url: 'Provenance/p-9' },
        },
      ],
    };
    expect(requestIssues(bundle, undefined).map((i) => i.path)).toEqual([
      'Bundle.entry[1].request.url',
      'Bundle.entry[2].request.url',
    ]);
    const registry = new MappingRegistry();
    for (const id of ['us-core-docref', 'fhir-transaction', 'fhir-document']) {
      for (const p of await probeNotes()) {
        const r = render(registry.get(id), { note: p.note, ...(p.prior ? { prior: p.prior } : {}) });
        expect(requestIssues(r.value, r.request), `${id} × ${p.name}`).toEqual([]);
      }
    }
  });
});
