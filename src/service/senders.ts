/**
 * One sender per destination type, each turning a claimed delivery (the exact bytes recorded at intake) into an
 * attempt result for the ledger. They never throw for what the destination does: every outcome is a result.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { FhirDestinationConfig as ConfigFhir, DestinationConfig, TlsConfig } from '../config/index.ts';
import type { JsonValue } from '../contract/json.ts';
import { FhirDestination } from '../deliver/fhir.ts';
import type { FhirAuthConfig } from '../deliver/fhir-types.ts';
import { MllpClient } from '../deliver/mllp.ts';
import type { MllpLogEntry } from '../deliver/mllp-types.ts';
import { ScribeError } from '../errors.ts';
import type { ClaimedDelivery } from '../ledger/types.ts';
import type { Rendering } from '../map/engine.ts';

/** What one send did; the worker adds timing and scheduling. */
export interface SendResult {
  readonly outcome: 'delivered' | 'rejected' | 'retry' | 'ambiguous';
  readonly httpStatus?: number;
  readonly ackCode?: string;
  readonly errorCode?: string;
  readonly receipt?: { readonly [k: string]: JsonValue };
  readonly sentPayloadSha256?: string;
  readonly retryAfterMs?: number;
}

export interface Sender {
  send(d: ClaimedDelivery): Promise<SendResult>;
  close(): Promise<void>;
}

/**
 * The Rendering a destination adapter expects, from what the ledger recorded. The FHIR value is parsed from the
 * recorded bytes only when something reads it (reference resolution, a read-back, a delivery recorded before
 * migration 004 without a write plan): a plain send writes the recorded bytes with the request planned at
 * intake, so the ~280 KB of a typical transaction Bundle is neither parsed nor held again (~2.5 ms and a few
 * MB of heap per delivery, measured).
 */
export function renderingOf(d: ClaimedDelivery): Rendering {
  const r = d.rendering;
  const fhir = r.contentType.includes('fhir');
  let parsed: { value: unknown } | undefined;
  const rendering = {
    mapping: r.mapping,
    mode: d.status === 'entered-in-error' ? 'retraction' : d.revision > 1 ? 'amendment' : 'new',
    format: fhir ? 'fhir' : 'hl7v2',
    contentType: r.contentType,
    body: r.payload,
    sha256: r.payloadSha256,
    ...(r.writeRequest ? { request: r.writeRequest as Rendering['request'] & object } : {}),
  } as const;
  return Object.defineProperty(rendering, 'value', {
    enumerable: true,
    get(): unknown {
      parsed ??= { value: fhir ? JSON.parse(r.payload) : r.payload };
      return parsed.value;
    },
  }) as typeof rendering & { readonly value: unknown };
}

function fhirAuth(a: ConfigFhir['auth']): FhirAuthConfig {
  switch (a.type) {
    case 'none':
    case 'mtls':
      return { type: a.type };
    case 'bearer':
      return { type: 'bearer', token: a.token.reveal() };
    case 'client-credentials':
      return {
        type: 'client-credentials',
        tokenUrl: a.tokenUrl,
        clientId: a.clientId,
        clientSecret: a.clientSecret.reveal(),
        ...(a.scope ? { scope: a.scope } : {}),
      };
    case 'smart-backend':
      return {
        type: 'smart-backend',
        tokenUrl: a.tokenUrl,
        clientId: a.clientId,
        privateKey: a.privateKey.reveal(),
        kid: a.kid,
        alg: a.alg,
        scope: a.scope ?? 'system/DocumentReference.c',
      };
  }
}

/**
 * A destination's `tls:` files read into the PEM texts the transports take (the config holds absolute paths,
 * checked at load). Read once, when the service starts.
 */
export function tlsOptions(
  tls: TlsConfig | undefined,
): { ca?: string; cert?: string; key?: string; servername?: string } | undefined {
  if (!tls) return undefined;
  const read = (path: string | undefined) => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      // Checked at config load; gone or unreadable since: the start fails, naming the file.
      throw new ScribeError(
        'FILE_UNREADABLE',
        `cannot read a destination's TLS file (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
        { where: path },
      );
    }
  };
  const [ca, cert, key] = [read(tls.ca), read(tls.cert), read(tls.key)];
  return {
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
    ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
  };
}

class FhirSender implements Sender {
  readonly #dest: FhirDestination;

  constructor(c: ConfigFhir) {
    const tls = tlsOptions(c.tls);
    this.#dest = new FhirDestination({
      id: c.id,
      baseUrl: c.baseUrl,
      write: c.write,
      references: c.references,
      timeoutMs: c.timeoutMs,
      auth: fhirAuth(c.auth),
      ...(tls ? { tls } : {}),
    });
  }

  async send(d: ClaimedDelivery): Promise<SendResult> {
    const rendering = renderingOf(d);
    if (d.claimedFrom === 'ambiguous') {
      // An earlier send may have landed: read back by identifier before any resend.
      const found = await this.#dest.readBack(rendering);
      if (found?.outcome === 'delivered') return this.#result(found, rendering.sha256);
    }
    const plan = d.rendering.writePlan;
    return this.#result(await this.#dest.send(rendering, plan ? { plan } : {}), rendering.sha256);
  }

  #result(r: Awaited<ReturnType<FhirDestination['send']>>, recorded: string): SendResult {
    // A refusal keeps what the EHR said was wrong and where (issue codes and FHIRPath expressions, R15) as its
    // receipt: the operator sees which element to fix, without the issue text (which may quote PHI).
    const receipt = r.receipt
      ? (JSON.parse(JSON.stringify(r.receipt)) as { [k: string]: JsonValue })
      : r.issues && r.outcome === 'rejected'
        ? { issues: r.issues.map((i) => ({ code: i.code, expression: [...i.expression] })) }
        : undefined;
    return {
      outcome: r.outcome,
      ...(r.httpStatus !== undefined ? { httpStatus: r.httpStatus } : {}),
      ...(r.issueCodes?.length
        ? { errorCode: r.issueCodes.join(',') }
        : r.errorCode
          ? { errorCode: r.errorCode }
          : {}),
      ...(receipt ? { receipt } : {}),
      ...(r.sentSha256 !== recorded ? { sentPayloadSha256: r.sentSha256 } : {}),
      ...(r.retryAfterMs !== undefined ? { retryAfterMs: r.retryAfterMs } : {}),
    };
  }

  close(): Promise<void> {
    return this.#dest.close();
  }
}

class MllpSender implements Sender {
  readonly #client: MllpClient;

  constructor(c: Extract<DestinationConfig, { type: 'mllp' }>, log?: SenderLog) {
    // With `tls:` the connection is TLS, never plaintext (the client has no fallback).
    const tls = tlsOptions(c.tls);
    this.#client = new MllpClient({
      host: c.host,
      port: c.port,
      ackTimeoutMs: c.ackTimeoutMs,
      ackCodes: c.ackCodes,
      ...(tls ? { tls } : {}),
      // Warnings (an ACK for another MSH-10, an unparseable ACK…) and connection events: ids and codes only.
      // The level is the service logger's to choose (serve.ts: warn for an unmatched, unparseable… ACK).
      ...(log ? { logger: ({ level: _, ...e }: MllpLogEntry) => log({ destination: c.id, ...e }) } : {}),
    });
  }

  async send(d: ClaimedDelivery): Promise<SendResult> {
    // An ambiguous MDM is resent with the same MSH-10: the receiver deduplicates on it (the read-back of MLLP).
    // MSH-1 is the message's own field separator (a mapping may choose another than |).
    const msh = d.rendering.payload.split('\r')[0]!;
    const controlId = msh.split(msh.charAt(3) || '|')[9] ?? '';
    const r = await this.#client.send(d.rendering.payload, controlId);
    return {
      outcome: r.outcome,
      ...(r.ackCode ? { ackCode: r.ackCode } : {}),
      ...(r.errorCode ? { errorCode: r.errorCode } : {}),
      receipt: { controlId, ...(r.ackControlId ? { msa2: r.ackControlId } : {}), reason: r.reason },
    };
  }

  close(): Promise<void> {
    return this.#client.close();
  }
}

class FileSender implements Sender {
  readonly #dir: string;

  constructor(c: Extract<DestinationConfig, { type: 'file' }>) {
    this.#dir = c.directory;
  }

  /** `<dir>/<tenant>/<noteId>/r<revision>.<json|hl7>`, written atomically (temporary file, then rename). */
  async send(d: ClaimedDelivery): Promise<SendResult> {
    const ext = d.rendering.contentType.includes('fhir') ? 'json' : 'hl7';
    const path = join(this.#dir, d.tenant, d.noteId, `r${d.revision}.${ext}`);
    try {
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, d.rendering.payload);
      await rename(tmp, path);
      return { outcome: 'delivered', receipt: { file: join(d.tenant, d.noteId, `r${d.revision}.${ext}`) } };
    } catch (e) {
      return { outcome: 'retry', errorCode: (e as NodeJS.ErrnoException).code ?? 'EIO' };
    }
  }

  async close(): Promise<void> {}
}

/** Where a sender's own events go (the service's structured log): ids, codes and timings, never content. */
export type SenderLog = (
  e: { destination: string; event: string } & Record<string, string | number | boolean | undefined>,
) => void;

export function senderFor(d: DestinationConfig, log?: SenderLog): Sender {
  switch (d.type) {
    case 'fhir':
      return new FhirSender(d);
    case 'mllp':
      return new MllpSender(d, log);
    case 'file':
      return new FileSender(d);
  }
}
