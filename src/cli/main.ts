/**
 * The `scribe-bridge` command line. Thin: parse arguments, call the stages, print results. Every command
 * returns an exit code instead of calling process.exit, so it can be tested in-process.
 */
import { Command, CommanderError } from 'commander';
import { ScribeError, toScribeError } from '../errors.ts';
// Each command's module is imported when that command runs: `serve` does not load the demo's embedded SQS/S3,
// FHIR and MLLP servers, nor `verify` the service (measured: ~11 MB less resident and ~110 ms faster start).
import type { AuditVerifyOptions } from './audit.ts';
import type { DeadLettersListOptions, DeadLettersReplayOptions } from './dead-letters.ts';
import type { DemoCommandOptions } from './demo.ts';
import { type Io, processIo } from './io.ts';
import type { SendOptions } from './send.ts';
import type { TraceCommandOptions } from './trace.ts';

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
      code = await (await import('./verify.ts')).verifyCommand(path, opts, io);
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
        code = await (await import('./map.ts')).mapCommand(path, opts, io);
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
      code = await (await import('./send.ts')).sendCommand(path, opts, io);
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
      code = await (await import('./serve.ts')).serveCommand(opts, io);
    });

  program
    .command('demo')
    .description(
      'the whole path on this machine: an embedded SQS/S3 server, the service, a local FHIR server and an MLLP receiver; sends the fixtures through the queue and prints where each note went',
    )
    .option(
      '--profiles <dir...>',
      'FHIR profile folders (US Core 8) for the mapping proofs; default $SCRIBE_BRIDGE_PROFILES',
    )
    .option('--keep <dir>', 'keep the ledger (PGlite) in this folder, with a config to serve it later')
    .option('--hold', 'keep everything running after the summary until Ctrl-C (prints the URLs and tokens)')
    .option('--json', 'print the summary as JSON')
    .option('--verbose', "write the service's JSON log lines (ids, codes, durations) to stderr")
    .action(async (opts: DemoCommandOptions) => {
      code = await (await import('./demo.ts')).demoCommand(opts, io);
    });

  program
    .command('audit')
    .description('the hash-chained audit log')
    .command('verify')
    .description(
      'verify the audit hash chain (and the anchored head, when configured or given); exit 0, or 1 naming the first bad record',
    )
    .option(
      '--config <file>',
      'the YAML configuration (default: $SCRIBE_BRIDGE_CONFIG, else the embedded defaults)',
    )
    .option(
      '--anchor <file|s3-uri>',
      "an anchor file or s3://bucket/key to check against (default: the config's audit.anchor)",
    )
    .option('--json', 'print the verdict as JSON')
    .option('--page-size <n>', 'records read per query', '5000')
    .action(async (opts: AuditVerifyOptions) => {
      code = await (await import('./audit.ts')).auditVerifyCommand(opts, io);
    });

  program
    .command('trace')
    .description(
      "the provenance trace of a delivered document (every revision, sentence evidence, signature, deliveries): by flags or as the trace endpoint's query string",
    )
    .argument('[query]', "the endpoint's query string, e.g. 'destination=ehr-mdm&controlId=…'")
    .option(
      '--config <file>',
      'the YAML configuration (default: $SCRIBE_BRIDGE_CONFIG, else the embedded defaults)',
    )
    .option('--tenant <id>')
    .option('--note <noteId>')
    .option('--revision <n>')
    .option('--destination <id>')
    .option('--identifier <system|value>', 'a FHIR identifier the destination received')
    .option('--resource-id <Type/id>', 'an id the EHR assigned (from the delivery receipt)')
    .option('--document-number <TXA-12.1>')
    .option('--control-id <MSH-10>')
    .option('--json', "print the trace endpoint's JSON")
    .option(
      '--fhir',
      'print the trace as a FHIR R4 Bundle (Provenance per sentence and delivery, AuditEvent per attempt and audit record)',
    )
    .action(async (query: string | undefined, opts: TraceCommandOptions) => {
      code = await (await import('./trace.ts')).traceCommand(query, opts, io);
    });

  const deadLetters = program
    .command('dead-letters')
    .description(
      'operators: what is parked (rejected/failed deliveries, dead-lettered revisions, the SQS DLQ) and replay',
    );
  deadLetters
    .command('list')
    .description('list dead letters: ids, codes and times (no note content)')
    .option(
      '--config <file>',
      'the YAML configuration (default: $SCRIBE_BRIDGE_CONFIG, else the embedded defaults)',
    )
    .option('--destination <id>', 'only deliveries to this destination')
    .option('--json', 'print JSON (the same shape as GET /v1/dead-letters)')
    .action(async (opts: DeadLettersListOptions) => {
      code = await (await import('./dead-letters.ts')).deadLettersList(opts, io);
    });
  deadLetters
    .command('replay')
    .description(
      'put dead letters back to work: deliveries to pending with a fresh attempt budget, revisions placed again, SQS messages back on the intake queue; each audited',
    )
    .option(
      '--config <file>',
      'the YAML configuration (default: $SCRIBE_BRIDGE_CONFIG, else the embedded defaults)',
    )
    .option('--delivery <id...>', 'delivery ids (from `dead-letters list`)')
    .option('--revision <id...>', 'revision ids of dead-lettered revisions')
    .option('--sqs <messageId...>', 'SQS dead-letter queue message ids')
    .option('--sqs-code <CODE>', 'every SQS dead letter with this reason code')
    .option('--all-sqs', 'every SQS dead letter')
    .option('--json', 'print JSON (the same shape as POST /v1/dead-letters/replay)')
    .action(async (opts: DeadLettersReplayOptions) => {
      code = await (await import('./dead-letters.ts')).deadLettersReplay(opts, io);
    });

  const mappings = program.command('mappings').description('author and test mapping files');
  mappings
    .command('check')
    .description(
      'lint mapping files: load, compile, render every probe note and validate each output in full, as the service does before it uses a mapping version (errors name file:line and path)',
    )
    .argument('<mapping...>', 'mapping files or shipped ids')
    .option(
      '--profiles <dir...>',
      'FHIR profile folders to validate against (US Core 8); default $SCRIBE_BRIDGE_PROFILES, else base R4 and scribe-bridge profiles only',
    )
    .action(async (refs: string[], opts: { profiles?: string[] }) => {
      code = await (await import('./mappings.ts')).mappingsCheck(refs, io, opts);
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
        code = await (await import('./mappings.ts')).mappingsTest(opts, io);
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
      code = await (await import('./mappings.ts')).mappingsDiff(a, b, envelope, opts, io);
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
      code = await (await import('./mappings.ts')).mappingsCoverage(envelope, opts, io);
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
    if (err.code === 'INTERNAL') return EXIT.internal;
    // A command line the command cannot use (caught by the command, not the argument parser) is a usage error too.
    return err.code === 'USAGE' ? EXIT.usage : EXIT.invalid;
  }
}
