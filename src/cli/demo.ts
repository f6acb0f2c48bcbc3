/**
 * `scribe-bridge demo [--profiles <dir...>] [--keep <dir>] [--hold] [--json]`: the whole path on this machine
 * (see src/demo/run.ts). Prints, per note revision, where it went (each destination's state and the EHR's
 * receipt), a provenance line and where its trace is served; the dead-lettered poison message and its reason
 * code. Exit 0 when every revision landed once at each destination and the poison message is in the DLQ, 1
 * otherwise. No note text, names or identifier values are printed: ids, codes, counts and hashes only.
 */
import { MultiBar, type SingleBar } from 'cli-progress';
import { pino } from 'pino';
import { type DemoNote, type DemoResult, type RunningDemo, runDemo } from '../demo/run.ts';
import { ERROR_CODES } from '../errors.ts';
import type { Io } from './io.ts';
import { profileFolders } from './map.ts';

export interface DemoCommandOptions {
  profiles?: string[];
  keep?: string;
  hold?: boolean;
  json?: boolean;
  /** Write the service's JSON log lines (ids, codes, durations) to stderr. */
  verbose?: boolean;
}

export async function demoCommand(opts: DemoCommandOptions, io: Io): Promise<number> {
  const profiles = profileFolders(opts.profiles);
  const progress = progressReporter(io);
  const logger = opts.verbose ? pino({ base: { service: 'scribe-bridge' } }, pino.destination(2)) : undefined;
  io.err(
    'scribe-bridge demo: starting an embedded SQS/S3 server, a FHIR server, an MLLP receiver and the service on 127.0.0.1\n',
  );
  let demo: RunningDemo;
  try {
    demo = await runDemo({
      profiles,
      ...(opts.keep ? { keepDir: opts.keep } : {}),
      onProgress: progress.update,
      ...(logger ? { log: (e) => logger.info(e) } : {}),
    });
  } finally {
    progress.stop();
  }
  const r = demo.result;
  try {
    reportDemo(r, io, opts.json ?? false);
    if (opts.hold) {
      io.err(
        `\nholding: the service is at ${r.endpoints.service}, the FHIR server at ${r.endpoints.fhir}\n` +
          `  auditor token (this run only): ${demo.tokens.auditor}\n` +
          `  operator token (this run only): ${demo.tokens.operator}\n` +
          `  e.g. curl -H "Authorization: Bearer <auditor token>" '${r.notes[0]?.trace.url ?? `${r.endpoints.service}/v1/trace`}'\n` +
          `  curl -H "Authorization: Bearer <operator token>" '${r.endpoints.service}/v1/dead-letters'\n` +
          `  config of this run: ${demo.configFile}\n` +
          'press Ctrl-C to stop\n',
      );
      await new Promise<void>((resolve) => {
        const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
        const done = () => {
          for (const sig of signals) process.off(sig, done);
          resolve();
        };
        for (const sig of signals) process.on(sig, done);
      });
    }
  } finally {
    await demo.stop();
    logger?.flush();
  }
  return r.ok ? 0 : 1;
}

/**
 * The demo's outcome as printed: the summary (or the result as JSON) on stdout; when not ok, `error
 * DEMO_INCOMPLETE` with one line per problem and the hint on stderr. Answers the exit code: 0 ok, 1 not.
 */
export function reportDemo(r: DemoResult, io: Io, json: boolean): number {
  if (json) io.out(`${JSON.stringify(r, null, 2)}\n`);
  else printSummary(r, io);
  if (!r.ok)
    io.err(
      `error DEMO_INCOMPLETE: ${r.problems.length} problem(s):\n${r.problems.map((p) => `  - ${p}\n`).join('')}` +
        `${ERROR_CODES.DEMO_INCOMPLETE.hint}\n`,
    );
  return r.ok ? 0 : 1;
}

/** A progress bar per phase on an interactive stderr; otherwise a plain line now and then. */
function progressReporter(io: Io): {
  update: (phase: 'send' | 'deliver', done: number, total: number) => void;
  stop: () => void;
} {
  if (io.interactive) {
    const multi = new MultiBar(
      {
        stream: io.progressStream,
        format: '{phase} [{bar}] {value}/{total}',
        hideCursor: true,
        clearOnComplete: false,
      },
      undefined,
    );
    const bars = new Map<string, SingleBar>();
    const label = { send: 'sending to the queue', deliver: 'delivered to EHRs  ' } as const;
    return {
      update: (phase, done, total) => {
        let bar = bars.get(phase);
        if (!bar) {
          bar = multi.create(total, 0, { phase: label[phase] });
          bars.set(phase, bar);
        }
        bar.setTotal(total);
        bar.update(done, { phase: label[phase] });
      },
      stop: () => multi.stop(),
    };
  }
  const last = new Map<string, { done: number; at: number }>();
  return {
    update: (phase, done, total) => {
      const prev = last.get(phase);
      const now = Date.now();
      if (prev && prev.done === done) return;
      if (prev && done < total && now - prev.at < 2_000) return;
      last.set(phase, { done, at: now });
      io.err(`${phase === 'send' ? 'sent' : 'deliveries ended'} ${done}/${total}\n`);
    },
    stop: () => undefined,
  };
}

function printSummary(r: DemoResult, io: Io): void {
  const out = (s = '') => io.out(`${s}\n`);
  out();
  out(
    r.profiles.length
      ? `Mappings proven against the profiles in: ${r.profiles.join(', ')}`
      : "US Core profiles: not given (--profiles <dir> or SCRIBE_BRIDGE_PROFILES); outputs checked against base R4 and scribe-bridge's own profiles only.",
  );
  out(`FHIR server ${r.endpoints.fhir} · MLLP receiver ${r.endpoints.mllp} · queue ${r.endpoints.queueUrl}`);
  out();
  for (const n of r.notes) printNote(n, out);
  for (const d of r.deadLetters)
    out(
      `dead-letter queue: message ${d.messageId} — ${d.code} (${d.why}); it stays in ${r.endpoints.deadLetterQueueUrl}`,
    );
  if (r.deadLetters.length === 0) out('dead-letter queue: empty (the poison message did not arrive there)');
  out();
  const delivered = r.notes.reduce(
    (n, x) => n + x.deliveries.filter((d) => d.state === 'delivered').length,
    0,
  );
  const total = r.notes.reduce((n, x) => n + x.deliveries.length, 0);
  out(
    `${r.ok ? 'OK' : 'NOT OK'}: ${r.notes.length} note revisions, ${delivered}/${total} deliveries delivered, ` +
      `${r.deadLetters.length} message(s) dead-lettered, intake queue ${r.queueDepth === 0 ? 'drained' : `holds ${r.queueDepth}`}, ` +
      `${(r.durationMs / 1000).toFixed(1)} s (start ${(r.timings.startMs / 1000).toFixed(1)} s, send ${(r.timings.sendMs / 1000).toFixed(1)} s, deliver ${(r.timings.deliverMs / 1000).toFixed(1)} s)`,
  );
  out(
    'Each trace URL answers to the auditor token while the service runs (--hold keeps it up and prints the token)' +
      (r.kept
        ? '; the trace commands read the kept ledger.'
        : '; --keep <dir> keeps the ledger for `scribe-bridge trace`.'),
  );
  if (r.kept) {
    out(`Ledger kept in ${r.kept.dir}; serve it later with:`);
    out(`  scribe-bridge serve --config ${r.kept.config}`);
  }
}

function printNote(n: DemoNote, out: (s?: string) => void): void {
  const p = n.provenance;
  out(`${n.tenant}/${n.noteId} r${n.revision} (${n.status}; sent as ${sentAsText(n.sentAs)})`);
  for (const d of n.deliveries) {
    let receipt = '';
    if (d.fhir)
      receipt = `${d.fhir.resourceType}/${d.fhir.id} version ${d.fhir.versionId} (now ${d.fhir.status}; ${d.fhir.onServer} on the server)`;
    if (d.mllp)
      receipt = `${d.mllp.event} ACK ${d.mllp.ackCode ?? '?'} · MSH-10 ${d.mllp.controlId} · TXA-12 ${d.mllp.documentNumber} (${d.mllp.received} received)`;
    out(
      `  → ${d.destination.padEnd(8)} ${d.state}${d.attempts > 1 ? ` after ${d.attempts} attempts` : ''}${d.lastErrorCode && d.state !== 'delivered' ? ` (${d.lastErrorCode})` : ''}: ${receipt}   [${d.mapping.id} ${d.mapping.version}]`,
    );
  }
  if (n.deliveries.length === 0) out(`  → not delivered (revision ${n.revisionState ?? 'not recorded'})`);
  out(
    `  provenance: ${p.sentences['ai-verbatim']} AI-verbatim, ${p.sentences['clinician-edited']} clinician-edited, ` +
      `${p.sentences['clinician-added']} clinician-added sentences; ${p.evidenceLinks} evidence links; ` +
      `${p.removedDraftSentences} removed draft sentence(s)`,
  );
  const t = n.trace;
  if (t.error) out(`  trace: FAILED (${t.error})`);
  else
    out(
      `  trace: ${t.sentences} sentences, ${t.evidenceSegments} evidence segments; signature ${t.signatureVerified ? 'verified' : 'NOT verified'}, ` +
        `hashes ${t.hashesOk ? 'match' : 'DIFFER'}; found again from ${t.resolvedFrom?.length ? t.resolvedFrom.join(' and ') : 'nothing the EHRs hold'}`,
    );
  out(`         GET ${t.url}`);
  if (t.command) out(`         ${t.command}`);
}

function sentAsText(s: DemoNote['sentAs']): string {
  return s === 's3-artifacts'
    ? 'artifacts in S3'
    : s === 'pointer'
      ? 'an S3 claim-check pointer'
      : 'inline artifacts';
}
