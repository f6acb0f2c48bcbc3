/**
 * `scribe-bridge demo`'s failure path without starting everything: reportDemo (src/cli/demo.ts) given a result
 * with problems exits 1 and prints `error DEMO_INCOMPLETE` with one line per problem and the hint; given a clean
 * result, exit 0 and no error. Text and JSON modes.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { reportDemo } from '../src/cli/demo.ts';
import type { Io } from '../src/cli/io.ts';
import type { DemoNote, DemoResult } from '../src/demo/run.ts';
import { ERROR_CODES } from '../src/errors.ts';

function recorder(): Io & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (s) => {
      out += s;
    },
    err: (s) => {
      err += s;
    },
    interactive: false,
    progressStream: new PassThrough(),
    stdout: () => out,
    stderr: () => err,
  };
}

const note = (state: 'delivered' | 'rejected', lastErrorCode: string | null): DemoNote => ({
  file: 'n.json',
  tenant: 't1',
  noteId: 'enc-1',
  revision: 1,
  status: 'final',
  sentAs: 'inline',
  revisionState: 'accepted',
  provenance: {
    sentences: { 'ai-verbatim': 1, 'clinician-edited': 0, 'clinician-added': 0 },
    evidenceLinks: 1,
    removedDraftSentences: 0,
  },
  deliveries: [
    {
      destination: 'ehr-fhir',
      type: 'fhir',
      mapping: { id: 'us-core-docref', version: '1' },
      state,
      attempts: 1,
      lastErrorCode,
    },
  ],
  trace: { url: 'http://127.0.0.1:1/v1/trace?x' },
});

const result = (problems: string[], notes: DemoNote[]): DemoResult => ({
  ok: problems.length === 0,
  problems,
  notes,
  deadLetters: [{ messageId: 'm-1', code: 'SIGNATURE_INVALID', why: 'tampered' }],
  queueDepth: problems.length,
  profiles: [],
  endpoints: {
    service: 'http://127.0.0.1:1',
    sqs: 'http://127.0.0.1:2',
    queueUrl: 'http://127.0.0.1:2/q',
    deadLetterQueueUrl: 'http://127.0.0.1:2/dlq',
    fhir: 'http://127.0.0.1:3/fhir/R4',
    mllp: '127.0.0.1:4',
  },
  durationMs: 1000,
  timings: { startMs: 100, sendMs: 200, deliverMs: 700 },
});

describe('scribe-bridge demo: the outcome as printed', () => {
  const problems = [
    't1/enc-1 r1 → ehr-fhir: rejected (FHIR_REJECTED)',
    '1 message(s) left on the intake queue',
  ];

  it('exits 1 with DEMO_INCOMPLETE and one line per problem', () => {
    const io = recorder();
    expect(reportDemo(result(problems, [note('rejected', 'FHIR_REJECTED')]), io, false)).toBe(1);
    const err = io.stderr().split('\n');
    expect(err[0]).toBe('error DEMO_INCOMPLETE: 2 problem(s):');
    expect(err.slice(1, 3)).toEqual(problems.map((p) => `  - ${p}`));
    expect(err[3]).toBe(ERROR_CODES.DEMO_INCOMPLETE.hint);
    expect(io.stdout()).toMatch(/^NOT OK: 1 note revisions, 0\/1 deliveries delivered/m);
    expect(io.stdout()).toMatch(/ehr-fhir\s+rejected \(FHIR_REJECTED\)/);
  });

  it('prints the same problems with --json, the result on stdout', () => {
    const io = recorder();
    expect(reportDemo(result(problems, [note('rejected', 'FHIR_REJECTED')]), io, true)).toBe(1);
    expect((JSON.parse(io.stdout()) as DemoResult).problems).toEqual(problems);
    expect(io.stderr()).toMatch(/^error DEMO_INCOMPLETE: 2 problem\(s\):\n {2}- t1\/enc-1 r1/);
  });

  it('exits 0 without an error when there is no problem', () => {
    const io = recorder();
    expect(reportDemo(result([], [note('delivered', null)]), io, false)).toBe(0);
    expect(io.stderr()).toBe('');
    expect(io.stdout()).toMatch(/^OK: 1 note revisions, 1\/1 deliveries delivered/m);
  });
});
