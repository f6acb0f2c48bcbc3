/**
 * Mapping hot reload (PRODUCT.md §9) against a running service: a destination's mapping file (and one of its
 * imports) edited on disk while the service runs. A proven change is used for the next note, stamped with its new
 * version and digest; a change that does not compile, or compiles but fails its conformance proof, is reported
 * once and the destination keeps the mapping it had — intake never stops. Both SIGHUP's immediate reload and the
 * poll are exercised.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashToken, loadConfig } from '../src/config/index.ts';
import { SHIPPED_MAPPINGS_DIR } from '../src/map/registry.ts';
import { createService, type Service } from '../src/service/service.ts';
import { queueableFixture } from './support/notes.ts';
import { until } from './support/service-harness.ts';

const KEYS = new URL('../fixtures/keys/riverside-clinic.jwks.json', import.meta.url).pathname;
const TOKEN = randomBytes(24).toString('base64url');
const OPERATOR = randomBytes(24).toString('base64url');

describe('mapping hot reload', () => {
  let dir: string;
  let service: Service | undefined;
  const events: Record<string, string | number | boolean>[] = [];
  let mappingFile: string;
  let commonFile: string;
  let original: string;
  let n = 0;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sb-mapping-reload-'));
    cpSync(SHIPPED_MAPPINGS_DIR, join(dir, 'mappings'), { recursive: true });
    mappingFile = join(dir, 'mappings/us-core-docref.yaml');
    commonFile = join(dir, 'mappings/common/fhir-common.yaml');
    // The copy starts at version 1.0.0 whatever the shipped version is; the edits below step from there.
    original = readFileSync(mappingFile, 'utf8').replace(/^version: .*$/m, 'version: 1.0.0');
    writeFileSync(mappingFile, original);
    writeFileSync(
      join(dir, 'config.yaml'),
      `store: pglite://./data
http: { host: 127.0.0.1, port: 0 }
auth:
  tokens:
    - { role: intake, sha256: "${hashToken(TOKEN)}" }
    - { role: operator, sha256: "${hashToken(OPERATOR)}" }
tenants:
  - id: riverside-clinic
    reviewKeys: ${KEYS}
    destinations: [ehr]
destinations:
  - id: ehr
    type: file
    directory: ./out
    mapping: ./mappings/us-core-docref.yaml
`,
    );
  });

  afterEach(async () => {
    await service?.stop();
    service = undefined;
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Posts a new note and returns the mapping version and digest its rendering was stamped with. */
  async function send(svc: Service): Promise<{ version: string; digest: string }> {
    const noteId = `reload-${++n}`;
    const body = await queueableFixture('hp-typical.json', (e) => {
      e['noteId'] = noteId;
    });
    const res = await fetch(`${svc.url}/v1/notes`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    });
    expect(res.status).toBe(202);
    const rows = await svc.ledger.db.query<{ mapping_version: string; mapping_digest: string }>(
      `select r.mapping_version, r.mapping_digest from renderings r join note_revisions v on v.id = r.revision_id
       where v.note_id = $1`,
      [noteId],
    );
    expect(rows).toHaveLength(1);
    return { version: rows[0]!.mapping_version, digest: rows[0]!.mapping_digest };
  }

  const reloads = () => events.filter((e) => e['event'] === 'mapping.reloaded');
  const failures = () => events.filter((e) => e['event'] === 'mapping.reload-failed');
  const metric = async (svc: Service, outcome: string) => {
    const res = await fetch(`${svc.url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR}` } });
    expect(res.status).toBe(200);
    const text = await res.text();
    const m = new RegExp(
      `^scribe_bridge_mapping_reloads_total\\{destination="ehr",outcome="${outcome}"\\} (\\d+)$`,
      'm',
    ).exec(text);
    return m ? Number(m[1]) : 0;
  };

  it('activates a proven change for the next note, keeps the last good mapping through a broken one, and reports each failure once', async () => {
    const svc = await createService(await loadConfig(join(dir, 'config.yaml'), {}), {
      log: (e) => void events.push(e),
      mappingReloadMs: 3_600_000, // this test reloads by hand (what SIGHUP does); the poll is tested below
    });
    service = svc;
    const first = await send(svc);
    expect(first.version).toBe('1.0.0');

    // 1. A proven change: a new version with a different description.
    writeFileSync(
      mappingFile,
      original.replace('version: 1.0.0', 'version: 1.0.1').replace('One US Core 8', 'One (edited) US Core 8'),
    );
    await svc.reloadMappings();
    expect(reloads()).toEqual([
      expect.objectContaining({
        destination: 'ehr',
        mapping: 'us-core-docref',
        version: '1.0.1',
        previousVersion: '1.0.0',
        previousDigest: first.digest,
      }),
    ]);
    const second = await send(svc);
    expect(second.version).toBe('1.0.1');
    expect(second.digest).not.toBe(first.digest);
    expect(second.digest).toBe(reloads()[0]!['digest']);

    // 2. A change that does not compile (a placeholder that is not an expression): kept 1.0.1, reported once.
    writeFileSync(
      mappingFile,
      original
        .replace('version: 1.0.0', 'version: 1.0.2')
        .replace('url: DocumentReference\n', 'url: "{{ %ids.( }}"\n'),
    );
    await svc.reloadMappings();
    await svc.reloadMappings();
    expect(failures()).toHaveLength(1);
    expect(failures()[0]).toMatchObject({
      destination: 'ehr',
      code: expect.stringMatching(/^MAPPING_/),
      keepingMapping: 'us-core-docref',
      keepingVersion: '1.0.1',
      keepingDigest: second.digest,
    });
    expect(await send(svc)).toEqual(second);
    expect(await metric(svc, 'failed')).toBe(1);

    // 3. A change to an imported file that compiles but produces non-conformant FHIR (a status outside its
    //    required value set): refused by the proof, reported once, 1.0.1 kept.
    writeFileSync(mappingFile, original.replace('version: 1.0.0', 'version: 1.0.3'));
    const common = readFileSync(commonFile, 'utf8');
    writeFileSync(
      commonFile,
      common.replace(
        "status: \"{{ iif(%retraction.exists(), 'entered-in-error', 'current') }}\"",
        "status: \"{{ iif(%retraction.exists(), 'entered-in-error', 'not-a-status') }}\"",
      ),
    );
    await svc.reloadMappings();
    await svc.reloadMappings();
    expect(failures()).toHaveLength(2);
    expect(failures()[1]).toMatchObject({ code: 'OUTPUT_INVALID', keepingVersion: '1.0.1' });
    expect(await send(svc)).toEqual(second);
    expect(await metric(svc, 'failed')).toBe(2);

    // 4. The import fixed: 1.0.3 is proven and used; the log never carried note content.
    writeFileSync(commonFile, common);
    await svc.reloadMappings();
    expect(reloads().at(-1)).toMatchObject({ version: '1.0.3', previousVersion: '1.0.1' });
    expect((await send(svc)).version).toBe('1.0.3');
    expect(await metric(svc, 'reloaded')).toBe(2);
    expect(JSON.stringify(events)).not.toMatch(/Chest|tightness|exertion/i);
  });

  it('picks a change up by polling, without a signal', async () => {
    writeFileSync(mappingFile, original.replace('version: 1.0.0', 'version: 2.0.0'));
    events.length = 0;
    const svc = await createService(await loadConfig(join(dir, 'config.yaml'), {}), {
      log: (e) => void events.push(e),
      mappingReloadMs: 100,
    });
    service = svc;
    expect((await send(svc)).version).toBe('2.0.0');
    writeFileSync(mappingFile, original.replace('version: 1.0.0', 'version: 2.0.1'));
    await until(async () => reloads().length > 0, 30_000, 'the poll to reload');
    expect(reloads()[0]).toMatchObject({ version: '2.0.1', previousVersion: '2.0.0' });
    expect((await send(svc)).version).toBe('2.0.1');
  });
});
