/**
 * One-off measurement: notes/s for the typical History & Physical probe note, rendered to the fhir-transaction
 * Bundle by the engine, by the hand-written builder and by the JSONata mapping (all three produce the same bytes:
 * test/bench-baselines.test.ts).
 *
 *   node bench/baselines/measure.ts [--seconds 2] [--rounds 5]
 *
 * "end to end" starts from the VerifiedNote (building the variables and the text rendering is part of it, as in
 * the engine's `render`); "from vars" reuses one prepared set of variables, i.e. the mapping itself. The ids and
 * evidence in the variables are lazy, memoised getters (src/map/model.ts), so "prepareVars only" does not hash
 * any id, "end to end" hashes them on every note, and "from vars" only once. The engine's `render` also hashes
 * the body (sha256), which the baselines do not; that cost is measured on its own.
 */
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { render } from '../../src/map/engine.ts';
import { loadMappingFile } from '../../src/map/mapping-file.ts';
import { probeNotes } from '../../src/map/probes.ts';
import { buildTransactionBody, prepareVars } from './handwritten-transaction.ts';
import { compileJsonataTransaction, toJsonDocument } from './jsonata-transaction.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '2' }, rounds: { type: 'string', default: '5' } },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);

const mapping = loadMappingFile(new URL('../../mappings/fhir-transaction.yaml', import.meta.url).pathname);
const probe = (await probeNotes()).find((p) => p.name === 'history_and_physical-new');
if (!probe) throw new Error('no history_and_physical-new probe');
const note = probe.note;
const vars = prepareVars(note, mapping);
const evaluate = compileJsonataTransaction();

const body = render(mapping, { note }).body;
if (buildTransactionBody(vars) !== body || JSON.stringify(await evaluate(vars)) !== body) {
  throw new Error('the baselines do not produce the engine bytes for this note');
}

/** Median notes/s over `rounds` rounds of `seconds` each (after one warm-up round). */
async function measure(run: () => unknown): Promise<number> {
  const rates: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    const end = performance.now() + seconds * 1000;
    let n = 0;
    const start = performance.now();
    let now = start;
    while (now < end) {
      for (let i = 0; i < 10; i++) {
        const v = run();
        if (v instanceof Promise) await v;
      }
      n += 10;
      now = performance.now();
    }
    if (r > 0) rates.push(n / ((now - start) / 1000));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)]!;
}

const cases: Array<[string, () => unknown]> = [
  ['engine render (end to end)', () => render(mapping, { note })],
  ['hand-written (end to end)', () => buildTransactionBody(prepareVars(note, mapping))],
  ['JSONata (end to end)', async () => JSON.stringify(await evaluate(prepareVars(note, mapping)))],
  ['prepareVars only (buildVars + plain rendering)', () => prepareVars(note, mapping)],
  ['prepareVars + toJsonDocument (hashes every id)', () => toJsonDocument(prepareVars(note, mapping))],
  ['hand-written (from vars)', () => buildTransactionBody(vars)],
  ['JSONata (from vars)', async () => JSON.stringify(await evaluate(vars))],
  ['sha256 of the body (in render only)', () => createHash('sha256').update(body).digest('hex')],
];

console.log(
  `note: ${probe.name}, ${(vars['note'] as { sentences: unknown[] }).sentences.length} sentences, ` +
    `body ${Buffer.byteLength(body)} bytes; Node ${process.version}; median of ${rounds} × ${seconds}s`,
);
const results: Array<{ case: string; 'notes/s': number; 'µs/note': number }> = [];
for (const [name, run] of cases) {
  const rate = await measure(run);
  results.push({ case: name, 'notes/s': Math.round(rate), 'µs/note': Math.round(1e6 / rate) });
}
console.table(results);
