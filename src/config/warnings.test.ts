/**
 * Promise: a valid config that cannot do what it seems meant to (a destination no tenant uses, a tenant no note can
 * reach) is named at start, by id and reason only.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from './load.ts';
import { hashToken } from './resolve.ts';
import { configFile, MINIMAL } from './testdata/support.ts';
import { configWarnings } from './warnings.ts';

const tokens = (...lines: string[]) => `auth:\n  tokens:\n${lines.map((l) => `    - ${l}\n`).join('')}`;
const intake = (tenants?: string) =>
  `{ role: intake, sha256: "${hashToken('t')}"${tenants ? `, tenants: [${tenants}]` : ''} }`;

describe('config warnings', () => {
  it('none for a config that uses every destination and can take notes for every tenant', async () => {
    const config = await loadConfig(configFile(`${MINIMAL}${tokens(intake())}`), {});
    expect(configWarnings(config)).toEqual([]);
  });

  it('a destination no tenant names', async () => {
    const text = `${MINIMAL}  - id: staged\n    type: file\n    directory: ./staged\n    mapping: mdm\n${tokens(intake())}`;
    expect(configWarnings(await loadConfig(configFile(text), {}))).toEqual([
      { event: 'config.warning', reason: 'destination-unused', destination: 'staged' },
    ]);
  });

  it('no intake token and no queue; a tenant no intake token may act for', async () => {
    expect(configWarnings(await loadConfig(configFile(MINIMAL), {}))).toEqual([
      { event: 'config.warning', reason: 'no-intake' },
    ]);
    // SCRIBE_BRIDGE_TOKEN_INTAKE is an intake token for every tenant.
    expect(
      configWarnings(await loadConfig(configFile(MINIMAL), { SCRIBE_BRIDGE_TOKEN_INTAKE: 'x' })),
    ).toEqual([]);
    const limited = MINIMAL.replace(
      'destinations:\n',
      '  - id: harbor-health\n    reviewKeys: ./keys/riverside-clinic.jwks.json\n    destinations: [ehr-fhir]\ndestinations:\n',
    );
    expect(limited).not.toBe(MINIMAL);
    expect(
      configWarnings(await loadConfig(configFile(`${limited}${tokens(intake('harbor-health'))}`), {})),
    ).toEqual([{ event: 'config.warning', reason: 'tenant-unreachable', tenant: 'riverside-clinic' }]);
  });
});
