/**
 * Required ValueSet bindings that @medplum/core does not check (it accepts `status: "signed"`, a bogus
 * `docStatus`, any category, any `type`, any `contentType`), for the elements scribe-bridge emits, plus the
 * extension checks of extensions.ts.
 *
 * Code lists come from the loaded ValueSets/CodeSystems (terminology.ts), with the R4 lists built in where
 * the files are absent. Two rules are deliberately stricter than US Core 8:
 * - `DocumentReference.category` must include `us-core-documentreference-category#clinical-note`. US Core's
 *   `uscore` slice is 0..*, but USCDI clinical notes are found by that category, so we always send it.
 * - `DocumentReference.type` must have a LOINC coding from `us-core-clinical-note-type` (the ten common
 *   clinical notes). The profile's binding is "all LOINC codes with SCALE_TYP = Doc", a filter we cannot
 *   enumerate without LOINC, and scribe-bridge only ever writes the common note types.
 */
import type {
  CodeableConcept,
  Composition,
  DocumentReference,
  Provenance,
  Resource,
} from '@medplum/fhirtypes';
import { ScribeError } from '../errors.ts';
import { checkExtensions } from './extensions.ts';
import { eachResource, type Issue, OWN_CHECKS, show } from './issues.ts';
import type { ProfileRegistry } from './profiles.ts';
import { type CodeList, describeCodes, hasCode, valueSetCodes } from './terminology.ts';

const R4_VS = 'http://hl7.org/fhir/ValueSet';
const US_CORE = 'http://hl7.org/fhir/us/core';
const LOINC = 'http://loinc.org';

/** Value sets the checks use. */
export const BOUND_VALUE_SETS = {
  documentReferenceStatus: `${R4_VS}/document-reference-status`,
  compositionStatus: `${R4_VS}/composition-status`,
  documentRelationshipType: `${R4_VS}/document-relationship-type`,
  attestationMode: `${R4_VS}/composition-attestation-mode`,
  provenanceEntityRole: `${R4_VS}/provenance-entity-role`,
  auditEventAction: `${R4_VS}/audit-event-action`,
  auditEventOutcome: `${R4_VS}/audit-event-outcome`,
  usCoreCategory: `${US_CORE}/ValueSet/us-core-documentreference-category`,
  usCoreClinicalNoteType: `${US_CORE}/ValueSet/us-core-clinical-note-type`,
} as const;

/** The US Core clinical-note category every DocumentReference we write carries. */
export const CLINICAL_NOTE_CATEGORY = {
  system: `${US_CORE}/CodeSystem/us-core-documentreference-category`,
  code: 'clinical-note',
} as const;

/**
 * A MIME type as RFC 6838 / RFC 2045 write it: `type/subtype`, then optional `; name=value` parameters
 * (value a token or a quoted string), e.g. `text/plain; charset=utf-8`.
 */
export const MIME_TYPE =
  /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(?:\s*;\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+=(?:[A-Za-z0-9!#$%&'*+.^_`|~-]+|"(?:[^"\\]|\\.)*"))*$/;

/**
 * Checks required bindings and loaded extension definitions on the resource — for a Bundle, on the Bundle
 * and each entry — and returns issues in the validator's style (paths rooted at `resource`).
 */
export function checkBindings(resource: Resource, registry: ProfileRegistry): Issue[] {
  return eachResource(resource, (r) => [...checkCodes(r, registry), ...checkExtensions(r, registry)]);
}

/** The required-binding code checks alone (no extension checks), for one resource. */
export function checkCodes(r: Resource, registry: ProfileRegistry): Issue[] {
  const ctx = new Checker(registry, r.resourceType);
  switch (r.resourceType) {
    case 'DocumentReference':
      checkDocumentReference(r, ctx);
      break;
    case 'Composition':
      checkComposition(r, ctx);
      break;
    case 'Provenance':
      checkProvenance(r, ctx);
      break;
    case 'AuditEvent':
      // The FHIR export of the trace (src/trace/fhir.ts).
      ctx.code(r.action, 'action', BOUND_VALUE_SETS.auditEventAction);
      ctx.code(r.outcome, 'outcome', BOUND_VALUE_SETS.auditEventOutcome);
      break;
  }
  return ctx.issues;
}

function checkDocumentReference(doc: DocumentReference, c: Checker): void {
  c.code(doc.status, 'status', BOUND_VALUE_SETS.documentReferenceStatus);
  c.code(doc.docStatus, 'docStatus', BOUND_VALUE_SETS.compositionStatus);
  if (doc.category) checkCategory(doc.category, c);
  if (doc.type) checkNoteType(doc.type, c);
  doc.content?.forEach((content, i) => {
    const type = content.attachment?.contentType;
    if (typeof type === 'string' && !MIME_TYPE.test(type)) {
      c.error(
        'code-invalid',
        `Value ${show(type)} is not a MIME type (type/subtype, optionally followed by ; name=value parameters)`,
        `content[${i}].attachment.contentType`,
      );
    }
  });
  doc.relatesTo?.forEach((rel, i) => {
    c.code(rel.code, `relatesTo[${i}].code`, BOUND_VALUE_SETS.documentRelationshipType);
  });
}

function checkCategory(categories: readonly CodeableConcept[], c: Checker): void {
  const allowed = c.codes(BOUND_VALUE_SETS.usCoreCategory);
  let found = false;
  categories.forEach((category, i) => {
    category.coding?.forEach((coding, j) => {
      if (coding.system !== CLINICAL_NOTE_CATEGORY.system || typeof coding.code !== 'string') return;
      if (hasCode(allowed, coding.system, coding.code)) found = true;
      else c.notIn(coding.code, `category[${i}].coding[${j}].code`, BOUND_VALUE_SETS.usCoreCategory, allowed);
    });
  });
  if (!found) {
    c.error(
      'required',
      `No category is ${CLINICAL_NOTE_CATEGORY.system}#${CLINICAL_NOTE_CATEGORY.code} (the US Core category clinical notes are searched by)`,
      'category',
    );
  }
}

function checkNoteType(type: CodeableConcept, c: Checker): void {
  const allowed = c.codes(BOUND_VALUE_SETS.usCoreClinicalNoteType);
  const loinc = (type.coding ?? [])
    .map((coding, j) => ({ coding, j }))
    .filter((x) => x.coding.system === LOINC);
  if (loinc.some((x) => typeof x.coding.code === 'string' && hasCode(allowed, LOINC, x.coding.code))) return;
  const first = loinc[0];
  c.error(
    'code-invalid',
    first
      ? `LOINC ${show(first.coding.code)} is not a US Core clinical note type (${BOUND_VALUE_SETS.usCoreClinicalNoteType}: ${describeCodes(allowed)})`
      : `type has no LOINC coding; use a US Core clinical note type (${describeCodes(allowed)})`,
    first ? `type.coding[${first.j}].code` : 'type',
  );
}

function checkComposition(comp: Composition, c: Checker): void {
  c.code(comp.status, 'status', BOUND_VALUE_SETS.compositionStatus);
  comp.attester?.forEach((a, i) => {
    c.code(a.mode, `attester[${i}].mode`, BOUND_VALUE_SETS.attestationMode);
  });
  comp.relatesTo?.forEach((rel, i) => {
    c.code(rel.code, `relatesTo[${i}].code`, BOUND_VALUE_SETS.documentRelationshipType);
  });
}

function checkProvenance(prov: Provenance, c: Checker): void {
  prov.entity?.forEach((e, i) => {
    c.code(e.role, `entity[${i}].role`, BOUND_VALUE_SETS.provenanceEntityRole);
  });
}

/** Collects issues for one resource; paths are given relative to it. */
class Checker {
  readonly issues: Issue[] = [];
  readonly #registry: ProfileRegistry;
  readonly #type: string;

  constructor(registry: ProfileRegistry, resourceType: string) {
    this.#registry = registry;
    this.#type = resourceType;
  }

  /** The value set's codes; a missing value set is a configuration error, not a resource problem. */
  codes(valueSet: string): CodeList {
    const list = valueSetCodes(this.#registry, valueSet);
    if (!list) {
      throw new ScribeError('PROFILES_INVALID', `the code list of ValueSet ${valueSet} is not available`, {
        hint: 'Load the US Core 8 package (or the file defining that ValueSet) with the FHIR profiles.',
      });
    }
    return list;
  }

  /** Checks a `code` element (no system) against a required value set; absent values are Medplum's job. */
  code(value: unknown, path: string, valueSet: string): void {
    if (typeof value !== 'string') return;
    const list = this.codes(valueSet);
    if (!hasCode(list, undefined, value)) this.notIn(value, path, valueSet, list);
  }

  notIn(value: string, path: string, valueSet: string, list: CodeList): void {
    this.error(
      'code-invalid',
      `Value ${show(value)} is not in the required value set ${valueSet} (${describeCodes(list)})`,
      path,
    );
  }

  error(code: string, message: string, path: string): void {
    this.issues.push({ severity: 'error', code, message, path: `${this.#type}.${path}`, source: OWN_CHECKS });
  }
}
