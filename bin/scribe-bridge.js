#!/usr/bin/env node
// Thin launcher: Node 24 strips TypeScript types natively, so the CLI runs from source with no build step.
import('../src/cli/main.ts')
  .then((m) => m.main(process.argv.slice(2)))
  .then(
    (code) => {
      process.exitCode = code ?? 0;
    },
    (err) => {
      console.error(err);
      process.exitCode = 70;
    },
  );
