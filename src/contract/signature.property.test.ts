/**
 * Property tests for the signature contract:
 * - canonical JSON is stable under member order and whitespace;
 * - any single-byte change to the signed content fails verification;
 * - verification never throws anything but the project's ScribeError, whatever the input.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytesOf, envelopeJson, jwksOf, signed, testKey } from '../../test/support/notes.ts';
import { runs } from '../../test/support/runs.ts';
import { ScribeError } from '../errors.ts';
import type { JsonValue } from './json.ts';
import { canonicalJson, signedContent, verifyDetachedJws } from './signature.ts';
import { verifyEnvelope } from './verify.ts';

type Obj = { [k: string]: JsonValue };

/** Re-serialises a JSON value with shuffled member order and arbitrary whitespace. */
function reserialize(v: JsonValue, rand: () => number, ws: string[]): string {
  const pad = () => ws[Math.floor(rand() * ws.length)]!;
  if (Array.isArray(v))
    return `[${pad()}${v.map((x) => reserialize(x, rand, ws)).join(`${pad()},${pad()}`)}${pad()}]`;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v).sort(() => rand() - 0.5);
    return `{${pad()}${keys.map((k) => `${JSON.stringify(k)}${pad()}:${pad()}${reserialize(v[k]!, rand, ws)}`).join(`${pad()},${pad()}`)}${pad()}}`;
  }
  return JSON.stringify(v);
}

describe('canonical JSON (RFC 8785)', () => {
  it('is stable under member order and whitespace', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer(), (value, seed) => {
        let s = seed;
        const rand = () => {
          s = (s * 1103515245 + 12345) & 0x7fffffff;
          return s / 0x7fffffff;
        };
        const text = reserialize(value as JsonValue, rand, ['', ' ', '\n', '\t', '  \r\n ']);
        expect(canonicalJson(JSON.parse(text))).toBe(canonicalJson(value));
      }),
      { numRuns: runs(500) },
    );
  });

  it('sorts members by UTF-16 code units and uses ES number form', () => {
    expect(canonicalJson({ b: 1, a: [1e21, 0.1, -0], '€': 'x', '\u0080': 'y' })).toBe(
      '{"a":[1e+21,0.1,0],"b":1,"\u0080":"y","€":"x"}',
    );
  });
});

describe('signature', () => {
  it('fails for any single-byte change to the signed content', async () => {
    const key = await testKey('EdDSA');
    const env = (await signed(envelopeJson(), key)) as Obj;
    const content = signedContent(env);
    const jws = (env['signature'] as Obj)['jws'] as string;
    const jwks = jwksOf(key);
    await verifyDetachedJws(jws, content, jwks, 'x'); // the unchanged content verifies
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: content.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (pos, delta) => {
          const changed = Uint8Array.from(content);
          changed[pos] = (changed[pos]! + delta) & 0xff;
          const err = await verifyDetachedJws(jws, changed, jwks, 'x').catch((e: unknown) => e);
          expect(err).toBeInstanceOf(ScribeError);
          expect((err as ScribeError).code).toBe('SIGNATURE_INVALID');
        },
      ),
      { numRuns: runs(300) },
    );
  });

  it('never verifies an envelope file with one byte changed inside the signed members', async () => {
    const key = await testKey('ES256');
    const env = (await signed(envelopeJson(), key)) as Obj;
    const text = JSON.stringify(env);
    const jwsStart = text.indexOf('"jws":');
    const jwks = jwksOf(key);
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: jwsStart - 1 }),
        fc.integer({ min: 1, max: 126 }),
        async (pos, delta) => {
          const bytes = new TextEncoder().encode(text);
          bytes[pos] = ((bytes[pos]! + delta - 1) % 126) + 1; // another ASCII byte
          fc.pre(bytes[pos] !== text.charCodeAt(pos));
          const err = await verifyEnvelope(bytes, { keys: jwks }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(ScribeError);
        },
      ),
      { numRuns: runs(300) },
    );
  });
});

describe('verification never throws anything but ScribeError', () => {
  it('for arbitrary bytes', async () => {
    const jwks = jwksOf(await testKey());
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        const err = await verifyEnvelope(bytes, { keys: jwks }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ScribeError);
      }),
      { numRuns: runs(300) },
    );
  });

  it('for arbitrary JSON, and for envelopes with any member replaced by arbitrary JSON', async () => {
    const key = await testKey();
    const jwks = jwksOf(key);
    const base = (await signed(envelopeJson(), key)) as Obj;
    const paths: string[][] = [];
    const walk = (v: JsonValue, p: string[]) => {
      const children: [string, JsonValue][] =
        v && typeof v === 'object'
          ? Array.isArray(v)
            ? v.map((x, k) => [String(k), x])
            : Object.entries(v)
          : [];
      for (const [k, x] of children) {
        paths.push([...p, k]);
        walk(x, [...p, k]);
      }
    };
    walk(base, []);
    await fc.assert(
      fc.asyncProperty(
        fc.jsonValue({ maxDepth: 3 }),
        fc.nat({ max: paths.length - 1 }),
        fc.boolean(),
        async (junk, pi, whole) => {
          let input: unknown = junk;
          if (!whole) {
            const e = structuredClone(base) as Obj;
            const path = paths[pi]!;
            let cur: Record<string, unknown> = e;
            for (const seg of path.slice(0, -1)) cur = cur[seg] as Record<string, unknown>;
            cur[path.at(-1)!] = junk;
            input = e;
          }
          const result = await verifyEnvelope(bytesOf(input), { keys: jwks }).then(
            () => 'ok',
            (e: unknown) => e,
          );
          if (result !== 'ok') expect(result).toBeInstanceOf(ScribeError);
        },
      ),
      { numRuns: runs(400) },
    );
  });
});
