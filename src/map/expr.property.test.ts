/**
 * The fast subset of FHIRPath must give exactly fhirpath.js's answer. For random data and random expressions
 * drawn from the subset's grammar, both evaluators are run and compared (including "throws").
 */
import fc from 'fast-check';
import fhirpath from 'fhirpath';
import { describe, expect, it } from 'vitest';
import { runs } from '../../test/support/runs.ts';
import { compileExpr, type Tables, userInvocationTable } from './expr.ts';

const tables: Tables = {
  sections: { PLAN: { code: '18776-5', title: 'Plan' }, A: { code: 'x' }, '*': {} },
  flags: { yes: true, no: false },
};

const keys = ['a', 'b', 'c', 'text', 'code', 'PLAN', 'A', 'yes'];
// The model domain the engine evaluates over: plain JSON without `resourceType` members, arrays without
// nested arrays or nulls (src/map/model.ts builds only such values).
const leaf = fc.oneof(
  fc.string({ maxLength: 6 }),
  fc.constantFrom('<a & "b">', "it's", 'PLAN', 'A', 'yes', 'no'),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
);
const data = fc.letrec((tie) => ({
  node: fc.oneof(
    { maxDepth: 3 },
    leaf,
    fc.array(
      fc.oneof(
        leaf.filter((x) => x !== null),
        tie('obj'),
      ),
      { maxLength: 3 },
    ),
    tie('obj'),
  ),
  obj: fc.dictionary(fc.constantFrom(...keys), tie('node'), { maxKeys: 4 }),
})).node;

const path: fc.Arbitrary<string> = fc.letrec((tie) => ({
  p: fc.oneof(
    { maxDepth: 4 },
    fc.constantFrom('%v', '%w'),
    fc.tuple(tie('p'), fc.constantFrom(...keys)).map(([p, k]) => `${p}.${k}`),
    fc.tuple(tie('p'), fc.nat({ max: 2 })).map(([p, i]) => `${p}[${i}]`),
    tie('p').map((p) => `${p}.first()`),
    tie('p').map((p) => `${p}.exists()`),
    tie('p').map((p) => `${p}.empty()`),
    tie('p').map((p) => `${p}.not()`),
    tie('p').map((p) => `${p}.escape('html')`),
    fc.tuple(fc.constantFrom('sections', 'flags', 'none'), tie('p')).map(([t, p]) => `lookup('${t}', ${p})`),
    tie('p').map((p) => `${p}.upper()`),
    tie('p').map((p) => `${p}.lower()`),
    fc.constantFrom("'PLAN'", "'text'", '{}', '0', '2'),
    fc.tuple(tie('p'), tie('p'), tie('p')).map(([c, a, b]) => `iif(${c}, ${a}, ${b})`),
    fc.tuple(tie('p'), tie('p')).map(([c, a]) => `iif(${c}, ${a})`),
  ),
})).p as fc.Arbitrary<string>;

const uit = userInvocationTable(tables);

function outcome(f: () => unknown): { ok: unknown } | { threw: true } {
  try {
    return { ok: f() };
  } catch {
    return { threw: true };
  }
}

describe('FHIRPath fast subset', () => {
  it('agrees with fhirpath.js on random data and expressions', () => {
    fc.assert(
      fc.property(path, data, data, (expr, v, w) => {
        const vars = { v, w };
        const compiled = compileExpr(expr, tables);
        const ours = outcome(() => compiled.evaluate(vars));
        const theirs = outcome(() =>
          fhirpath.evaluate({}, expr, vars, undefined, { userInvocationTable: uit }),
        );
        expect(ours, expr).toEqual(theirs);
      }),
      { numRuns: runs(5000) },
    );
  });

  it('takes the fast path for the subset and fhirpath.js for the rest', () => {
    expect(compileExpr('%patient.identifier[0].value', tables).fast).toBe(true);
    expect(compileExpr("lookup('sections', %section.key).code", tables).fast).toBe(true);
    expect(compileExpr("%s.text.escape('html')", tables).fast).toBe(true);
    const slow = compileExpr("iif(%n > 1, 'amended', 'final')", tables);
    expect(slow.fast).toBe(false);
    expect(slow.evaluate({ n: 2 })).toEqual(['amended']);
  });
});
