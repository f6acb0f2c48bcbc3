/**
 * Benchmark baseline: the `fhir-transaction` mapping written in JSONata (bench/baselines/transaction.jsonata),
 * the other established approach to declarative JSON-to-JSON mapping. Its input document is the engine's
 * template variables (handwritten-transaction.ts `prepareVars`); its result is the transaction Bundle of a new
 * note or an amendment, equal to what the engine renders (test/bench-baselines.test.ts).
 */
import { readFileSync } from 'node:fs';
import jsonata from 'jsonata';
import type { Vars } from '../../src/map/expr.ts';

/** The JSONata source of the mapping. */
export const TRANSACTION_JSONATA_FILE = new URL('./transaction.jsonata', import.meta.url);

/**
 * The variables as a plain JSON document. JSONata reads only own properties (its member lookup checks
 * hasOwnProperty), while src/map/model.ts exposes the ids (`%ids.*`, `sentence.provenanceId`/`provenanceUuid`)
 * and `sentence.evidence` as lazy, memoised prototype getters; this copies every value, getters included.
 */
export function toJsonDocument(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(toJsonDocument);
  const source = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(source)) out[k] = toJsonDocument(source[k]);
  for (let p = Object.getPrototypeOf(source); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const [k, d] of Object.entries(Object.getOwnPropertyDescriptors(p))) {
      if (d.get && !Object.hasOwn(out, k)) out[k] = toJsonDocument(source[k]);
    }
  }
  return out;
}

/**
 * Parses the expression once; the returned function evaluates it for one set of variables (async in JSONata 2).
 * Each call includes `toJsonDocument(vars)`.
 */
export function compileJsonataTransaction(): (vars: Vars) => Promise<unknown> {
  const expression = jsonata(readFileSync(TRANSACTION_JSONATA_FILE, 'utf8'));
  return (vars) => expression.evaluate(toJsonDocument(vars));
}
