/**
 * `scribe-bridge send`: a one-off delivery of one signed envelope to one MLLP receiver, with the same
 * verification, mapping, conformance check, ACK table and retries the service uses. The signature is always
 * verified: nothing unsigned is ever delivered.
 */
import { readFile } from 'node:fs/promises';
import { MllpClient } from '../deliver/mllp.ts';
import { deliverMllp, mllpDeliveryError } from '../deliver/mllp-deliver.ts';
import { ScribeError } from '../errors.ts';
import { render } from '../map/engine.ts';
import { MappingRegistry } from '../map/registry.ts';
import { Conformance } from '../validate/conformance.ts';
import { loadProfiles } from '../validate/profiles.ts';
import type { Io } from './io.ts';
import { keysFromOption, noteWithPrior } from './notes.ts';

export interface SendOptions {
  mllp: string;
  keys: string;
  mapping: string;
  destination?: string;
  ackTimeout: string;
  attempts: string;
  tlsCa?: string;
  sendingApplication?: string;
  sendingFacility?: string;
  receivingApplication?: string;
  receivingFacility?: string;
}

/** Exit codes beyond main's: 3 = sent but no answer (ambiguous: the EHR may have it). */
export const EXIT_AMBIGUOUS = 3;

function hostPort(s: string): { host: string; port: number } {
  const m = /^(?:mllp:\/\/)?([^:/]+):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535)
    throw new ScribeError('USAGE', `--mllp takes host:port, like 127.0.0.1:2575 (got ${JSON.stringify(s)})`);
  return { host: m[1]!, port: Number(m[2]) };
}

export async function sendCommand(envelope: string, opts: SendOptions, io: Io): Promise<number> {
  const { host, port } = hostPort(opts.mllp);
  const { note, prior } = await noteWithPrior(envelope, await keysFromOption(opts.keys));
  const mapping = new MappingRegistry().get(opts.mapping);
  if (mapping.format !== 'hl7v2') {
    throw new ScribeError(
      'USAGE',
      `mapping ${mapping.id} produces FHIR; send delivers HL7 v2 over MLLP (use an hl7v2 mapping such as mdm)`,
    );
  }
  const destination = opts.destination ?? `${host}:${port}`;
  const rendering = render(mapping, {
    note,
    ...(prior ? { prior } : {}),
    options: {
      destination,
      ...(opts.sendingApplication ? { sendingApplication: opts.sendingApplication } : {}),
      ...(opts.sendingFacility ? { sendingFacility: opts.sendingFacility } : {}),
      ...(opts.receivingApplication ? { receivingApplication: opts.receivingApplication } : {}),
      ...(opts.receivingFacility ? { receivingFacility: opts.receivingFacility } : {}),
    },
  });
  new Conformance(await loadProfiles([])).check(rendering);
  const controlId = rendering.body.split('\r')[0]!.split('|')[9]!;
  const client = new MllpClient({
    host,
    port,
    ackTimeoutMs: Number(opts.ackTimeout),
    ...(opts.tlsCa ? { tls: { ca: await readFile(opts.tlsCa, 'utf8') } } : {}),
    logger: (e) => io.err(`${JSON.stringify(e)}\n`),
  });
  try {
    const d = await deliverMllp(client, rendering.body, controlId, {
      maxAttempts: Number(opts.attempts),
      initialDelayMs: 500,
      maxDelayMs: 30_000,
    });
    for (const a of d.attempts)
      io.err(
        `attempt ${a.at}: ${a.outcome}${a.ackCode ? ` ${a.ackCode}` : ''} (${a.reason}, ${Math.round(a.ms)} ms)\n`,
      );
    io.out(
      `${d.state} ${note.envelope.tenant}/${note.envelope.noteId} r${note.envelope.revision} → ${destination}: MSH-10 ${controlId}, ${d.attempts.length} attempt(s)${d.last.ackCode ? `, ACK ${d.last.ackCode}` : ''}\n`,
    );
    const err = mllpDeliveryError(d);
    if (err) io.err(`error ${err.message}\n`);
    return d.state === 'delivered' ? 0 : d.state === 'ambiguous' ? EXIT_AMBIGUOUS : 1;
  } finally {
    await client.close();
  }
}
