/**
 * Keeping every delivered resource conformant, at a cost a typical note can afford (docs/mappings.md
 * § Validation).
 *
 * - `prove(mapping)`, once per mapping version: render every probe note (src/map/probes.ts) and validate each
 *   output in full — base R4, US Core 8 DocumentReference / Provenance, the project's extension profiles,
 *   required bindings, invariants (fhir.ts). This proves what cannot vary between notes: the structure the
 *   templates write, profile slices and invariants, fixed codes.
 * - `check(rendering)`, per note: what can vary — a typed walk of the output (typed-walk.ts: known elements,
 *   cardinality, required elements, every primitive's lexical form, ext-1 and the value rules of our own
 *   extensions) and the required-binding code checks.
 *
 * A rendering that fails either is refused with the validator's messages (OUTPUT_INVALID) and never delivered.
 */
import type { Resource } from '@medplum/fhirtypes';
import { ScribeError } from '../errors.ts';
import { type Rendering, render } from '../map/engine.ts';
import { DEFAULT_DELIMITERS, parseDelimiters } from '../map/hl7.ts';
import type { Mapping } from '../map/mapping-file.ts';
import { probeNotes } from '../map/probes.ts';
import { checkCodes } from './bindings.ts';
import { US_CORE_DOCUMENT_REFERENCE, US_CORE_PROVENANCE, validateFhir } from './fhir.ts';
import { checkMdm } from './hl7.ts';
import { eachResource, type Issue, OWN_CHECKS } from './issues.ts';
import type { ProfileRegistry } from './profiles.ts';
import { requestIssues } from './requests.ts';
import { typedWalk } from './typed-walk.ts';

export interface ProofReport {
  readonly mapping: { readonly id: string; readonly version: string; readonly digest: string };
  readonly probes: number;
  readonly resources: number;
  readonly warnings: readonly Issue[];
}

function refuse(what: string, issues: readonly { path: string; message: string }[]): ScribeError {
  const first = issues[0]!;
  return new ScribeError('OUTPUT_INVALID', `${what}: ${issues.length} problem(s), first: ${first.message}`, {
    where: first.path,
    issues: issues.map((i) => ({ where: i.path, message: i.message })),
  });
}

export class Conformance {
  readonly #registry: ProfileRegistry;
  readonly #proofs = new Map<string, Promise<ProofReport>>();

  constructor(registry: ProfileRegistry) {
    this.#registry = registry;
  }

  /** Whether US Core 8 DocumentReference and Provenance are loaded (else full validation is base R4 only). */
  get hasUsCore(): boolean {
    return (
      this.#registry.structureDefinitions.has(US_CORE_DOCUMENT_REFERENCE) &&
      this.#registry.structureDefinitions.has(US_CORE_PROVENANCE)
    );
  }

  /** Full validation of every probe output; cached per mapping digest. Throws OUTPUT_INVALID. */
  prove(mapping: Mapping): Promise<ProofReport> {
    let p = this.#proofs.get(mapping.digest);
    if (!p) {
      p = this.#prove(mapping);
      this.#proofs.set(mapping.digest, p);
      p.catch(() => this.#proofs.delete(mapping.digest));
    }
    return p;
  }

  async #prove(mapping: Mapping): Promise<ProofReport> {
    const warnings: Issue[] = [];
    let probes = 0;
    let resources = 0;
    for (const p of await probeNotes()) {
      // One probe at a time between other work: a proof made while the service runs (mapping hot reload) must not
      // hold the event loop for its whole duration (seconds for the Bundle mappings).
      await new Promise((resolve) => setImmediate(resolve));
      let r: Rendering;
      try {
        r = render(mapping, { note: p.note, ...(p.prior ? { prior: p.prior } : {}) });
      } catch (e) {
        if (e instanceof ScribeError && e.code === 'MAPPING_UNSUPPORTED') continue; // a step left out on purpose
        throw e;
      }
      probes++;
      if (r.format === 'hl7v2') {
        const issues = checkMdm(r.body, delimitersOf(r), r.mode);
        if (issues.length > 0)
          throw refuse(
            `mapping ${mapping.id} ${mapping.version} produces malformed MDM for probe ${p.name}`,
            issues,
          );
        resources++;
        continue;
      }
      const issues = this.#fullIssues(r);
      const value = r.value as { entry?: unknown[] };
      resources += 1 + (Array.isArray(value.entry) ? value.entry.length : 0);
      const errors = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
      if (errors.length > 0) {
        throw refuse(
          `mapping ${mapping.id} ${mapping.version} produces non-conformant FHIR for probe ${p.name}`,
          errors,
        );
      }
      warnings.push(...issues);
    }
    return { mapping: stamp(mapping), probes, resources, warnings };
  }

  /** The per-note check (fast). Throws OUTPUT_INVALID with every problem found. */
  check(rendering: Rendering): void {
    if (rendering.format === 'hl7v2') {
      const issues = checkMdm(rendering.body, delimitersOf(rendering), rendering.mode);
      if (issues.length > 0)
        throw refuse(
          `${rendering.mapping.id} ${rendering.mapping.version} produced a malformed MDM message`,
          issues,
        );
      return;
    }
    const issues: { path: string; message: string }[] = [
      ...typedWalk(rendering.value),
      ...requestIssues(rendering.value, rendering.request),
    ];
    for (const i of eachResource(rendering.value as Resource, (r) => checkCodes(r, this.#registry))) {
      if (i.severity === 'error' || i.severity === 'fatal') issues.push({ path: i.path, message: i.message });
    }
    if (issues.length > 0)
      throw refuse(
        `${rendering.mapping.id} ${rendering.mapping.version} produced non-conformant FHIR`,
        issues,
      );
  }

  /** Full validation of one output (the command line's `map`, and tests). Returns warnings; throws on errors. */
  validateFull(rendering: Rendering): Issue[] {
    if (rendering.format !== 'fhir') {
      this.check(rendering);
      return [];
    }
    const issues = this.#fullIssues(rendering);
    const errors = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
    if (errors.length > 0)
      throw refuse(
        `${rendering.mapping.id} ${rendering.mapping.version} produced non-conformant FHIR`,
        errors,
      );
    return issues;
  }

  /**
   * Full validation plus everything the per-note check looks at, so that a proven mapping version is never
   * refused by `check` for something the proof could have seen (Medplum, for one, leaves Resource.id's lexical
   * form unchecked: R4 types it System.String).
   */
  #fullIssues(r: Rendering): Issue[] {
    const issues = validateFhir(r.value as Resource, this.#registry, { defaultProfiles: this.hasUsCore });
    const seen = new Set(issues.map((i) => `${i.path}\0${i.message}`));
    for (const w of [...typedWalk(r.value), ...requestIssues(r.value, r.request)]) {
      if (seen.has(`${w.path}\0${w.message}`)) continue;
      seen.add(`${w.path}\0${w.message}`);
      issues.push({ severity: 'error', code: 'value', message: w.message, path: w.path, source: OWN_CHECKS });
    }
    return issues;
  }
}

function delimitersOf(r: Rendering) {
  const msh = r.body.slice(0, 8);
  return msh.startsWith('MSH') ? parseDelimiters(msh.slice(3, 8)) : DEFAULT_DELIMITERS;
}

function stamp(m: Mapping) {
  return { id: m.id, version: m.version, digest: m.digest };
}
