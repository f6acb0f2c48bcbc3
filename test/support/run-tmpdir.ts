/**
 * vitest globalSetup: one temporary folder per test run. It is set as TMPDIR before the test processes start, so
 * every `mkdtemp(join(tmpdir(), …))` in a test, in a helper, or in a `serve` child a test starts lands inside it;
 * the whole folder is removed when the run ends. Some tests cannot clean up after themselves (a SIGKILLed
 * service's data directory, a failed assertion before an `afterAll`), and before this each run left such folders
 * in the system's temporary directory. `SCRIBE_BRIDGE_KEEP_TEST_TMP=1` keeps the folder for a post-mortem.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const previous = process.env['TMPDIR'];
  const dir = mkdtempSync(join(tmpdir(), 'scribe-bridge-tests-'));
  process.env['TMPDIR'] = dir;
  return () => {
    if (previous === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = previous;
    if (process.env['SCRIBE_BRIDGE_KEEP_TEST_TMP'] === '1') console.log(`test files kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };
}
