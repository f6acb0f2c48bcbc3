/**
 * Workaround for a @medplum/core 5.2.13 snapshot-parser defect.
 *
 * The parser resolves an element's `contentReference` (`…#Provenance.agent`) by looking up the *last element
 * seen so far with that path*. When a profile slices the target (US Core 8 Provenance slices `Provenance.agent`
 * into ProvenanceAuthor and ProvenanceTransmitter), that is the last slice, not the element the reference
 * names, and parsing fails with "Invalid slice start before discriminator: ProvenanceTransmitter
 * (Provenance.entity.agent)". We rewrite such elements on a deep copy: the referencing element is replaced by
 * the referenced element and its children, re-rooted under the referencing path, so the parser never has to
 * resolve the reference. The loaded profile itself is never changed.
 */
import type { ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';
import { baseContentTarget, subtree } from './base-r4.ts';

const prepared = new WeakMap<StructureDefinition, StructureDefinition>();

/**
 * The profile as Medplum's validator can use it: the same object when nothing needs fixing, otherwise a
 * rewritten deep copy (cached per profile object).
 */
export function usableProfile(sd: StructureDefinition): StructureDefinition {
  const cached = prepared.get(sd);
  if (cached) return cached;
  const elements = sd.snapshot?.element ?? [];
  const broken = elements.filter((e, i) => e.contentReference && misresolves(elements, i));
  let result = sd;
  if (broken.length > 0) {
    result = structuredClone(sd);
    const copy = result.snapshot!.element!;
    for (const original of broken) {
      const i = copy.findIndex((e) => e.id === original.id);
      const replacement = inline(sd, copy[i]!);
      if (replacement) copy.splice(i, 1, ...replacement);
    }
  }
  prepared.set(sd, result);
  return result;
}

function targetId(contentReference: string): string {
  return contentReference.slice(contentReference.indexOf('#') + 1);
}

/** True when the element Medplum would pick for this contentReference is not the one it names. */
function misresolves(elements: readonly ElementDefinition[], index: number): boolean {
  const id = targetId(elements[index]!.contentReference!);
  const picked = elements.slice(0, index).findLast((e) => e.path === id);
  return picked !== undefined && picked.id !== id;
}

/** The referenced subtree re-rooted at `at`, or undefined when the target cannot be found. */
function inline(sd: StructureDefinition, at: ElementDefinition): ElementDefinition[] | undefined {
  const ref = at.contentReference!;
  const id = targetId(ref);
  // A bare "#path" names an element of this profile; "url#path" names one of base R4, which is what
  // US Core's Provenance.entity.agent uses, so its base children (not the profile's slices) are inlined.
  const source = ref.startsWith('#')
    ? subtree(sd.snapshot?.element ?? [], id).filter((e) => !e.id?.includes(':'))
    : baseContentTarget(ref);
  const [root, ...children] = source ?? [];
  if (!root) return undefined;
  const reroot = (s: string | undefined): string | undefined =>
    s === undefined ? undefined : `${at.path}${s.slice(id.length)}`;
  const rerootId = (s: string | undefined): string | undefined =>
    s === undefined ? undefined : `${at.id}${s.slice(id.length)}`;
  const head: ElementDefinition = {
    ...structuredClone(root),
    id: at.id,
    path: at.path,
    min: at.min,
    max: at.max,
    short: at.short,
    definition: at.definition,
    // `base` stays the referenced element's (Provenance.agent): Medplum names the backbone type after it
    // (ProvenanceAgent), exactly as it does when it resolves the reference itself.
  };
  delete head.slicing;
  delete head.sliceName;
  delete head.contentReference;
  const tail = children.map((c) => ({ ...structuredClone(c), id: rerootId(c.id), path: reroot(c.path)! }));
  return [head, ...tail];
}
