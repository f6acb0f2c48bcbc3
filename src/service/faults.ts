/**
 * Named crash points for the durability tests (docs/durability.md § Crash points). `SCRIBE_BRIDGE_FAULT=<point>`
 * makes the process SIGKILL itself the first time it reaches that point — no cleanup, no flush, exactly what a
 * power cut or an OOM kill leaves behind. The variable is read once, when this module loads; unset (always, in
 * production), `fault()` is one comparison against `undefined`.
 */

/** The points the service can be killed at. */
export type FaultPoint =
  /** A message was received (and its claim check resolved), before the intake transaction. */
  | 'after-receive-before-commit'
  /** The intake transaction committed, before the SQS message is deleted. */
  | 'after-commit-before-delete'
  /** The destination answered 2xx / AA, before the attempt is recorded in the ledger. */
  | 'after-ehr-2xx-before-record';

const armed = process.env['SCRIBE_BRIDGE_FAULT'] || undefined;

/** Kills this process with SIGKILL when `SCRIBE_BRIDGE_FAULT` names `point`; otherwise does nothing. */
export function fault(point: FaultPoint): void {
  if (armed === point) process.kill(process.pid, 'SIGKILL');
}
