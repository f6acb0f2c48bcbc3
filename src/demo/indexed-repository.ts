/**
 * MemoryRepository with an identifier index, for the local FHIR server (fhir-server.ts).
 *
 * Why: MemoryRepository answers every search by evaluating the search parameter's FHIRPath on every stored
 * resource of the type. The `identifier` parameter is the shared one whose expression is a union over ~30
 * resource types (884 characters); evaluating it costs ~1.5–3 ms per stored resource, so with a few dozen
 * DocumentReferences each identifier search — hence each conditional create (`If-None-Exist`) and conditional
 * update — took 100+ ms.
 *
 * How: every write (all of MemoryRepository's writes go through `createResource`) indexes the resource's
 * identifier values (evaluated once with the same expression the search uses) by resource type and lower-cased
 * value. An identifier search then takes only the indexed candidates, reads their current versions (deleted
 * ones are gone), and keeps those that `matchesSearchRequest` accepts — the same matcher MemoryRepository uses,
 * so the answer is exactly what the full scan gives. Entries left behind by an update that changed or dropped
 * an identifier are harmless (the candidate no longer matches). Anything else (other parameters only,
 * modifiers, comma lists, `system|` without a value, chains, sorting, paging, _include) takes the full scan.
 *
 * Conditional create/update and `exclusive()` callers run one at a time, so two concurrent conditional creates
 * of the same identifier cannot both create (MemoryRepository's own conditionalCreate was synchronous for that).
 */
import {
  allOk,
  badRequest,
  created,
  evalFhirPathTyped,
  getSearchParameter,
  matchesSearchRequest,
  multipleMatches,
  OperationOutcomeError,
  Operator,
  type SearchRequest,
  toTypedValue,
  type WithId,
} from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import type { Bundle, BundleEntry, OperationOutcome, Resource } from '@medplum/fhirtypes';

type CreateOptions = Parameters<MemoryRepository['createResource']>[1];
type UpdateOptions = Parameters<MemoryRepository['updateResource']>[1];

export class IndexedMemoryRepository extends MemoryRepository {
  /** `Type\0lower-cased identifier value` → ids of resources that had it at some write. */
  private readonly byIdentifier = new Map<string, Set<string>>();
  private queue: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every earlier exclusive section (and conditional write) has finished. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  override async createResource<T extends Resource>(
    resource: T,
    options?: CreateOptions,
    update = false,
  ): Promise<WithId<T>> {
    const stored = await super.createResource(resource, options, update);
    for (const value of identifierValues(stored)) {
      const key = indexKey(stored.resourceType, value);
      const ids = this.byIdentifier.get(key) ?? new Set<string>();
      ids.add(stored.id);
      this.byIdentifier.set(key, ids);
    }
    return stored;
  }

  override clear(): void {
    super.clear();
    this.byIdentifier.clear();
  }

  override async search<T extends Resource>(searchRequest: SearchRequest<T>): Promise<Bundle<WithId<T>>> {
    const value = indexedValue(searchRequest);
    if (value === undefined) return super.search(searchRequest);
    const matches: WithId<T>[] = [];
    for (const id of this.byIdentifier.get(indexKey(searchRequest.resourceType, value)) ?? []) {
      let current: WithId<T>;
      try {
        current = await this.readResource<WithId<T>>(searchRequest.resourceType, id);
      } catch {
        continue; // deleted
      }
      if (matchesSearchRequest(current, searchRequest)) matches.push(current);
    }
    const entry: BundleEntry<WithId<T>>[] = matches
      .slice(0, searchRequest.count ?? matches.length)
      .map((resource) => ({ search: { mode: 'match' }, resource }));
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      ...(entry.length ? { entry } : {}),
      total: matches.length,
    };
  }

  override conditionalCreate<T extends Resource>(
    resource: T,
    search: SearchRequest<T>,
    options?: CreateOptions,
  ): Promise<{ resource: WithId<T>; outcome: OperationOutcome }> {
    // MemoryRepository's, but through this class's search and createResource.
    return this.exclusive(async () => {
      const found = await this.search({ ...search, count: 2, sortRules: undefined });
      const matches = (found.entry ?? []).flatMap((e) => (e.resource ? [e.resource] : []));
      if (matches.length > 1) throw new OperationOutcomeError(multipleMatches);
      const existing = matches[0];
      if (existing) {
        if (!options?.assignedId && resource.id && resource.id !== existing.id)
          throw new OperationOutcomeError(
            badRequest('Resource ID did not match resolved ID', `${resource.resourceType}.id`),
          );
        return { resource: existing, outcome: allOk };
      }
      return { resource: await this.createResource(resource, options), outcome: created };
    });
  }

  override conditionalUpdate<T extends Resource>(
    resource: T,
    search: SearchRequest,
    options?: CreateOptions & UpdateOptions,
  ): Promise<{ resource: WithId<T>; outcome: OperationOutcome }> {
    return this.exclusive(() => super.conditionalUpdate(resource, search, options));
  }
}

function indexKey(resourceType: string, value: string): string {
  return `${resourceType}\0${value.toLowerCase()}`;
}

/** The identifier values the `identifier` search parameter sees on a resource (none if the type has none). */
function identifierValues(resource: Resource): string[] {
  const param = getSearchParameter(resource.resourceType, 'identifier');
  if (!param?.expression) return [];
  return evalFhirPathTyped(param.expression, [toTypedValue(resource)]).flatMap((tv) => {
    const v = (tv.value as { value?: unknown } | undefined)?.value;
    return typeof v === 'string' && v !== '' ? [v] : [];
  });
}

/**
 * The identifier value to look up when the index can answer this search exactly (a plain `identifier=` filter
 * with one `value`, `system|value` or `|value`, no chain, sort, offset or include); otherwise undefined.
 */
function indexedValue(req: SearchRequest): string | undefined {
  if (req.sortRules?.length || req.offset || req.include?.length || req.revInclude?.length) return undefined;
  const filters = req.filters ?? [];
  if (filters.some((f) => f.code.includes('.') || f.code.includes(':'))) return undefined;
  for (const f of filters) {
    if (f.code !== 'identifier' || f.operator !== Operator.EQUALS) continue;
    if (/[,\\]/.test(f.value)) continue;
    const value = f.value.includes('|') ? f.value.split('|')[1] : f.value;
    if (value) return value;
  }
  return undefined;
}
