import { validateResource } from '@medplum/core';
import type { Composition, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { beforeAll, describe, expect, it } from 'vitest';
import { ScribeError } from '../errors.ts';
import { assertValidFhir, US_CORE_PROVENANCE, validateFhir } from './fhir.ts';
import { type Issue, isError } from './issues.ts';
import { findStructureDefinition, loadProfiles, type ProfileRegistry } from './profiles.ts';
import { usableProfile } from './snapshot-fix.ts';
import { composition, documentBundle, documentReference, PROFILES_DIR, provenance } from './testdata.ts';

let registry: ProfileRegistry;
beforeAll(async () => {
  registry = await loadProfiles([PROFILES_DIR]);
});

const errors = (r: Resource): Issue[] => validateFhir(r, registry).filter(isError);

/** Asserts exactly one error was found, at `path`, and returns it. */
function onlyError(r: Resource, path: string, message: RegExp): Issue {
  const found = errors(r);
  expect(found, JSON.stringify(found, null, 1)).toHaveLength(1);
  expect(found[0]).toMatchObject({ path, message: expect.stringMatching(message) });
  return found[0]!;
}

describe('validateFhir: US Core DocumentReference', () => {
  it('accepts a complete clinical note with logical references, context and relatesTo', () => {
    expect(validateFhir(documentReference(), registry)).toEqual([]);
  });

  it('reports a missing category (a US Core rule base R4 does not have)', () => {
    const doc = documentReference();
    delete doc.category;
    const issue = onlyError(doc, 'DocumentReference.category', /^Missing required property$/);
    expect(issue.source).toBe(
      'http://hl7.org/fhir/us/core/StructureDefinition/us-core-documentreference|8.0.0',
    );
  });

  it('reports an attachment with neither data nor url (us-core-6)', () => {
    const doc = documentReference();
    doc.content[0]!.attachment = { contentType: 'text/plain' };
    onlyError(doc, 'DocumentReference.content[0].attachment', /^Constraint us-core-6 not met/);
  });

  it('reports an instant without time zone', () => {
    const doc = documentReference();
    doc.date = '2026-05-02T15:10:00';
    onlyError(doc, 'DocumentReference.date', /^Invalid instant format$/);
  });

  it('reports an unknown property', () => {
    const doc = { ...documentReference(), note: 'x' };
    onlyError(doc, 'DocumentReference.note', /^Invalid additional property "note"$/);
  });

  it('reports status "signed" with the allowed codes', () => {
    const doc = { ...documentReference(), status: 'signed' } as unknown as Resource;
    onlyError(
      doc,
      'DocumentReference.status',
      /"signed" is not in .*document-reference-status \(current \| superseded/,
    );
  });

  it('reports docStatus "bogus"', () => {
    const doc = { ...documentReference(), docStatus: 'bogus' } as unknown as Resource;
    onlyError(
      doc,
      'DocumentReference.docStatus',
      /"bogus" is not in .*composition-status \(preliminary \| final/,
    );
  });

  it('reports a LOINC document type that is not a US Core clinical note type', () => {
    const doc = documentReference();
    doc.type = { coding: [{ system: 'http://loinc.org', code: '11535-2' }] };
    onlyError(
      doc,
      'DocumentReference.type.coding[0].code',
      /LOINC "11535-2" is not a US Core clinical note type/,
    );
  });

  it('reports relatesTo code "bogus"', () => {
    const doc = documentReference();
    (doc.relatesTo![0] as { code: string }).code = 'bogus';
    onlyError(doc, 'DocumentReference.relatesTo[0].code', /"bogus" is not in .*document-relationship-type/);
  });

  it('reports a data attachment without contentType (att-1, a data-type invariant Medplum skips)', () => {
    const doc = documentReference();
    delete doc.content[0]!.attachment.contentType;
    expect(() => validateResource(doc)).not.toThrow();
    onlyError(doc, 'DocumentReference.content[0].attachment', /^Constraint att-1 not met/);
  });

  it('reports a context period that ends before it starts (per-1)', () => {
    const doc = documentReference();
    doc.context!.period = { start: '2026-05-02T15:00:00Z', end: '2026-05-02T14:00:00Z' };
    onlyError(doc, 'DocumentReference.context.period', /^Constraint per-1 not met/);
  });

  it('accepts inline content above Medplum’s 1 MiB default (US Core 9 servers must take 5 MiB)', () => {
    const doc = documentReference();
    doc.content[0]!.attachment.data = Buffer.alloc(3 * 1024 * 1024, 'a').toString('base64');
    expect(errors(doc)).toEqual([]);
    expect(
      validateFhir(doc, registry, { base64BinaryMaxBytes: 1024 * 1024 }).filter(isError)[0]?.message,
    ).toMatch(/base64Binary exceeds/);
  });
});

describe('validateFhir: Composition', () => {
  it('accepts nested sentence sections, each with its own id and additional narrative', () => {
    expect(validateFhir(composition(), registry)).toEqual([]);
  });

  it('reports an empty section (cmp-1)', () => {
    const comp = composition();
    comp.section!.push({ id: 'empty', title: 'Empty' });
    onlyError(comp, 'Composition.section[2]', /^Constraint cmp-1 not met/);
  });

  it('reports narrative with a script or without XHTML namespace (txt-1), which Medplum accepts', () => {
    const comp = composition();
    const sentence = comp.section![0]!.section![0]!;
    sentence.text!.div = '<div xmlns="http://www.w3.org/1999/xhtml">Pain <script>alert(1)</script></div>';
    expect(() => validateResource(comp)).not.toThrow();
    onlyError(
      comp,
      'Composition.section[0].section[0].text.div',
      /^Constraint txt-1 not met.*found <script>/,
    );
    sentence.text!.div = '<div>Pain</div>';
    onlyError(comp, 'Composition.section[0].section[0].text.div', /xmlns="http:\/\/www.w3.org\/1999\/xhtml"/);
  });

  it('reports attester mode and status codes outside their value sets', () => {
    const comp = { ...composition(), status: 'signed' } as unknown as Composition;
    comp.attester![0]!.mode = 'signer' as 'legal';
    expect(errors(comp).map((i) => i.path)).toEqual(['Composition.status', 'Composition.attester[0].mode']);
  });
});

describe('validateFhir: US Core Provenance', () => {
  const profile = (): StructureDefinition => findStructureDefinition(registry, US_CORE_PROVENANCE)!;

  it('needs the snapshot workaround: Medplum 5.2.13 cannot use the US Core 8 snapshot as published', () => {
    expect(() => validateResource(provenance(), { profile: profile() })).toThrow(
      /Invalid slice start before discriminator: ProvenanceTransmitter \(Provenance\.entity\.agent\)/,
    );
    const fixed = usableProfile(profile());
    expect(fixed).not.toBe(profile());
    expect(() => validateResource(provenance(), { profile: fixed })).not.toThrow();
    // The loaded profile is untouched: entity.agent still points at base R4 by contentReference.
    const entityAgent = profile().snapshot!.element!.find((e) => e.id === 'Provenance.entity.agent');
    expect(entityAgent?.contentReference).toBe(
      'http://hl7.org/fhir/StructureDefinition/Provenance#Provenance.agent',
    );
    const inlined = fixed.snapshot!.element!.filter((e) => e.path.startsWith('Provenance.entity.agent'));
    expect(inlined.map((e) => e.path)).toContain('Provenance.entity.agent.who');
  });

  it('accepts a sentence Provenance with the project extensions', () => {
    expect(validateFhir(provenance(), registry)).toEqual([]);
  });

  it('reports a missing recorded', () => {
    const prov = provenance();
    delete (prov as { recorded?: string }).recorded;
    onlyError(prov, 'Provenance.recorded', /^Missing required property$/);
  });

  it('reports an agent without who, also inside an entity', () => {
    const prov = provenance();
    delete (prov.agent[0] as { who?: unknown }).who;
    delete (prov.entity![0]!.agent![0] as { who?: unknown }).who;
    const paths = errors(prov).map((i) => `${i.path}: ${i.message}`);
    expect(paths).toContain('Provenance.agent[0].who: Missing required property');
    expect(paths).toContain('Provenance.entity[0].agent[0].who: Missing required property');
  });

  it('enforces provenance-1 (onBehalfOf for a Practitioner or Device agent) when the type is known', () => {
    const prov = provenance();
    delete prov.agent[1]!.onBehalfOf;
    onlyError(prov, 'Provenance.agent[1]', /^Constraint provenance-1 not met/);
    prov.agent[1]!.who = { reference: 'Practitioner/c1' };
    onlyError(prov, 'Provenance.agent[1]', /^Constraint provenance-1 not met/);
  });

  it('warns that provenance-1 cannot be checked for an identifier-only who (Medplum passes it silently)', () => {
    const prov = provenance();
    delete prov.agent[1]!.onBehalfOf;
    prov.agent[1]!.who = { identifier: { system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' } };
    const issues = validateFhir(prov, registry);
    expect(issues.filter(isError)).toEqual([]);
    expect(issues).toContainEqual(
      expect.objectContaining({
        severity: 'warning',
        path: 'Provenance.agent[1].who',
        message: expect.stringMatching(/set Reference.type/),
      }),
    );
  });

  it('does not apply provenance-1 to entity agents (they follow base R4 Provenance.agent)', () => {
    const prov = provenance();
    prov.entity![1]!.agent![0]!.who = { reference: 'Practitioner/c1' };
    expect(errors(prov)).toEqual([]);
  });
});

describe('validateFhir: Bundle and meta.profile', () => {
  it('accepts a document Bundle and validates each entry against its profiles, with Bundle paths', () => {
    expect(validateFhir(documentBundle(), registry)).toEqual([]);
    const bundle = documentBundle();
    delete (bundle.entry![1]!.resource as { category?: unknown }).category;
    delete (bundle.entry![2]!.resource as { recorded?: unknown }).recorded;
    expect(
      errors(bundle)
        .map((i) => `${i.path}: ${i.message}`)
        .sort(),
    ).toEqual([
      'Bundle.entry[1].resource.category: Missing required property',
      'Bundle.entry[2].resource.recorded: Missing required property',
    ]);
  });

  it('resolves urn:uuid references through fullUrl: no spurious warnings, and provenance-1 still applies', () => {
    const bundle = documentBundle();
    const prov = bundle.entry![2]!.resource as ReturnType<typeof provenance>;
    bundle.entry!.push({
      fullUrl: 'urn:uuid:6c1f3e1e-5a55-4a43-9f0e-0d1f4b1b2a10',
      resource: { resourceType: 'Practitioner', id: 'c1' },
    });
    prov.agent[1]!.who = { reference: 'urn:uuid:6c1f3e1e-5a55-4a43-9f0e-0d1f4b1b2a10' };
    expect(validateFhir(bundle, registry)).toEqual([]);
    delete prov.agent[1]!.onBehalfOf;
    expect(validateFhir(bundle, registry)).toEqual([
      expect.objectContaining({
        path: 'Bundle.entry[2].resource.agent[1]',
        message: expect.stringMatching(/provenance-1 not met/),
      }),
    ]);
  });

  it('reports document Bundle rules (bdl-10: timestamp)', () => {
    const bundle = documentBundle();
    delete bundle.timestamp;
    onlyError(bundle, 'Bundle', /^Constraint bdl-10 not met/);
  });

  it('applies a loaded profile named in meta.profile, which Medplum alone ignores', () => {
    const base = findStructureDefinition(registry, 'http://hl7.org/fhir/StructureDefinition/Composition')!;
    const strict: StructureDefinition = structuredClone(base);
    strict.url = 'urn:test:composition-with-confidentiality';
    strict.snapshot!.element!.find((e) => e.id === 'Composition.confidentiality')!.min = 1;
    const withStrict: ProfileRegistry = {
      ...registry,
      structureDefinitions: new Map([...registry.structureDefinitions, [strict.url, strict]]),
    };
    const comp = { ...composition(), meta: { profile: [strict.url] } };
    expect(() => validateResource(comp)).not.toThrow();
    const found = validateFhir(comp, withStrict).filter(isError);
    expect(found).toEqual([
      expect.objectContaining({ path: 'Composition.confidentiality', source: `${strict.url}|4.0.1` }),
    ]);
  });

  it('warns about a meta.profile that is not loaded and rejects one for another resource type', () => {
    const comp = { ...composition(), meta: { profile: ['http://example.org/StructureDefinition/unknown'] } };
    expect(validateFhir(comp, registry)).toEqual([
      expect.objectContaining({
        severity: 'warning',
        code: 'not-supported',
        path: 'Composition.meta.profile',
      }),
    ]);
    const prov = { ...provenance(), meta: { profile: [US_CORE_PROVENANCE] } };
    expect(validateFhir(prov, registry)).toEqual([]);
    const doc = { ...documentReference(), meta: { profile: [US_CORE_PROVENANCE] } };
    onlyError(doc, 'DocumentReference.meta.profile', /is for Provenance, not DocumentReference/);
  });
});

describe('assertValidFhir', () => {
  it('returns the warnings of a valid resource', () => {
    expect(assertValidFhir(documentReference(), registry)).toEqual([]);
  });

  it('throws a ScribeError listing every error with its path', () => {
    const doc = { ...documentReference(), status: 'signed', docStatus: 'bogus' } as unknown as Resource;
    const err = (() => {
      try {
        assertValidFhir(doc, registry);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ScribeError);
    const e = err as ScribeError;
    expect(e.detail).toMatch(/not valid FHIR: 2 error\(s\), first: Value "signed"/);
    expect(e.where).toBe('DocumentReference.status');
    expect(e.issues.map((i) => i.where)).toEqual(['DocumentReference.status', 'DocumentReference.docStatus']);
  });

  it('fails loudly when the US Core profiles are not loaded', async () => {
    const bare = await loadProfiles([]);
    expect(() => validateFhir(documentReference(), bare)).toThrow(/us-core-documentreference is not loaded/);
  });
});
