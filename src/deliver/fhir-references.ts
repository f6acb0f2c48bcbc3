/**
 * `references: resolve`: logical references (`{ identifier }`) to the patient, encounter, author, signer and
 * custodian rewritten to the EHR's own ids (`Patient/123`) at send time. The search is the destination's;
 * this file finds the references, caches answers and rewrites a copy of the payload. Pure apart from the cache.
 */
import { isObject } from './fhir-classify.ts';

/**
 * Which resource type a logical reference in an element of this name points at, wherever it occurs
 * (DocumentReference, Composition, Provenance): a Reference's own `type` wins over this table.
 * Only references carrying an identifier and no `reference` are touched; `urn:uuid:` links between
 * transaction entries and Provenance `entity.what` (transcript segments, artifacts) stay as they are.
 */
export const REFERENCE_TARGETS: Readonly<Record<string, string>> = {
  subject: 'Patient',
  encounter: 'Encounter',
  author: 'Practitioner',
  authenticator: 'Practitioner',
  party: 'Practitioner',
  who: 'Practitioner',
  custodian: 'Organization',
  onBehalfOf: 'Organization',
};

/** One logical reference to resolve. Its value is PHI (an MRN, say): never log it. */
export interface LogicalRef {
  readonly resourceType: string;
  readonly system: string;
  readonly value: string;
}

export const refKey = (r: LogicalRef): string => `${r.resourceType}|${r.system}|${r.value}`;

/** The distinct logical references of a payload, in first-seen order. */
export function logicalReferences(value: unknown): LogicalRef[] {
  const found = new Map<string, LogicalRef>();
  visit(value, (ref) => found.set(refKey(ref), ref));
  return [...found.values()];
}

/** A copy of `value` with every logical reference that has an id in `ids` (by refKey) pointing at it. */
export function withResolvedReferences(value: unknown, ids: ReadonlyMap<string, string>): unknown {
  const copy = structuredClone(value);
  visit(copy, (ref, holder) => {
    const id = ids.get(refKey(ref));
    if (id === undefined) return;
    // `reference` first for readers; the identifier stays so the trace can still match it.
    const rest = { ...holder };
    for (const k of Object.keys(holder)) delete holder[k];
    Object.assign(holder, { reference: `${ref.resourceType}/${id}` }, rest);
  });
  return copy;
}

function visit(v: unknown, onRef: (ref: LogicalRef, holder: Record<string, unknown>) => void): void {
  if (Array.isArray(v)) {
    for (const x of v) visit(x, onRef);
    return;
  }
  if (!isObject(v)) return;
  for (const [key, child] of Object.entries(v)) {
    const target = REFERENCE_TARGETS[key];
    if (target) {
      for (const holder of Array.isArray(child) ? child : [child]) {
        const ref = isObject(holder) ? logicalRef(holder, target) : undefined;
        if (ref && isObject(holder)) onRef(ref, holder);
      }
    }
    visit(child, onRef);
  }
}

function logicalRef(holder: Record<string, unknown>, defaultType: string): LogicalRef | undefined {
  if (holder['reference'] !== undefined || !isObject(holder['identifier'])) return undefined;
  const { system, value } = holder['identifier'];
  if (typeof system !== 'string' || typeof value !== 'string') return undefined;
  const type = typeof holder['type'] === 'string' ? holder['type'] : defaultType;
  return { resourceType: type, system, value };
}

/** How many resolved ids the cache keeps: far above the patients, encounters and clinicians in flight. */
const MAX_ENTRIES = 10_000;

/** Resolved ids by refKey, each reused for `ttlMs`. Misses are not cached: a patient may be registered later. */
export class ReferenceCache {
  readonly #ttlMs: number;
  readonly #entries = new Map<string, { readonly id: string; readonly until: number }>();

  constructor(ttlMs: number) {
    this.#ttlMs = ttlMs;
  }

  get(key: string, nowMs: number): string | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.until <= nowMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return e.id;
  }

  set(key: string, id: string, nowMs: number): void {
    this.#entries.delete(key);
    // Map iteration is insertion order, so the first key is the oldest.
    if (this.#entries.size >= MAX_ENTRIES) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(key, { id, until: nowMs + this.#ttlMs });
  }
}
