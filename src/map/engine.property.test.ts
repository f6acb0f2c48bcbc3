/**
 * Determinism: the same envelope and mapping version always give the same bytes — whatever the member order or
 * whitespace of the envelope file, however often it is rendered, in whatever order notes are rendered.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { envelopeJson, jwksOf, signed, testKey } from '../../test/support/notes.ts';
import { runs } from '../../test/support/runs.ts';
import type { JsonValue } from '../contract/json.ts';
import { verifyEnvelope } from '../contract/verify.ts';
import { render } from './engine.ts';
import { loadMappingFile } from './mapping-file.ts';
import { probeNotes } from './probes.ts';
import { SHIPPED_MAPPINGS_DIR } from './registry.ts';

const mappings = ['us-core-docref', 'fhir-transaction', 'fhir-document'].map((id) =>
  loadMappingFile(`${SHIPPED_MAPPINGS_DIR}${id}.yaml`),
);

function shuffle(v: JsonValue, rand: () => number): string {
  if (Array.isArray(v)) return `[${v.map((x) => shuffle(x, rand)).join(',')}]`;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v).sort(() => rand() - 0.5);
    const ws = rand() < 0.5 ? '' : '\n  ';
    return `{${ws}${keys.map((k) => `${JSON.stringify(k)}:${ws}${shuffle(v[k]!, rand)}`).join(`,${ws}`)}}`;
  }
  return JSON.stringify(v);
}

describe('mapping determinism', () => {
  it('gives byte-identical output for any member order and whitespace of the envelope', async () => {
    const key = await testKey('EdDSA');
    const env = await signed(envelopeJson(), key);
    const jwks = jwksOf(key);
    const reference = await verifyEnvelope(JSON.stringify(env), { keys: jwks });
    const expected = mappings.map((m) => render(m, { note: reference }).body);
    await fc.assert(
      fc.asyncProperty(fc.integer(), async (seed) => {
        let s = seed;
        const rand = () => {
          s = (s * 1103515245 + 12345) & 0x7fffffff;
          return s / 0x7fffffff;
        };
        const note = await verifyEnvelope(shuffle(env, rand), { keys: jwks });
        mappings.forEach((m, i) => {
          expect(render(m, { note }).body).toBe(expected[i]);
        });
      }),
      { numRuns: runs(60) },
    );
  });

  it('gives the same bytes on every render, in any order of notes', async () => {
    const probes = await probeNotes();
    const first = probes.map((p) =>
      mappings.map((m) => render(m, { note: p.note, ...(p.prior ? { prior: p.prior } : {}) }).sha256),
    );
    fc.assert(
      fc.property(fc.shuffledSubarray([...probes.keys()], { minLength: probes.length }), (order) => {
        for (const i of order) {
          const p = probes[i]!;
          mappings.forEach((m, j) => {
            expect(render(m, { note: p.note, ...(p.prior ? { prior: p.prior } : {}) }).sha256).toBe(
              first[i]![j],
            );
          });
        }
      }),
      { numRuns: runs(10) },
    );
  });

  it('carries every sentence unchanged in the plain-text rendering', async () => {
    const probes = await probeNotes();
    const docref = mappings[0]!;
    for (const p of probes.filter((x) => x.note.envelope.status !== 'entered-in-error')) {
      const r = render(docref, { note: p.note });
      const res = r.value as { content: Array<{ attachment: { data: string } }> };
      const text = Buffer.from(res.content[0]!.attachment.data, 'base64').toString('utf8');
      for (const s of p.note.sentences) expect(text).toContain(s.text);
    }
  });
});
