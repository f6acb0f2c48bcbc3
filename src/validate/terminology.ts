/**
 * Just enough terminology to check required bindings without a terminology server: enumerates a ValueSet's
 * codes from the loaded ValueSets and CodeSystems (explicit concept lists, whole complete code systems,
 * nested value sets, exclusions). Filters (e.g. "all LOINC with SCALE_TYP = Doc") cannot be enumerated
 * here; such a value set has no code list.
 *
 * A few base R4 value sets are not in the profile directories (or their code system is not), so their
 * fixed R4 code lists are built in as a fallback.
 */
import type { CodeSystemConcept, ValueSet, ValueSetExpansionContains } from '@medplum/fhirtypes';
import { findCodeSystem, findValueSet, type ProfileRegistry } from './profiles.ts';

/** Codes by system. */
export type CodeList = ReadonlyMap<string, ReadonlySet<string>>;

const R4 = 'http://hl7.org/fhir';

/** FHIR R4 (4.0.1) code lists for the value sets whose code systems are not shipped as files. */
const FALLBACKS: Record<string, readonly [system: string, codes: readonly string[]]> = {
  [`${R4}/ValueSet/document-reference-status`]: [
    `${R4}/document-reference-status`,
    ['current', 'superseded', 'entered-in-error'],
  ],
  [`${R4}/ValueSet/composition-status`]: [
    `${R4}/composition-status`,
    ['preliminary', 'final', 'amended', 'entered-in-error'],
  ],
  [`${R4}/ValueSet/document-relationship-type`]: [
    `${R4}/document-relationship-type`,
    ['replaces', 'transforms', 'signs', 'appends'],
  ],
  [`${R4}/ValueSet/composition-attestation-mode`]: [
    `${R4}/composition-attestation-mode`,
    ['personal', 'professional', 'legal', 'official'],
  ],
  [`${R4}/ValueSet/provenance-entity-role`]: [
    `${R4}/provenance-entity-role`,
    ['derivation', 'revision', 'quotation', 'source', 'removal'],
  ],
  [`${R4}/ValueSet/audit-event-action`]: [`${R4}/audit-event-action`, ['C', 'R', 'U', 'D', 'E']],
  [`${R4}/ValueSet/audit-event-outcome`]: [`${R4}/audit-event-outcome`, ['0', '4', '8', '12']],
  // US Core 8.0.0 (CC0): the two value sets scribe-bridge's own binding checks need, so that a deployment
  // without the US Core package still refuses a wrong category or note type. Loaded files take precedence.
  'http://hl7.org/fhir/us/core/ValueSet/us-core-documentreference-category': [
    'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category',
    ['clinical-note'],
  ],
  'http://hl7.org/fhir/us/core/ValueSet/us-core-clinical-note-type': [
    'http://loinc.org',
    [
      '18842-5',
      '11488-4',
      '34117-2',
      '11506-3',
      '28570-0',
      '18748-4',
      '11502-2',
      '11526-1',
      '11504-8',
      '34111-5',
    ],
  ],
};

const cache = new WeakMap<ProfileRegistry, Map<string, CodeList | null>>();

function stripVersion(canonical: string): string {
  const bar = canonical.indexOf('|');
  return bar < 0 ? canonical : canonical.slice(0, bar);
}

/**
 * The codes of a value set: from the loaded files, else the built-in R4 fallback, else undefined (not
 * loaded, or defined by a filter that cannot be enumerated).
 */
export function valueSetCodes(registry: ProfileRegistry, canonical: string): CodeList | undefined {
  const url = stripVersion(canonical);
  let perRegistry = cache.get(registry);
  if (!perRegistry) {
    perRegistry = new Map();
    cache.set(registry, perRegistry);
  }
  if (!perRegistry.has(url)) {
    const fallback = FALLBACKS[url];
    const list =
      expand(registry, url, new Set()) ??
      (fallback ? new Map([[fallback[0], new Set(fallback[1])]]) : undefined);
    perRegistry.set(url, list ?? null);
  }
  return perRegistry.get(url) ?? undefined;
}

/** All codes of a code list, for messages: `current | superseded | entered-in-error`. */
export function describeCodes(list: CodeList): string {
  return [...list.values()].flatMap((codes) => [...codes]).join(' | ');
}

/** True when the list has `code` (in `system`, or in any system when `system` is undefined). */
export function hasCode(list: CodeList, system: string | undefined, code: string): boolean {
  if (system === undefined) return [...list.values()].some((codes) => codes.has(code));
  return list.get(system)?.has(code) ?? false;
}

function expand(registry: ProfileRegistry, url: string, visiting: Set<string>): CodeList | undefined {
  const vs = findValueSet(registry, url);
  if (!vs || visiting.has(url)) return undefined;
  visiting.add(url);
  const out = new Map<string, Set<string>>();
  const add = (system: string, code: string): void => {
    const codes = out.get(system);
    if (codes) codes.add(code);
    else out.set(system, new Set([code]));
  };
  if (vs.expansion?.contains) {
    addContains(vs.expansion.contains, add);
    return out;
  }
  for (const include of vs.compose?.include ?? []) {
    const part = expandInclude(registry, include, visiting);
    if (!part) return undefined;
    for (const [system, codes] of part) for (const code of codes) add(system, code);
  }
  for (const exclude of vs.compose?.exclude ?? []) {
    // Only explicit code exclusions can be applied; anything else could remove codes we cannot see.
    if (!exclude.system || !exclude.concept || exclude.filter?.length || exclude.valueSet?.length)
      return undefined;
    for (const c of exclude.concept) out.get(exclude.system)?.delete(c.code);
  }
  return out;
}

type Include = NonNullable<NonNullable<ValueSet['compose']>['include']>[number];

function expandInclude(
  registry: ProfileRegistry,
  include: Include,
  visiting: Set<string>,
): CodeList | undefined {
  if (include.filter?.length) return undefined;
  const out = new Map<string, Set<string>>();
  if (include.system) {
    let codes: string[];
    if (include.concept) {
      codes = include.concept.map((c) => c.code);
    } else {
      const cs = findCodeSystem(registry, include.system);
      if (cs?.content !== 'complete') return undefined;
      codes = flatten(cs.concept ?? []);
    }
    out.set(include.system, new Set(codes));
  }
  for (const nested of include.valueSet ?? []) {
    const part = expand(registry, stripVersion(nested), visiting);
    if (!part) return undefined;
    // Several entries in one include are intersected (FHIR R4 ValueSet.compose.include semantics).
    if (include.system || out.size > 0) intersect(out, part);
    else for (const [system, codes] of part) out.set(system, new Set(codes));
  }
  return out;
}

function intersect(into: Map<string, Set<string>>, other: CodeList): void {
  for (const [system, codes] of into) {
    const keep = other.get(system);
    for (const code of codes) if (!keep?.has(code)) codes.delete(code);
  }
}

/** Codes of a code system, including nested (is-a) concepts such as provenance-entity-role's. */
function flatten(concepts: readonly CodeSystemConcept[]): string[] {
  return concepts.flatMap((c) => [c.code, ...flatten(c.concept ?? [])]);
}

function addContains(
  contains: readonly ValueSetExpansionContains[],
  add: (s: string, c: string) => void,
): void {
  for (const c of contains) {
    if (c.system && c.code && !c.abstract) add(c.system, c.code);
    addContains(c.contains ?? [], add);
  }
}
