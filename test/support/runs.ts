/**
 * Property-test run counts: the normal suite's `n`, times SCRIBE_BRIDGE_FUZZ under `npm run fuzz` (a longer
 * search of the same properties; a failure prints fast-check's seed and shrunk counterexample to replay).
 */
export function runs(n: number): number {
  const factor = Number(process.env['SCRIBE_BRIDGE_FUZZ'] ?? 1);
  return Number.isFinite(factor) && factor > 0 ? Math.max(1, Math.round(n * factor)) : n;
}
