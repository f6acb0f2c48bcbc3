import { loadDataType, validateResource } from '@medplum/core';
import type { Composition, Provenance, Resource } from '@medplum/fhirtypes';
import { beforeAll, describe, expect, it } from 'vitest';
import { BOUND_VALUE_SETS, checkBindings, MIME_TYPE } from './bindings.ts';
import { validateFhir } from './fhir.ts';
import type { Issue } from './issues.ts';
import { narrativeProblems } from './narrative.ts';
import { findStructureDefinition, loadProfiles, type ProfileRegistry } from './profiles.ts';
import { describeCodes, valueSetCodes } from './terminology.ts';
import { composition, documentReference, EXT, PROFILES_DIR, provenance } from './testdata.ts';

let registry: ProfileRegistry;
beforeAll(async () => {
  registry = await loadProfiles([PROFILES_DIR]);
});

const found = (r: Resource): string[] =>
  checkBindings(r, registry).map((i: Issue) => `${i.path}: ${i.message}`);

describe('valueSetCodes', () => {
  it('reads code lists from the loaded files, including nested concepts', () => {
    expect(describeCodes(valueSetCodes(registry, BOUND_VALUE_SETS.provenanceEntityRole)!)).toBe(
      'derivation | revision | quotation | source | removal',
    );
    expect(describeCodes(valueSetCodes(registry, BOUND_VALUE_SETS.usCoreClinicalNoteType)!)).toContain(
      '34117-2',
    );
    expect(describeCodes(valueSetCodes(registry, `${BOUND_VALUE_SETS.attestationMode}|4.0.1`)!)).toBe(
      'personal | professional | legal | official',
    );
  });

  it('falls back to the R4 lists where the files lack the value set or its code system', () => {
    expect(registry.valueSets.has(BOUND_VALUE_SETS.documentReferenceStatus)).toBe(false);
    expect(describeCodes(valueSetCodes(registry, BOUND_VALUE_SETS.documentReferenceStatus)!)).toBe(
      'current | superseded | entered-in-error',
    );
    expect(registry.codeSystems.has('http://hl7.org/fhir/composition-status')).toBe(false);
    expect(describeCodes(valueSetCodes(registry, BOUND_VALUE_SETS.compositionStatus)!)).toBe(
      'preliminary | final | amended | entered-in-error',
    );
  });

  it('has no list for a value set defined by a filter (all LOINC document codes)', () => {
    expect(
      valueSetCodes(registry, 'http://hl7.org/fhir/us/core/ValueSet/us-core-documentreference-type'),
    ).toBe(undefined);
  });
});

describe('checkBindings: DocumentReference', () => {
  it('accepts the valid note', () => {
    expect(found(documentReference())).toEqual([]);
  });

  it('requires the clinical-note category and rejects other codes of the US Core category system', () => {
    const doc = documentReference();
    doc.category = [{ coding: [{ system: 'http://loinc.org', code: '11506-3' }] }];
    expect(found(doc)).toEqual([
      expect.stringMatching(
        /^DocumentReference.category: No category is .*us-core-documentreference-category#clinical-note/,
      ),
    ]);
    doc.category.push({
      coding: [
        { system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category', code: 'note' },
      ],
    });
    expect(found(doc)).toHaveLength(2);
    expect(found(doc)[0]).toMatch(
      /^DocumentReference.category\[1\].coding\[0\].code: Value "note" is not in/,
    );
  });

  it('requires a LOINC note type from us-core-clinical-note-type (stricter than the profile)', () => {
    const doc = documentReference();
    doc.type = { coding: [{ system: 'http://snomed.info/sct', code: '371530004' }] };
    expect(found(doc)).toEqual([expect.stringMatching(/^DocumentReference.type: type has no LOINC coding/)]);
    doc.type.coding!.push({ system: 'http://loinc.org', code: '11506-3' });
    expect(found(doc)).toEqual([]);
  });

  it('checks contentType is a MIME type', () => {
    for (const ok of [
      'text/plain',
      'text/plain; charset=utf-8',
      'application/fhir+json',
      'text/html;charset="UTF-8"',
    ]) {
      expect(MIME_TYPE.test(ok), ok).toBe(true);
    }
    for (const bad of ['bogus', 'text/', '/plain', 'text/plain;', 'text/plain; charset', 'text plain/x']) {
      expect(MIME_TYPE.test(bad), bad).toBe(false);
    }
    const doc = documentReference();
    doc.content[0]!.attachment.contentType = 'plain text';
    expect(found(doc)).toEqual([
      expect.stringMatching(
        /^DocumentReference.content\[0\].attachment.contentType: Value "plain text" is not a MIME/,
      ),
    ]);
  });
});

describe('checkBindings: Composition and Provenance', () => {
  it('checks Composition status, attester mode and relatesTo code', () => {
    const comp = composition();
    (comp as { status: string }).status = 'draft';
    (comp.attester![0] as { mode: string }).mode = 'signer';
    comp.relatesTo = [
      { code: 'supersedes' as 'replaces', targetIdentifier: { system: 'urn:x', value: '1' } },
    ];
    expect(found(comp).map((s) => s.split(':')[0])).toEqual([
      'Composition.status',
      'Composition.attester[0].mode',
      'Composition.relatesTo[0].code',
    ]);
  });

  it('checks Provenance.entity.role (Medplum accepts "bogus")', () => {
    const prov = provenance();
    (prov.entity![0] as { role: string }).role = 'bogus';
    expect(() => validateResource(prov)).not.toThrow();
    expect(found(prov)).toEqual([
      expect.stringMatching(/^Provenance.entity\[0\].role: Value "bogus" is not in .*provenance-entity-role/),
    ]);
  });
});

describe('checkBindings: project extensions', () => {
  it('catches a wrong value type, which Medplum does not check even with the extension definition loaded', () => {
    const prov = provenance();
    prov.extension = [{ url: EXT.editClass, valueString: 'ai-verbatim' }];
    loadDataType(findStructureDefinition(registry, EXT.editClass)!);
    expect(validateResource(prov)).toEqual([]);
    expect(found(prov)).toEqual([
      `Provenance.extension[0].value[x]: Extension ${EXT.editClass} needs valueCode, not valueString`,
    ]);
  });

  it('checks the edit-class code against its value set', () => {
    const prov = provenance();
    prov.extension = [{ url: EXT.editClass, valueCode: 'ai-edited' }];
    expect(found(prov)).toEqual([
      expect.stringMatching(
        /"ai-edited" is not in the required value set .*edit-class \(ai-verbatim \| clinician-edited/,
      ),
    ]);
  });

  it('accepts edit-class on nested Composition sections and rejects it where its context does not allow', () => {
    expect(found(composition())).toEqual([]);
    const comp: Composition = {
      ...composition(),
      extension: [{ url: EXT.editClass, valueCode: 'ai-verbatim' }],
    };
    expect(found(comp)).toEqual([
      `Composition.extension[0]: Extension ${EXT.editClass} is not allowed on Composition (allowed on: Provenance, Composition.section)`,
    ]);
  });

  it('checks audio-offset units and order, and the artifact hash form', () => {
    const prov: Provenance = provenance(2);
    const [first, second, card] = prov.entity!;
    first!.extension![0]!.valueRange!.high!.code = 'ms';
    second!.extension![0]!.valueRange = {
      low: { value: 9, unit: 's', system: 'http://unitsofmeasure.org', code: 's' },
    };
    card!.extension![0]!.valueString = 'AB'.repeat(32);
    expect(found(prov)).toEqual([
      expect.stringMatching(
        /^Provenance.entity\[0\].extension\[0\].value\[x\]: Constraint audio-offset-2 not met/,
      ),
      expect.stringMatching(
        /^Provenance.entity\[1\].extension\[0\].value\[x\]: Constraint audio-offset-1 not met/,
      ),
      expect.stringMatching(
        /^Provenance.entity\[2\].extension\[0\].value\[x\]: Constraint artifact-sha256-1 not met/,
      ),
    ]);
  });

  it('reports an audio offset that ends before it starts, as audio-offset-3 and as the Range rule rng-2', () => {
    const prov = provenance(1);
    prov.entity![0]!.extension![0]!.valueRange!.low!.value = 10;
    const path = 'Provenance.entity[0].extension[0].value[x]';
    expect(found(prov)).toEqual([
      `${path}: Constraint audio-offset-3 not met: low is not negative and not after high`,
    ]);
    expect(validateFhir(prov, registry).map((i) => `${i.path}: ${i.message.split(':')[0]}`)).toEqual([
      `${path}: Constraint rng-2 not met`,
      `${path}: Constraint audio-offset-3 not met`,
    ]);
  });

  it('checks cardinality, nested extensions and missing values', () => {
    const prov = provenance(1);
    const ext = prov.entity![0]!.extension!;
    ext.push({ url: EXT.participantRole, valueString: 'CLINICIAN_0' });
    ext.push({ url: EXT.artifactSha256, extension: [{ url: 'x', valueString: 'y' }] });
    expect(found(prov)).toEqual([
      `Provenance.entity[0].extension[2]: Extension ${EXT.participantRole} may appear at most 1 time(s) here`,
      `Provenance.entity[0].extension[3].extension: Extension ${EXT.artifactSha256} does not allow nested extensions`,
      `Provenance.entity[0].extension[3].value[x]: Extension ${EXT.artifactSha256} needs a value (valueString)`,
    ]);
  });

  it('runs the extension checks on Bundle entries and contained resources, with their paths', () => {
    const device = {
      resourceType: 'Device' as const,
      id: 'scribe',
      extension: [{ url: EXT.artifactSha256, valueString: 'not-a-hash' }],
    };
    const prov = { ...provenance(1), contained: [device] };
    expect(found(prov)).toEqual([
      expect.stringMatching(
        /^Provenance.contained\[0\].extension\[0\].value\[x\]: Constraint artifact-sha256-1/,
      ),
    ]);
    const issues = validateFhir(
      {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ resource: documentReference() }, { resource: device }],
      },
      registry,
    );
    expect(issues.map((i) => i.path)).toEqual(['Bundle.entry[1].resource.extension[0].value[x]']);
  });
});

describe('narrativeProblems', () => {
  const div = (inner: string) => `<div xmlns="http://www.w3.org/1999/xhtml">${inner}</div>`;

  it('accepts basic formatting, links and images', () => {
    expect(
      narrativeProblems(div('<p>Pain <b>7/10</b>, see <a href="#x">here</a> <img src="#i"/></p>')),
    ).toEqual([]);
    expect(narrativeProblems(div('<img src="#i"/>'))).toEqual([]);
  });

  it('rejects scripts, forms, event handlers and script URLs (txt-1)', () => {
    expect(narrativeProblems(div('<form><input/></form>'))[0]).toMatch(/found <form>, <input>/);
    expect(narrativeProblems(div('<p onclick="x()">a</p>'))[0]).toMatch(/event-handler attribute on <p>/);
    expect(narrativeProblems(div('<a href="javascript:x()">a</a>'))[0]).toMatch(/script URL on <a>/);
  });

  it('rejects whitespace-only content (txt-2) and a root without the XHTML namespace', () => {
    expect(narrativeProblems(div(' <p> &nbsp; </p> '))).toEqual([
      expect.stringMatching(/^Constraint txt-2 not met/),
    ]);
    expect(narrativeProblems('<p>text</p>')).toEqual([expect.stringMatching(/must be a <div xmlns=/)]);
  });
});
