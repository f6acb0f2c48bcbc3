/**
 * The local FHIR server's identifier index (src/demo/indexed-repository.ts) answers exactly what
 * MemoryRepository's full scan answers — current versions only, deleted ones excluded, updates that change an
 * identifier followed — and conditional creates stay single under concurrency.
 */
import { parseSearchRequest } from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import type { DocumentReference, Resource } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { IndexedMemoryRepository } from '../src/demo/indexed-repository.ts';
import { startFhirServer } from './support/fhir-server.ts';

const doc = (value: string, system = 'urn:t', extra: Partial<DocumentReference> = {}): DocumentReference => ({
  resourceType: 'DocumentReference',
  status: 'current',
  identifier: [{ system, value }],
  content: [{ attachment: { contentType: 'text/plain', data: 'aGk=' } }],
  ...extra,
});

async function both(repo: IndexedMemoryRepository, url: string): Promise<[string[], string[]]> {
  const req = parseSearchRequest(url);
  const ids = (b: { entry?: { resource?: Resource }[] }) =>
    (b.entry ?? []).map((e) => `${e.resource?.id}@${e.resource?.meta?.versionId}`).sort();
  const indexed = ids(await repo.search(req));
  const scanned = ids(await MemoryRepository.prototype.search.call(repo, parseSearchRequest(url)));
  return [indexed, scanned];
}

describe('IndexedMemoryRepository', () => {
  it('answers identifier searches exactly like the full scan', async () => {
    // Loading the search parameters is the server's job; starting one does it.
    await (await startFhirServer()).close();
    const repo = new IndexedMemoryRepository();
    const a = await repo.createResource(doc('A-1'));
    const b = await repo.createResource(doc('a-1', 'urn:other'));
    const c = await repo.createResource(
      doc('c-1', 'urn:t', { masterIdentifier: { system: 'urn:m', value: 'M-1' } }),
    );
    await repo.createResource(doc('d-1'));
    await repo.createResource({ resourceType: 'Patient', identifier: [{ system: 'urn:t', value: 'A-1' }] });
    // c's identifier changes; d is deleted; a gets a new version.
    await repo.updateResource({ ...c, identifier: [{ system: 'urn:t', value: 'c-2' }] });
    const d = (await repo.search(parseSearchRequest('DocumentReference?identifier=urn:t|d-1'))).entry?.[0]
      ?.resource;
    expect(d?.id).toBeDefined();
    await repo.deleteResource('DocumentReference', d!.id!);
    const a2 = await repo.updateResource({ ...a, status: 'superseded' });

    const queries: Array<[string, string[]]> = [
      ['DocumentReference?identifier=urn:t|A-1', [a2.id]],
      ['DocumentReference?identifier=URN:T|a-1', [a2.id]],
      ['DocumentReference?identifier=a-1', [a2.id, b.id].sort()],
      ['DocumentReference?identifier=|a-1', []],
      ['DocumentReference?identifier=urn:t|c-1', []],
      ['DocumentReference?identifier=urn:t|c-2', [c.id]],
      ['DocumentReference?identifier=urn:m|M-1', [c.id]],
      ['DocumentReference?identifier=urn:t|d-1', []],
      ['DocumentReference?identifier=urn:t|A-1&status=current', []],
      ['DocumentReference?identifier=urn:t|A-1&status=superseded', [a2.id]],
      ['Patient?identifier=urn:t|A-1', ['*']],
      ['DocumentReference?identifier=urn:t|', ['*', '*']], // not indexable: the scan answers
    ];
    for (const [url, expected] of queries) {
      const [indexed, scanned] = await both(repo, url);
      expect(indexed, url).toEqual(scanned);
      expect(indexed.length, url).toBe(expected.length);
      for (const id of expected) if (id !== '*') expect(indexed.join(' '), url).toContain(id);
    }
    // Current versions only.
    const [hit] = await both(repo, 'DocumentReference?identifier=urn:t|A-1');
    expect(hit).toEqual([`${a2.id}@${a2.meta?.versionId}`]);
  });

  it('lets only one of two concurrent conditional creates create', async () => {
    await (await startFhirServer()).close();
    const repo = new IndexedMemoryRepository();
    const search = () => parseSearchRequest<DocumentReference>('DocumentReference?identifier=urn:t|same');
    const results = await Promise.all([
      repo.conditionalCreate(doc('same'), search()),
      repo.conditionalCreate(doc('same'), search()),
    ]);
    expect(results.map((r) => r.outcome.id).sort()).toEqual(['created', 'ok']);
    expect(results[0].resource.id).toBe(results[1].resource.id);
    expect((await repo.search(search())).entry).toHaveLength(1);
  });

  it('serves conditional creates over HTTP: a match writes nothing and answers 200 with the existing resource', async () => {
    const server = await startFhirServer();
    try {
      const post = () =>
        fetch(`${server.baseUrl}/DocumentReference`, {
          method: 'POST',
          headers: { 'content-type': 'application/fhir+json', 'if-none-exist': 'identifier=urn:t|http-1' },
          body: JSON.stringify(doc('http-1')),
        });
      const first = await post();
      expect(first.status).toBe(201);
      const created = (await first.json()) as Resource;
      const second = await post();
      expect(second.status).toBe(200);
      const existing = (await second.json()) as Resource;
      expect(existing.id).toBe(created.id);
      expect(existing.meta?.versionId).toBe(created.meta?.versionId);
      expect(await server.search('DocumentReference', 'identifier=urn:t|http-1')).toHaveLength(1);
    } finally {
      await server.close();
    }
  });
});
