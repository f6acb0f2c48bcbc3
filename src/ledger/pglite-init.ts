/**
 * `node src/ledger/pglite-init.ts <dir>`: creates the PostgreSQL cluster of a new PGlite data directory and runs
 * the ledger's migrations on it, then exits — so that the WebAssembly memory this takes is given back to the
 * system instead of staying with the service (see `initPgliteInChild` in db.ts, which runs it while holding the
 * directory's lock). Exit 0 when done; anything else and the service does the same work itself.
 */
import { resolve } from 'node:path';
import { openPgliteUnderParentLock } from './db.ts';
import { migrate } from './migrate.ts';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: node src/ledger/pglite-init.ts <PGlite data directory>\n');
  process.exitCode = 2;
} else {
  const db = await openPgliteUnderParentLock(resolve(dir));
  try {
    await migrate(db);
  } finally {
    await db.close();
  }
}
