/**
 * Checks extensions against their loaded StructureDefinitions, which @medplum/core 5.2.13 never does: it
 * validates every extension against the generic base `Extension` type only, so `valueString` where the
 * definition requires `valueCode`, a code outside the bound value set, a second occurrence of a 0..1
 * extension, or an extension in the wrong place all pass (verified, also after `loadDataType(sd)`).
 *
 * For each extension whose URL is a loaded Extension StructureDefinition this checks: the context
 * (`StructureDefinition.context`), the root cardinality, the value[x] type, a required binding on value[x]
 * (when the value set can be enumerated), no nested extensions when `Extension.extension` is 0..0, and the
 * definition's own invariants (FHIRPath, evaluated with Medplum's engine). The generic ele-1/ext-1 rules
 * are left to Medplum, which already checks them.
 */
import {
  evalFhirPathTyped,
  type FhirPathAtom,
  isPrimitiveType,
  isResourceType,
  LRUCache,
  type TypedValue,
  toTypedValue,
} from '@medplum/core';
import type { ElementDefinition, Extension, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { type Issue, OWN_CHECKS, show } from './issues.ts';
import { findStructureDefinition, type ProfileRegistry } from './profiles.ts';
import { type CodeList, describeCodes, hasCode, valueSetCodes } from './terminology.ts';

const GENERIC_CONSTRAINT_SOURCES = new Set([
  'http://hl7.org/fhir/StructureDefinition/Element',
  'http://hl7.org/fhir/StructureDefinition/Extension',
]);

/** Parsed invariant expressions, shared across calls. */
const parsed = new LRUCache<FhirPathAtom>(200);

interface Place {
  /** Path with indices, for issues: `Provenance.entity[3].extension[0]`. */
  readonly path: string;
  /** Element path without indices, for context matching: `Provenance.entity`. */
  readonly context: string;
}

/** Checks every extension in the resource (and its contained resources) that has a loaded definition. */
export function checkExtensions(resource: Resource, registry: ProfileRegistry): Issue[] {
  const issues: Issue[] = [];
  walk(resource, { path: resource.resourceType, context: resource.resourceType }, resource, registry, issues);
  return issues;
}

function walk(node: object, at: Place, resource: Resource, registry: ProfileRegistry, out: Issue[]): void {
  for (const [key, value] of Object.entries(node)) {
    if (value === null || typeof value !== 'object') continue;
    if ((key === 'extension' || key === 'modifierExtension') && Array.isArray(value)) {
      checkList(
        value as Extension[],
        { path: `${at.path}.${key}`, context: at.context },
        resource,
        registry,
        out,
      );
      continue;
    }
    const name = key.startsWith('_') ? key.slice(1) : key;
    const items: unknown[] = Array.isArray(value) ? value : [value];
    items.forEach((item, i) => {
      if (item === null || typeof item !== 'object') return;
      const path = `${at.path}.${name}${Array.isArray(value) ? `[${i}]` : ''}`;
      if ('resourceType' in item) {
        // Contained resources are part of this resource; Bundle entries are checked on their own.
        if (key !== 'contained') return;
        const type = (item as Resource).resourceType;
        walk(item, { path, context: type }, item as Resource, registry, out);
        return;
      }
      walk(item, { path, context: `${at.context}.${name}` }, resource, registry, out);
    });
  }
}

function checkList(
  list: readonly Extension[],
  at: Place,
  resource: Resource,
  registry: ProfileRegistry,
  out: Issue[],
): void {
  const counts = new Map<string, number>();
  list.forEach((ext, i) => {
    if (typeof ext?.url !== 'string') return;
    const sd = findStructureDefinition(registry, ext.url);
    if (sd?.type !== 'Extension') return;
    const path = `${at.path}[${i}]`;
    const issue = (code: string, message: string, where = path): void =>
      void out.push({ severity: 'error', code, message, path: where, source: OWN_CHECKS });
    const elements = sd.snapshot?.element ?? [];
    const root = elements.find((e) => e.id === 'Extension');
    const n = (counts.get(ext.url) ?? 0) + 1;
    counts.set(ext.url, n);
    const max = root?.max === '*' || root?.max === undefined ? Infinity : Number(root.max);
    if (n === max + 1) issue('structure', `Extension ${ext.url} may appear at most ${max} time(s) here`);
    if (!contextAllows(sd, at.context)) {
      const allowed = (sd.context ?? []).map((c) => c.expression).join(', ');
      issue('structure', `Extension ${ext.url} is not allowed on ${at.context} (allowed on: ${allowed})`);
    }
    const nested = elements.find((e) => e.id === 'Extension.extension');
    if (nested?.max === '0' && ext.extension?.length) {
      issue('structure', `Extension ${ext.url} does not allow nested extensions`, `${path}.extension`);
    }
    const valueDef = elements.find((e) => e.id === 'Extension.value[x]');
    const value = checkValue(ext, valueDef, path, registry, issue);
    for (const c of root?.constraint ?? []) {
      runConstraint(c, { type: 'Extension', value: ext }, path, resource, out);
    }
    if (value)
      for (const c of valueDef?.constraint ?? []) runConstraint(c, value, `${path}.value[x]`, resource, out);
  });
}

/** Checks value[x] presence, type and binding; returns the value when it has an allowed type. */
function checkValue(
  ext: Extension,
  def: ElementDefinition | undefined,
  path: string,
  registry: ProfileRegistry,
  issue: (code: string, message: string, where?: string) => void,
): TypedValue | undefined {
  const allowed = (def?.type ?? []).map((t) => t.code);
  const wanted =
    def?.max === '0'
      ? 'no value'
      : allowed.map((t) => `value${t[0]!.toUpperCase()}${t.slice(1)}`).join(' | ');
  const [key, value] = Object.entries(ext).find(([k]) => k.startsWith('value')) ?? [];
  const where = `${path}.value[x]`;
  if (!key) {
    if ((def?.min ?? 0) > 0) issue('required', `Extension ${ext.url} needs a value (${wanted})`, where);
    return undefined;
  }
  const suffix = key.slice('value'.length);
  const lower = `${suffix[0]!.toLowerCase()}${suffix.slice(1)}`;
  const type = isPrimitiveType(lower) ? lower : suffix;
  if (def?.max === '0' || !allowed.includes(type)) {
    issue('structure', `Extension ${ext.url} needs ${wanted}, not ${key}`, where);
    return undefined;
  }
  const binding = def?.binding;
  if (binding?.strength === 'required' && binding.valueSet) {
    const codes = valueSetCodes(registry, binding.valueSet);
    if (codes && !bindingMatches(codes, type, value)) {
      issue(
        'code-invalid',
        `Value ${show(value)} is not in the required value set ${binding.valueSet} (${describeCodes(codes)})`,
        where,
      );
    }
  }
  return { type, value };
}

function bindingMatches(codes: CodeList, type: string, value: unknown): boolean {
  type C = { system?: string; code?: string };
  const coding = (c: C): boolean => typeof c.code === 'string' && hasCode(codes, c.system, c.code);
  if (type === 'Coding') return coding(value as C);
  if (type === 'CodeableConcept') return ((value as { coding?: C[] }).coding ?? []).some(coding);
  return typeof value === 'string' && hasCode(codes, undefined, value);
}

function runConstraint(
  c: NonNullable<ElementDefinition['constraint']>[number],
  target: TypedValue,
  path: string,
  resource: Resource,
  out: Issue[],
): void {
  if (c.key === 'ele-1' || c.key === 'ext-1' || GENERIC_CONSTRAINT_SOURCES.has(c.source ?? '')) return;
  if (!c.expression) return;
  const severity = c.severity === 'warning' ? 'warning' : 'error';
  try {
    const root = toTypedValue(resource);
    const result = evalFhirPathTyped(
      c.expression,
      [target],
      { '%context': target, '%resource': root, '%rootResource': root },
      parsed,
    );
    if (result.length === 1 && result[0]!.value === true) return;
    out.push({
      severity,
      code: 'invariant',
      message: `Constraint ${c.key} not met: ${c.human}`,
      path,
      source: OWN_CHECKS,
    });
  } catch (e) {
    out.push({
      severity,
      code: 'processing',
      message: `Error evaluating invariant ${c.key}: ${(e as Error).message}`,
      path,
      source: OWN_CHECKS,
    });
  }
}

/**
 * Whether an extension defined with these contexts may sit on an element with this path. Recursive
 * elements (Composition.section.section, via contentReference) count as the element they repeat, and a
 * context naming a data type (not a resource or element path) is not checked, because the element's type
 * is not known here.
 */
function contextAllows(sd: StructureDefinition, context: string): boolean {
  const contexts = sd.context ?? [];
  if (contexts.length === 0) return true;
  const collapsed = context
    .split('.')
    .filter((seg, i, all) => i === 0 || seg !== all[i - 1])
    .join('.');
  return contexts.some((c) => {
    if (c.type !== 'element') return true;
    const e = c.expression;
    if (e === context || e === collapsed || e === 'Element') return true;
    if ((e === 'Resource' || e === 'DomainResource') && !context.includes('.')) return true;
    return !e.includes('.') && !isResourceType(e);
  });
}
