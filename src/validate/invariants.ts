/**
 * Invariants @medplum/core 5.2.13 does not evaluate.
 *
 * Medplum evaluates the constraints listed on a resource's (or profile's) element definitions, but not the
 * invariants of the data types those elements have. So att-1 (Attachment with `data` needs `contentType`),
 * per-1 (Period start ≤ end), rng-2 (Range low ≤ high), ref-1 (a `#id` reference needs that contained
 * resource) and qty-3 pass unchecked (verified). This walks the resource with Medplum's own crawler and
 * evaluates each complex data type's invariants with Medplum's FHIRPath engine, in Medplum's message format.
 * It also applies the narrative rules (narrative.ts) to every Narrative, and fills a gap in US Core's
 * provenance-1 (see checkProvenanceAgents).
 */
import {
  type CrawlerVisitor,
  crawlTypedValue,
  evalFhirPathTyped,
  type FhirPathAtom,
  type InternalTypeSchema,
  LRUCache,
  type TypedValue,
  type TypedValueWithPath,
  toTypedValue,
} from '@medplum/core';
import type { Narrative, Provenance, Resource } from '@medplum/fhirtypes';
import { type Issue, OWN_CHECKS } from './issues.ts';
import { narrativeProblems } from './narrative.ts';

/** Parsed invariant expressions: parsing dominates otherwise (a Provenance has thousands of data-type values). */
const parsed = new LRUCache<FhirPathAtom>(500);

/** ele-1 is Medplum's to skip; ext-1 it already checks on every extension element. */
const SKIPPED = new Set(['ele-1', 'ext-1']);

/** Data-type invariants and narrative rules for the resource and everything in it (entries, contained). */
export function checkDatatypeInvariants(resource: Resource): Issue[] {
  const issues: Issue[] = [];
  // %resource / %rootResource follow the resource being crawled: a Bundle entry is its own root,
  // a contained resource belongs to its container.
  const stack: { resource: TypedValue; root: TypedValue }[] = [];
  const visitor: CrawlerVisitor = {
    visitProperty: () => undefined,
    onEnterResource: (_path, value) => {
      const tv = { type: value.type, value: value.value };
      const contained = /\.contained\[\d+\]$/.test(value.path);
      stack.push({ resource: tv, root: contained ? (stack.at(-1)?.root ?? tv) : tv });
    },
    onExitResource: () => void stack.pop(),
    onEnterObject: (_path, value, schema) => {
      if (schema.kind !== 'complex-type') return;
      if (schema.name === 'Narrative') checkNarrative(value, issues);
      const top = stack.at(-1);
      for (const c of schema.constraints ?? []) {
        if (c.severity !== 'error' || SKIPPED.has(c.key)) continue;
        evaluate(c, value, top, issues);
      }
    },
  };
  crawlTypedValue(toTypedValue(resource), visitor);
  return issues;
}

function evaluate(
  c: NonNullable<InternalTypeSchema['constraints']>[number],
  value: TypedValueWithPath,
  top: { resource: TypedValue; root: TypedValue } | undefined,
  out: Issue[],
): void {
  const target = { type: value.type, value: value.value };
  const variables: Record<string, TypedValue> = {
    '%context': target,
    '%ucum': toTypedValue('http://unitsofmeasure.org'),
  };
  if (top) {
    variables['%resource'] = top.resource;
    variables['%rootResource'] = top.root;
  }
  try {
    // Only an explicit false fails. An empty result means the rule does not apply: R4's ref-1 is empty,
    // not true, for a logical reference that has only an identifier.
    const result = evalFhirPathTyped(c.expression, [target], variables, parsed);
    if (!result.some((r) => r.value === false)) return;
    out.push({
      severity: 'error',
      code: 'invariant',
      message: `Constraint ${c.key} not met: ${c.description}`,
      path: value.path,
      source: OWN_CHECKS,
    });
  } catch (e) {
    out.push({
      severity: 'warning',
      code: 'processing',
      message: `Error evaluating invariant ${c.key}: ${(e as Error).message}`,
      path: value.path,
      source: OWN_CHECKS,
    });
  }
}

function checkNarrative(value: TypedValueWithPath, out: Issue[]): void {
  const div = (value.value as Narrative | undefined)?.div;
  if (typeof div !== 'string') return;
  for (const message of narrativeProblems(div)) {
    out.push({
      severity: 'error',
      code: 'invariant',
      message,
      path: `${value.path}.div`,
      source: OWN_CHECKS,
    });
  }
}

const PROVENANCE_1 = 'onBehalfOf SHALL be present when Provenance.agent.who is a Practitioner or Device';

/**
 * US Core provenance-1 where Medplum cannot decide it. Medplum's `resolve()` knows a reference's type only
 * from `Type/id` or from `Reference.type`, so the rule silently passes for `urn:uuid:` references (every
 * reference in a transaction Bundle) and for logical references without `type`. Here `urn:uuid:`
 * references are resolved through the Bundle's `fullUrl`s; a `who` whose type cannot be known at all gets
 * a warning, because the rule could not be checked.
 */
export function checkProvenanceAgents(
  prov: Provenance,
  typeOfFullUrl: (url: string) => string | undefined,
): Issue[] {
  const issues: Issue[] = [];
  prov.agent?.forEach((agent, i) => {
    const who = agent.who;
    if (!who || agent.onBehalfOf) return;
    const ref = who.reference;
    if (who.type || (ref && !ref.startsWith('urn:'))) return; // Medplum decides these itself
    const path = `Provenance.agent[${i}]`;
    const type = ref ? typeOfFullUrl(ref) : undefined;
    if (type === 'Practitioner' || type === 'Device') {
      issues.push({
        severity: 'error',
        code: 'invariant',
        message: `Constraint provenance-1 not met: ${PROVENANCE_1}`,
        path,
        source: OWN_CHECKS,
      });
    } else if (type === undefined) {
      issues.push({
        severity: 'warning',
        code: 'incomplete',
        message: 'provenance-1 could not be checked: agent.who has no resolvable type; set Reference.type',
        path: `${path}.who`,
        source: OWN_CHECKS,
      });
    }
  });
  return issues;
}
