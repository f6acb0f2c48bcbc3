/**
 * The `scribe-bridge` command line. Thin: parse arguments, call the stages, print results. Every command
 * returns an exit code instead of calling process.exit, so it can be tested in-process.
 */
import { Command, CommanderError } from 'commander';
import { ScribeError, toScribeError } from '../errors.ts';
import { type Io, processIo } from './io.ts';
import { mapCommand } from './map.ts';
import { mappingsCheck, mappingsCoverage, mappingsDiff, mappingsTest } from './mappings.ts';
import { type SendOptions, sendCommand } from './send.ts';
import { serveCommand } from './serve.ts';
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
    .requiredOption('--keys <jwks|dir>', 'review keys: a JWKS file, or a folder of <tenant>.jwks.json files')
    .option('--json', 'print one JSON result per envelope instead of text')
    .action(async (path: string, opts: { keys: string; json?: boolean }) => {
      code = await verifyCommand(path, opts, io);
    });

  program
    .command('map')
    .description(
      'convert one envelope with one mapping (no delivery); prints the payload or writes it to --out',
    )
    .argument('<envelope>', 'the envelope JSON file (file: artifact URIs resolve relative to it)')
    .requiredOption(
      '--mapping <id|file>',
      'a shipped mapping id (us-core-docref, fhir-transaction, fhir-document, mdm) or a mapping file',
    )
    .option('--out <path>', 'write the exact payload bytes here instead of printing them')
    .option(
      '--keys <jwks|dir>',
      'also verify the signature (a JWKS file or a folder of <tenant>.jwks.json); without it the signature is not checked',
    )
    .option(
      '--prior <envelope>',
      'for a retraction: the envelope of the retracted revision (default: found beside the envelope)',
    )
    .option(
      '--rendering <name...>',
      'text renderings to include (e.g. plain html), instead of the mapping defaults',
    )
    .option(
      '--profiles <dir...>',
      'FHIR profile folders to validate against, e.g. US Core 8 (default: $SCRIBE_BRIDGE_PROFILES)',
    )
    .action(
      async (
        path: string,
        opts: {
          mapping: string;
          out?: string;
          keys?: string;
          prior?: string;
          rendering?: string[];
          profiles?: string[];
        },
      ) => {
        code = await mapCommand(path, opts, io);
      },
    );

  program
    .command('send')
    .description(
      'deliver one signed envelope to an MLLP receiver now (verify, map, check, send, ACK table, retries)',
    )
    .argument('<envelope>', 'the envelope JSON file')
    .requiredOption('--mllp <host:port>', 'the receiver')
    .requiredOption('--keys <jwks|dir>', 'review keys: the signature is always verified before sending')
    .option('--mapping <id|file>', 'an hl7v2 mapping', 'mdm')
    .option('--destination <id>', 'destination id for MSH-10 (default host:port)')
    .option('--ack-timeout <ms>', 'how long to wait for the ACK', '30000')
    .option('--attempts <n>', 'attempts for AR / CE / connection failures', '3')
    .option('--tls-ca <pem>', 'use TLS, trusting this CA certificate')
    .option('--sending-application <name>')
    .option('--sending-facility <name>')
    .option('--receiving-application <name>')
    .option('--receiving-facility <name>')
    .action(async (path: string, opts: SendOptions) => {
      code = await sendCommand(path, opts, io);
    });

  program
    .command('serve')
    .description(
      'run the service (HTTP intake, SQS intake when configured, delivery workers); embedded defaults without --config',
    )
    .option(
      '--config <file>',
      'the YAML configuration (default: $SCRIBE_BRIDGE_CONFIG, else the embedded defaults)',
    )
    .option(
      '--profiles <dir...>',
      'FHIR profile folders (US Core 8) for the mapping proofs; default $SCRIBE_BRIDGE_PROFILES',
    )
    .action(async (opts: { config?: string; profiles?: string[] }) => {
      code = await serveCommand(opts, io);
    });

  const mappings = program.command('mappings').description('author and test mapping files');
  mappings
    .command('check')
    .description(
      'lint mapping files: load, compile and render every probe note (errors name file:line and path)',
    )
    .argument('<mapping...>', 'mapping files or shipped ids')
    .action(async (refs: string[]) => {
      code = await mappingsCheck(refs, io);
    });
  mappings
    .command('test')
    .description('golden tests: render every envelope of a folder and compare with the checked-in outputs')
    .option('--mapping <id|file...>', 'mappings to test (default: every shipped mapping)')
    .option('--envelopes <dir>', 'envelopes to render', 'fixtures/envelopes/valid')
    .option('--golden <dir>', 'golden outputs, one folder per mapping id', 'fixtures/golden')
    .option('--keys <jwks>', 'verify the envelopes with these review keys')
    .option('--update', 'accept the current output as the new golden files')
    .option('--coverage', 'also report what each rendering did not carry')
    .action(
      async (opts: {
        mapping?: string[];
        envelopes: string;
        golden: string;
        keys?: string;
        update?: boolean;
        coverage?: boolean;
      }) => {
        code = await mappingsTest(opts, io);
      },
    );
  mappings
    .command('diff')
    .description(
      'render one envelope with two mappings (e.g. the previous and the new version) and show the difference',
    )
    .argument('<mapping-a>')
    .argument('<mapping-b>')
    .argument('<envelope>')
    .option('--keys <jwks>', 'verify the envelope with these review keys')
    .action(async (a: string, b: string, envelope: string, opts: { keys?: string }) => {
      code = await mappingsDiff(a, b, envelope, opts, io);
    });
  mappings
    .command('coverage')
    .description(
      'what a mapping did not carry from an envelope: sentences, evidence links, removed draft sentences, insights',
    )
    .argument('<envelope>')
    .requiredOption('--mapping <id|file>', 'the mapping')
    .option('--keys <jwks>', 'verify the envelope with these review keys')
    .action(async (envelope: string, opts: { mapping: string; keys?: string }) => {
      code = await mappingsCoverage(envelope, opts, io);
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
