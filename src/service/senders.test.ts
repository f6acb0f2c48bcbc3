import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { verifyEnvelope } from '../contract/verify.ts';
import { planWrite } from '../deliver/fhir-request.ts';
import type { ClaimedDelivery } from '../ledger/types.ts';
import { render } from '../map/engine.ts';
import { MappingRegistry } from '../map/registry.ts';
import { renderingOf } from './senders.ts';

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

describe("renderingOf (the ledger's recorded rendering → a FHIR sender)", () => {
  it('parses the recorded bytes only when the value is read, once, to exactly the rendered value', async () => {
    const note = await typicalNote();
    const registry = new MappingRegistry();
    for (const id of ['fhir-transaction', 'us-core-docref', 'fhir-document']) {
      const r = render(registry.get(id), { note });
      const parse = vi.spyOn(JSON, 'parse');
      try {
        const recorded = renderingOf(claimed(r));
        expect(recorded.body).toBe(r.body);
        expect(recorded.sha256).toBe(r.sha256);
        expect(parse).not.toHaveBeenCalled();
        expect(recorded.value).toStrictEqual(r.value);
        expect(recorded.value).toBe(recorded.value);
        expect(parse).toHaveBeenCalledTimes(1);
      } finally {
        parse.mockRestore();
      }
    }
  });

  it('plans the same request from the recorded bytes as intake planned from the rendered value', async () => {
    const note = await typicalNote();
    const registry = new MappingRegistry();
    for (const id of ['fhir-transaction', 'us-core-docref', 'fhir-document']) {
      const r = render(registry.get(id), { note });
      for (const write of ['conditional-create', 'put'] as const) {
        let atIntake: unknown;
        try {
          atIntake = planWrite(r, write);
        } catch (e) {
          atIntake = (e as { code?: string }).code;
        }
        let atSend: unknown;
        try {
          atSend = planWrite(renderingOf(claimed(r)), write);
        } catch (e) {
          atSend = (e as { code?: string }).code;
        }
        expect(atSend).toEqual(atIntake);
      }
    }
  });
});
