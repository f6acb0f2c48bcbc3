/**
 * The `scribe-bridge` command line. Thin: parse arguments, call the stages, print results. Every command
 * returns an exit code instead of calling process.exit, so it can be tested in-process.
 */
import { Command, CommanderError } from 'commander';
import { ScribeError, toScribeError } from '../errors.ts';
import { type Io, processIo } from './io.ts';
import { verifyCommand } from './verify.ts';

/** Exit codes: 0 ok; 1 the input failed a check; 2 usage; 70 internal error (sysexits EX_SOFTWARE). */
export const EXIT = { ok: 0, invalid: 1, usage: 2, internal: 70 } as const;

export async function main(argv: readonly string[], io: Io = processIo()): Promise<number> {
  let code: number = EXIT.ok;
  const program = new Command('scribe-bridge')
    .description('Signed AWS HealthScribe notes to FHIR R4 and HL7 v2 MDM, with sentence-level provenance.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('verify')
    .description('verify envelope(s): schema, signature, artifact hashes, evidence and draft references')
    .argument('<envelope>', 'an envelope JSON file, or a directory of them (checked recursively)')
    .requiredOption('--keys <jwks>', "the tenant's review keys (a JWKS file)")
    .option('--json', 'print one JSON result per envelope instead of text')
    .action(async (path: string, opts: { keys: string; json?: boolean }) => {
      code = await verifyCommand(path, opts, io);
    });

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const err = toScribeError(e);
    io.err(`error ${err.message}\n`);
    return err instanceof ScribeError && err.code !== 'INTERNAL' ? EXIT.invalid : EXIT.internal;
  }
}
