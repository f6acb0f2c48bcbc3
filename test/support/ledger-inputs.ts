/**
 * Synthetic ledger inputs for the ledger and audit tests: a revision with one small rendering per destination,
 * its content hash derived from (noteId, revision, content) so the same arguments are a duplicate and a
 * different `content` a conflict.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { RevisionInput } from '../../src/ledger/types.ts';

export const PG_BASE = 'postgres://postgres@127.0.0.1:5432';

export const sha = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

/** Runs one statement on the `postgres` database (create / drop a test database). */
export async function pgAdmin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

export function revisionFixture(
  noteId: string,
  revision: number,
  destinations: readonly string[],
  o: { status?: RevisionInput['status']; content?: string; tenant?: string } = {},
): RevisionInput {
  const status = o.status ?? (revision === 1 ? 'final' : 'amended');
  return {
    tenant: o.tenant ?? 't1',
    noteId,
    revision,
    status,
    replaces: revision === 1 ? null : revision - 1,
    contentSha256: sha(`${noteId}/${revision}/${o.content ?? 'v'}`),
    envelope: { kind: 'signed-note', noteId, revision, status },
    signature: {
      kid: 'k1',
      alg: 'ES256',
      thumbprint: 'tp',
      signedAt: '2029-12-31T23:00:00Z',
      verified: true,
    },
    artifacts: [
      { name: 'transcript', source: 'uri', uri: 's3://b/t.json', sha256: sha('t'), hashSigned: true },
    ],
    source: 'http',
    renderings: destinations.map((destination) => {
      const payload = `payload ${noteId} r${revision} ${destination}`;
      return {
        destination,
        mapping: { id: 'us-core-docref', version: '1.0.0', digest: sha('m') },
        contentType: 'application/fhir+json',
        payload,
        payloadSha256: sha(payload),
        writeRequest: { method: 'PUT', url: `DocumentReference/${noteId}-${revision}` },
        identifiers: [{ system: 'urn:test', value: `${noteId}-${revision}` }],
      };
    }),
  };
}
