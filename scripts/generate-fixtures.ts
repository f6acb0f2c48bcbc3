/**
 * Generates the synthetic test fixtures in fixtures/ (see fixtures/README.md): TEST-ONLY keys, HealthScribe
 * encounters, signed-note envelopes (valid and invalid) with manifests, then verifies all of them with the
 * project's own verifier. Deterministic for a given seed. Run: `npm run fixtures` [-- --seed <n>] [--resign].
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ALLOWED_ALGS, type SignatureAlg } from '../src/contract/signature.ts';
import { brokenFiles } from './fixtures/broken.ts';
import { AMEND_ADDED, AMEND_EDITS, R, VALID_SPECS } from './fixtures/catalog.ts';
import { checkEncounterFiles } from './fixtures/consistency.ts';
import { type BuiltEncounter, buildEncounter, ENCOUNTERS } from './fixtures/encounters.ts';
import {
  type BuiltEnvelope,
  buildEnvelope,
  buildRevision,
  type EncounterFiles,
  type ManifestEntry,
} from './fixtures/envelopes.ts';
import { jsonText, writeJson, writeText } from './fixtures/io.ts';
import { ensureKeys, type KeyPair, kidFor } from './fixtures/keys.ts';
import { buildNegatives } from './fixtures/negatives.ts';
import { addSeconds, formatUtc } from './fixtures/people.ts';
import { fixturesReadme, KEYS_README } from './fixtures/readme.ts';
import { Rng } from './fixtures/rng.ts';
import { checkInvalid, checkValid } from './fixtures/selfcheck.ts';
import { Signer } from './fixtures/sign.ts';

/** The fixtures' seed: change it only deliberately (every generated file changes). */
const DEFAULT_SEED = 20261120;

const { values: args } = parseArgs({
  options: { seed: { type: 'string' }, resign: { type: 'boolean', default: false } },
});
const SEED = args.seed === undefined ? DEFAULT_SEED : Number.parseInt(args.seed, 10);
if (!Number.isSafeInteger(SEED)) throw new Error(`--seed must be an integer, not ${args.seed}`);

const ROOT = resolve(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'fixtures');
const KEYS = join(FIXTURES, 'keys');
const HS = join(FIXTURES, 'healthscribe');
const ENVELOPES = join(FIXTURES, 'envelopes');
const VALID = join(ENVELOPES, 'valid');
const INVALID = join(ENVELOPES, 'invalid');

function previousEnvelopes(): Map<string, string> {
  const out = new Map<string, string>();
  for (const sub of ['valid', 'invalid']) {
    const dir = join(ENVELOPES, sub);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir))
      if (f.endsWith('.json')) out.set(`${sub}/${f}`, readFileSync(join(dir, f), 'utf8'));
  }
  return out;
}

function dirSize(dir: string): number {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).reduce((n, f) => {
    const st = statSync(join(dir, f));
    return st.isFile() ? n + st.size : n;
  }, 0);
}

async function main(): Promise<number> {
  const problems: string[] = [];
  const signer = new Signer(previousEnvelopes(), args.resign);
  rmSync(HS, { recursive: true, force: true });
  rmSync(ENVELOPES, { recursive: true, force: true });

  // 1. Keys.
  const keys = await ensureKeys(KEYS);
  writeText(join(KEYS, 'README.md'), KEYS_README);
  if (keys.generated.length > 0) console.log(`generated new TEST keys for: ${keys.generated.join(', ')}`);
  const key = (tenant: string, alg: SignatureAlg): KeyPair =>
    keys.tenants.get(tenant)!.find((k) => k.kid === kidFor(tenant, alg))!;

  // 2. HealthScribe encounters.
  const files = new Map<string, EncounterFiles>();
  for (const spec of ENCOUNTERS) {
    const built: BuiltEncounter = buildEncounter(spec, SEED);
    const transcriptText = jsonText(built.transcript.json);
    const documentText = jsonText(built.document.json);
    writeText(join(HS, spec.dir, built.transcriptFile), transcriptText);
    writeText(join(HS, spec.dir, built.documentFile), documentText);
    problems.push(...checkEncounterFiles(spec.dir, transcriptText, documentText));
    files.set(spec.dir, { built, transcriptText, documentText, relDir: `../../healthscribe/${spec.dir}` });
    const st = built.document.stats;
    console.log(
      `${spec.dir.padEnd(22)} ${spec.template.padEnd(20)} ${String(built.transcript.segments.length).padStart(5)} segments ` +
        `${(built.transcript.durationSeconds / 60).toFixed(1).padStart(5)} min | ${st.sentences} sentences, ${st.links} links to ` +
        `${st.distinctSegments} segments, max ${st.maxLinksPerSentence}/sentence, max ${st.maxSentencesPerSegment} sentences/segment`,
    );
  }

  // 3. Broken HealthScribe files for the negative fixtures.
  const broken = brokenFiles(files.get('birp-substance-use')!, files.get('hp-typical')!);
  writeText(join(HS, 'broken-no-segments', 'transcript.json'), broken.transcriptText);
  writeText(join(HS, 'broken-preview-format', 'summary.json'), broken.previewText);

  // 4. Valid envelopes, then the H&P amendment and retraction.
  const built = new Map<string, BuiltEnvelope>();
  for (const spec of VALID_SPECS) {
    const env = await buildEnvelope(
      spec,
      files.get(spec.encounter)!,
      key(spec.tenant, spec.alg),
      signer,
      SEED,
      `valid/${spec.file}`,
    );
    writeJson(join(VALID, spec.file), env.signed);
    built.set(spec.file, env);
  }
  const hp = built.get('hp-typical.json')!;
  const hpSignedAt = Date.parse((hp.unsigned['signature'] as { signedAt: string }).signedAt);
  const later = (days: number, seconds: number) =>
    formatUtc(addSeconds({ epochMs: hpSignedAt, offsetMinutes: 0 }, days * 86400 + seconds));
  const r2 = await buildRevision(
    hp,
    {
      file: 'hp-typical.r2-amended.json',
      revision: 2,
      status: 'amended',
      alg: 'ES384',
      signedAtUtc: later(1, 3217),
      edits: AMEND_EDITS,
      added: AMEND_ADDED,
    },
    key(R, 'ES384'),
    signer,
    'valid/hp-typical.r2-amended.json',
  );
  const r3 = await buildRevision(
    r2,
    {
      file: 'hp-typical.r3-entered-in-error.json',
      revision: 3,
      status: 'entered-in-error',
      alg: 'RS256',
      signedAtUtc: later(2, 1544),
    },
    key(R, 'RS256'),
    signer,
    'valid/hp-typical.r3-entered-in-error.json',
  );
  for (const env of [r2, r3]) {
    writeJson(join(VALID, env.spec.file), env.signed);
    built.set(env.spec.file, env);
  }
  const manifest: ManifestEntry[] = [...built.values()].map((b) => b.manifest);
  const algsUsed = new Set(manifest.filter((m) => m.tenant === R).map((m) => m.alg));
  for (const alg of ALLOWED_ALGS)
    if (!algsUsed.has(alg)) problems.push(`no riverside-clinic envelope is signed with ${alg}`);
  // Manifests sit beside the envelope folders, so a folder holds envelopes only (`scribe-bridge verify <dir>`).
  writeJson(join(VALID, '..', 'valid.manifest.json'), { seed: SEED, envelopes: manifest });

  // 5. Negative envelopes.
  const negatives = await buildNegatives({
    birp: built.get('birp-substance-use.json')!,
    hp,
    key: key(R, 'EdDSA'),
    harborKey: key('harbor-health', 'EdDSA'),
    rogueKey: keys.rogue,
    signer,
    rng: Rng.derive(SEED, 'negatives'),
    brokenTranscript: {
      uri: 'file:../../healthscribe/broken-no-segments/transcript.json',
      text: broken.transcriptText,
    },
    previewDocument: {
      uri: 'file:../../healthscribe/broken-preview-format/summary.json',
      text: broken.previewText,
    },
  });
  for (const c of negatives) writeText(join(INVALID, c.file), c.bytes);
  writeJson(
    join(INVALID, '..', 'invalid.manifest.json'),
    Object.fromEntries(negatives.map((c) => [c.file, { code: c.code, description: c.description }])),
  );

  writeText(join(FIXTURES, 'README.md'), fixturesReadme(SEED, manifest, negatives));

  // 6. Self-check with the project's verifier.
  problems.push(...(await checkValid(VALID, KEYS, manifest)));
  problems.push(...(await checkInvalid(INVALID, join(KEYS, 'riverside-clinic.jwks.json'), negatives)));

  console.log(
    `\n${manifest.length} valid envelopes, ${negatives.length} invalid; signatures: ${signer.fresh} new, ${signer.reused} kept; ` +
      `fixtures total ${(dirSize(FIXTURES) / 1e6).toFixed(2)} MB`,
  );
  for (const m of manifest) {
    const c = m.editClasses;
    console.log(
      `  ${m.file.padEnd(38)} ${m.alg.padEnd(6)} r${m.revision} ${m.status.padEnd(16)} verbatim ${c['ai-verbatim']}, edited ${c['clinician-edited']}, added ${c['clinician-added']}, removed ${m.removedDraftSentences}`,
    );
  }
  if (problems.length > 0) {
    console.error(`\n${problems.length} problem(s):`);
    for (const p of problems) console.error(`  - ${p}`);
    return 1;
  }
  console.log(
    'self-check passed: every valid envelope verifies as its manifest says; every invalid one fails with its code',
  );
  return 0;
}

process.exitCode = await main();
