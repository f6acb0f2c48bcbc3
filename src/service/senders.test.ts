import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { verifyEnvelope } from '../contract/verify.ts';
import type { ClaimedDelivery } from '../ledger/types.ts';
import { render } from '../map/engine.ts';
import { MappingRegistry } from '../map/registry.ts';
import { RenderedValues, renderingOf } from './senders.ts';

const fixtures = join(import.meta.dirname, '../../fixtures');

async function typicalNote() {
  const dir = join(fixtures, 'envelopes/valid');
  const bytes = readFileSync(join(dir, 'hp-typical.json'));
  const tenant = (JSON.parse(bytes.toString('utf8')) as { tenant: string }).tenant;
  const jwks = JSON.parse(readFileSync(join(fixtures, `keys/${tenant}.jwks.json`), 'utf8'));
  return verifyEnvelope(bytes, { keys: jwks, envelopeDir: dir });
}

function claimed(r: ReturnType<typeof render>): ClaimedDelivery {
  return {
    id: 1,
    tenant: 't',
    noteId: 'n',
    revision: 1,
    status: 'final',
    destination: 'd',
    claimedFrom: 'pending',
    attempts: 0,
    leaseOwner: 'w',
    leaseUntil: new Date(0),
    receivedAt: new Date(0),
    rendering: {
      id: 1,
      mapping: r.mapping,
      contentType: r.contentType,
      payload: r.body,
      payloadSha256: r.sha256,
      writeRequest: r.request ?? null,
      identifiers: [],
    },
  };
}

describe('RenderedValues (intake → FHIR sender hand-over)', () => {
  it('hands each value over once and keeps at most its bound, oldest out first', () => {
    const v = new RenderedValues(2);
    v.put('a', 1);
    v.put('b', 2);
    v.put('c', 3);
    expect(v.size).toBe(2);
    expect(v.take('a')).toBeUndefined();
    expect(v.take('b')).toBe(2);
    expect(v.take('b')).toBeUndefined();
    expect(v.take('c')).toBe(3);
    expect(v.size).toBe(0);
  });

  it('gives the sender the rendered value when kept, and the same value parsed from the recorded bytes otherwise', async () => {
    const note = await typicalNote();
    const registry = new MappingRegistry();
    for (const id of ['fhir-transaction', 'us-core-docref', 'fhir-document']) {
      const r = render(registry.get(id), { note });
      const values = new RenderedValues();
      values.put(r.sha256, r.value);
      const kept = renderingOf(claimed(r), values);
      expect(kept.value).toBe(r.value);
      expect(values.size).toBe(0);
      const parsed = renderingOf(claimed(r), values);
      expect(parsed.value).not.toBe(r.value);
      // The hand-over is only sound because the rendered value is exactly what its bytes parse to.
      expect(parsed.value).toStrictEqual(r.value);
      expect(JSON.stringify(kept.value)).toBe(r.body);
      expect({ ...kept, value: null }).toEqual({ ...parsed, value: null });
    }
  });

  it('never hands over a value for a different payload', async () => {
    const note = await typicalNote();
    const r = render(new MappingRegistry().get('us-core-docref'), { note });
    const values = new RenderedValues();
    values.put('0'.repeat(64), { resourceType: 'Other' });
    expect(renderingOf(claimed(r), values).value).toStrictEqual(JSON.parse(r.body));
    expect(values.size).toBe(1);
  });
});
