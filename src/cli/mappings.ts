import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import { type ScribeError, toScribeError } from '../errors.ts';
import { coverage, formatCoverage } from '../map/coverage.ts';
import { render } from '../map/engine.ts';
import type { Mapping } from '../map/mapping-file.ts';
import { probeNotes } from '../map/probes.ts';
import {
  MappingRegistry,
  resolveMappingRef,
  SHIPPED_MAPPING_IDS,
  SHIPPED_MAPPINGS_DIR,
} from '../map/registry.ts';
import { Conformance } from '../validate/conformance.ts';
import { loadProfiles } from '../validate/profiles.ts';
import { goldenText, runGolden } from './golden.ts';
import type { Io } from './io.ts';
import { profileFolders } from './map.ts';
import { keysFromOption, noteWithPrior } from './notes.ts';

function printError(io: Io, err: ScribeError): void {
  io.err(`error ${err.message}\n`);
  for (const i of err.issues.slice(1)) io.err(`  also: ${i.message} (at ${i.where})\n`);
}

/** How many of a refused proof's problems `mappings check` prints. */
const SHOWN_PROBLEMS = 20;

/**
 * Lints mapping files: load and compile (located errors), render every probe note through them, then prove each
 * the way the service does before it uses a mapping version (Conformance.prove: every probe's output validated in
 * full), so a mapping `check` passes is one `serve` will use.
 */
export async function mappingsCheck(
  refs: readonly string[],
  io: Io,
  opts: { profiles?: string[] } = {},
): Promise<number> {
  const registry = new MappingRegistry();
  const probes = await probeNotes();
  const conformance = new Conformance(await loadProfiles(profileFolders(opts.profiles)));
  if (!conformance.hasUsCore) {
    io.err(
      'note: validating against base FHIR R4 and scribe-bridge profiles only; give --profiles <folder with US Core 8> (or SCRIBE_BRIDGE_PROFILES) to validate against US Core too\n',
    );
  }
  let failed = 0;
  for (const ref of refs) {
    let mapping: Mapping;
    try {
      mapping = registry.get(ref);
    } catch (e) {
      printError(io, toScribeError(e));
      failed++;
      continue;
    }
    const problems: string[] = [];
    for (const p of probes) {
      try {
        render(mapping, { note: p.note, ...(p.prior ? { prior: p.prior } : {}) });
      } catch (e) {
        const err = toScribeError(e);
        if (err.code === 'MAPPING_UNSUPPORTED') continue; // a mapping may leave a lifecycle step out
        problems.push(`probe ${p.name}: ${err.message}`);
      }
    }
    if (problems.length === 0) {
      try {
        await conformance.prove(mapping);
      } catch (e) {
        const err = toScribeError(e);
        const issues = err.issues.length > 0 ? err.issues : [{ where: err.where ?? '', message: err.detail }];
        problems.push(`${err.code}: ${err.detail.replace(/: \d+ problem\(s\), first: [\s\S]*$/, '')}`);
        for (const i of issues.slice(0, SHOWN_PROBLEMS)) problems.push(`  ${i.where}: ${i.message}`);
        if (issues.length > SHOWN_PROBLEMS) problems.push(`  … and ${issues.length - SHOWN_PROBLEMS} more`);
      }
    }
    if (problems.length > 0) {
      failed++;
      io.err(`FAIL ${mapping.file}\n${problems.map((p) => `  ${p}\n`).join('')}`);
    } else {
      io.out(
        `OK ${mapping.id} ${mapping.version} (sha256 ${mapping.digest}): ${probes.length} probe notes rendered and validated — ${mapping.file}\n`,
      );
    }
  }
  return failed === 0 ? 0 : 1;
}

export interface TestOptions {
  mapping?: string[];
  envelopes: string;
  golden: string;
  keys?: string;
  update?: boolean;
  coverage?: boolean;
}

export async function mappingsTest(opts: TestOptions, io: Io): Promise<number> {
  const registry = new MappingRegistry();
  const refs = opts.mapping?.length
    ? opts.mapping
    : SHIPPED_MAPPING_IDS.filter((id) => existsSync(resolve(SHIPPED_MAPPINGS_DIR, `${id}.yaml`)));
  const mappings = refs.map((r) => registry.get(r));
  const keys = await keysFromOption(opts.keys);
  const results = await runGolden({
    mappings,
    envelopesDir: resolve(opts.envelopes),
    goldenDir: resolve(opts.golden),
    ...(keys ? { keys } : {}),
    update: Boolean(opts.update),
    onResult: (r) => {
      const label = `${r.mapping} × ${r.case}`;
      if (r.status === 'pass' || r.status === 'written')
        io.out(`${r.status === 'pass' ? 'PASS' : 'WROTE'} ${label}\n`);
      else if (r.status === 'missing')
        io.out(`MISSING ${label}: no golden file ${r.golden} (run with --update to accept)\n`);
      else if (r.status === 'error') io.out(`ERROR ${label}: ${r.error}\n`);
      else io.out(`FAIL ${label}\n${r.diff}`);
      if (opts.coverage && r.note && r.rendering)
        io.out(`${formatCoverage(coverage(r.note, r.rendering))}\n`);
    },
  });
  const bad = results.filter(
    (r) => r.status === 'fail' || r.status === 'error' || r.status === 'missing',
  ).length;
  io.out(`golden: ${results.length - bad} passed, ${bad} failed\n`);
  return bad === 0 ? 0 : 1;
}

/** Renders one envelope with two mappings (e.g. two versions of one) and prints the difference. */
export async function mappingsDiff(
  a: string,
  b: string,
  envelope: string,
  opts: { keys?: string },
  io: Io,
): Promise<number> {
  const input = await noteWithPrior(envelope, await keysFromOption(opts.keys));
  const registry = new MappingRegistry();
  const [ma, mb] = [registry.get(a), registry.get(b)];
  const [ta, tb] = [goldenText(render(ma, input)), goldenText(render(mb, input))];
  if (ta === tb) {
    io.out(`no difference: ${ma.id} ${ma.version} and ${mb.id} ${mb.version} give the same output\n`);
    return 0;
  }
  io.out(
    createTwoFilesPatch(
      `${resolveMappingRef(a)} (${ma.version})`,
      `${resolveMappingRef(b)} (${mb.version})`,
      ta,
      tb,
      '',
      '',
      { context: 3 },
    ),
  );
  return 1;
}

export async function mappingsCoverage(
  envelope: string,
  opts: { mapping: string; keys?: string },
  io: Io,
): Promise<number> {
  const { note, prior } = await noteWithPrior(envelope, await keysFromOption(opts.keys));
  const mapping = new MappingRegistry().get(opts.mapping);
  const r = render(mapping, { note, ...(prior ? { prior } : {}) });
  io.out(`${mapping.id} ${mapping.version} on ${envelope}:\n${formatCoverage(coverage(note, r))}\n`);
  return 0;
}
