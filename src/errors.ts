/**
 * One error type for the whole product. Every error a user can cause carries a stable string code, a message
 * that says what is wrong, where it is (JSON path, sentence id, file:line) and what to do, and a disposition
 * that tells the pipeline what to do with the work item that raised it.
 *
 * Codes are part of the contract (HTTP OperationOutcomes carry them as `urn:scribe-bridge:error|CODE`);
 * never rename one, only add.
 */

/** What the pipeline does with an item that failed this way. */
export type Disposition =
  /** permanent: the input is wrong; retrying cannot help; tell the sender */
  | 'reject'
  /** transient: a dependency is down or slow; try again later */
  | 'retry'
  /** the outcome is unknown (sent, no answer): settle by read-back, never resend blindly */
  | 'ambiguous'
  /** internal or operator problem: park the item for an operator */
  | 'dead-letter';

/** FHIR IssueType codes we use (http://hl7.org/fhir/issue-type). */
export type IssueType =
  | 'invalid'
  | 'structure'
  | 'required'
  | 'value'
  | 'too-long'
  | 'invariant'
  | 'security'
  | 'login'
  | 'forbidden'
  | 'not-found'
  | 'conflict'
  | 'duplicate'
  | 'business-rule'
  | 'transient'
  | 'timeout'
  | 'exception'
  | 'not-supported'
  | 'processing';

interface CodeInfo {
  readonly status: number;
  readonly disposition: Disposition;
  readonly issue: IssueType;
  /** The default "what to do" advice, shown after the message unless the thrower gives a better one. */
  readonly hint: string;
}

const RESEND = 'Fix the envelope in the review application and send it again.';

/** The registry of stable error codes. */
export const ERROR_CODES = {
  // --- input: the signed-note envelope ---
  ENVELOPE_JSON: {
    status: 400,
    disposition: 'reject',
    issue: 'structure',
    hint: 'Send the envelope as UTF-8 encoded JSON (RFC 8259).',
  },
  ENVELOPE_TOO_LARGE: {
    status: 413,
    disposition: 'reject',
    issue: 'too-long',
    hint: 'Send a smaller body: an envelope is at most 32 MB (give the HealthScribe artifacts by S3 reference, uri + sha256), a replay request at most 1 MB.',
  },
  REQUEST_BODY_UNREADABLE: {
    status: 400,
    disposition: 'reject',
    issue: 'invalid',
    hint: 'Send the envelope as its JSON bytes, uncompressed or with Content-Encoding gzip, deflate or br, complete.',
  },
  ENVELOPE_DUPLICATE_MEMBER: {
    status: 400,
    disposition: 'reject',
    issue: 'structure',
    hint: 'The envelope must be I-JSON (RFC 7493): remove the repeated member so that exactly one value is signed.',
  },
  ENVELOPE_SCHEMA: {
    status: 400,
    disposition: 'reject',
    issue: 'structure',
    hint: `See spec/signed-note-envelope.md for the exact shape. ${RESEND}`,
  },
  ENVELOPE_CONTROL_CHAR: {
    status: 400,
    disposition: 'reject',
    issue: 'value',
    hint: `Strings in the envelope may contain TAB, LF and CR but no other control character (U+0000–U+0008, U+000B, U+000C, U+000E–U+001F, U+007F). ${RESEND}`,
  },
  POINTER_INVALID: {
    status: 400,
    disposition: 'reject',
    issue: 'structure',
    hint: 'A queue pointer is {"kind":"signed-note-pointer","uri":"s3://…","sha256":"<64 hex>"}.',
  },
  LIFECYCLE_INVALID: {
    status: 422,
    disposition: 'reject',
    issue: 'business-rule',
    hint: 'Revision 1 is final with no "replaces"; revision N > 1 is amended or entered-in-error with "replaces": N-1; nothing follows entered-in-error.',
  },
  // --- signature ---
  SIGNATURE_INVALID: {
    status: 422,
    disposition: 'reject',
    issue: 'security',
    hint: 'The signed content changed after signing, or it was signed with another key. Re-sign the exact envelope (RFC 8785 canonical form without signature.jws) in the review application.',
  },
  ALG_FORBIDDEN: {
    status: 422,
    disposition: 'reject',
    issue: 'security',
    hint: 'Sign with one of ES256, ES384, RS256, RS384, PS256 or EdDSA.',
  },
  JWS_CRIT_UNSUPPORTED: {
    status: 422,
    disposition: 'reject',
    issue: 'security',
    hint: 'Remove the "crit" header parameter; scribe-bridge understands no JWS extensions.',
  },
  KEY_UNKNOWN: {
    status: 422,
    disposition: 'reject',
    issue: 'security',
    hint: "Publish the review application's public key in this tenant's JWKS, or sign with a key that is in it.",
  },
  KEYS_REFRESH_PENDING: {
    status: 503,
    disposition: 'retry',
    issue: 'transient',
    hint: "The tenant's JWKS URL is read again at most every 30 s: send the note again after that (from SQS it is retried by itself). If the key id is still not published then, the note is refused as KEY_UNKNOWN.",
  },
  KEYS_INVALID: {
    // The tenant's keys are the deployment's to fix: the note is not at fault and is taken once they are.
    status: 503,
    disposition: 'retry',
    issue: 'processing',
    hint: 'Fix the JWKS file: a JSON object {"keys":[…]} of public JWKs, each with a "kid".',
  },
  // --- HealthScribe artifacts ---
  ARTIFACT_URI_INVALID: {
    status: 400,
    disposition: 'reject',
    issue: 'value',
    hint: 'Use s3://bucket/key, https://s3.<region>.amazonaws.com/bucket/key, https://bucket.s3.<region>.amazonaws.com/key, or (command line only) file:<relative path>.',
  },
  ARTIFACT_MISSING: {
    status: 422,
    disposition: 'reject',
    issue: 'not-found',
    hint: 'Check that the HealthScribe output object exists at that location and that scribe-bridge may read it.',
  },
  ARTIFACT_UNAVAILABLE: {
    status: 503,
    disposition: 'retry',
    issue: 'transient',
    hint: 'The artifact store did not answer; scribe-bridge retries. If it persists, check S3 / Transcribe reachability and credentials.',
  },
  ARTIFACT_HASH_MISMATCH: {
    status: 422,
    disposition: 'reject',
    issue: 'security',
    hint: 'The HealthScribe file is not the one that was signed. Do not deliver; find out who changed it.',
  },
  HEALTHSCRIBE_SCHEMA: {
    status: 422,
    disposition: 'reject',
    issue: 'structure',
    hint: 'The file is not AWS HealthScribe transcript / clinical documentation output (see reference/healthscribe.md).',
  },
  HEALTHSCRIBE_PREVIEW_FORMAT: {
    status: 422,
    disposition: 'reject',
    issue: 'not-supported',
    hint: 'This is the preview-era format (Subsections / EvidenceMap, before November 2023), which is not supported. Re-run the job on the current HealthScribe.',
  },
  HEALTHSCRIBE_JOB_NOT_READY: {
    status: 503,
    disposition: 'retry',
    issue: 'transient',
    hint: 'The HealthScribe job has not completed; scribe-bridge retries until it does.',
  },
  HEALTHSCRIBE_JOB_MISMATCH: {
    status: 422,
    disposition: 'reject',
    issue: 'invariant',
    hint: 'The transcript and clinical document must be the output of the job or session the envelope names. Fix the review application so it signs the artifacts of this encounter.',
  },
  EVIDENCE_UNKNOWN_SEGMENT: {
    status: 422,
    disposition: 'reject',
    issue: 'invariant',
    hint: 'Every evidence id must be a SegmentId of the signed transcript. Fix the review application so it only cites segments of this job.',
  },
  DRAFT_POINTER_INVALID: {
    status: 422,
    disposition: 'reject',
    issue: 'invariant',
    hint: 'A draft pointer must name a section of the signed clinical document and an index within its Summary list.',
  },
  // --- mappings ---
  MAPPING_INVALID: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'invalid',
    hint: 'Fix the mapping file at the place named, then run `scribe-bridge mappings check <file>`.',
  },
  MAPPING_NOT_FOUND: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'not-found',
    hint: 'Name a shipped mapping id (us-core-docref, fhir-transaction, fhir-document, mdm) or a path to a mapping file.',
  },
  MAPPING_EVAL: {
    status: 422,
    disposition: 'dead-letter',
    issue: 'processing',
    hint: 'The mapping produced something it cannot carry for this note; fix the expression named, or the note.',
  },
  MAPPING_UNSUPPORTED: {
    status: 422,
    disposition: 'reject',
    issue: 'not-supported',
    hint: 'Choose a mapping that supports this lifecycle step (see docs/mappings.md), or add an output for it to the mapping.',
  },
  MAPPING_PRIOR_REQUIRED: {
    status: 422,
    disposition: 'reject',
    issue: 'required',
    hint: 'A retraction re-sends the retracted revision with status entered-in-error: give its envelope (`--prior <envelope>` on the command line).',
  },
  OUTPUT_INVALID: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'invariant',
    hint: 'The mapping produced a resource that does not conform to its profile; nothing was delivered. Fix the mapping and replay.',
  },
  PROFILES_INVALID: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'processing',
    hint: 'Every file in the configured FHIR profile folders must be a readable JSON conformance resource, and US Core 8 (with snapshots) must be loaded; fix or remove the file named.',
  },
  // --- ledger ---
  LEDGER_UNAVAILABLE: {
    status: 503,
    disposition: 'retry',
    issue: 'transient',
    hint: 'The ledger database did not answer; nothing was recorded and the item is retried. Check the store URL and that PostgreSQL is up.',
  },
  LEDGER_LOCKED: {
    status: 503,
    disposition: 'dead-letter',
    issue: 'conflict',
    hint: 'Another scribe-bridge process holds this PGlite data directory; stop it, or use PostgreSQL for several workers.',
  },
  LEDGER_LEASE_LOST: {
    status: 409,
    disposition: 'ambiguous',
    issue: 'conflict',
    hint: 'Another worker took over this delivery after the lease expired; it settles the outcome.',
  },
  LEDGER_SCHEMA: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'processing',
    hint: 'A released migration must never change: revert the file and add a new migration.',
  },
  // --- audit log ---
  AUDIT_CHAIN_BROKEN: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'invariant',
    hint: 'The audit log was altered outside scribe-bridge: keep the database as it is, restore the named records from a backup and find out who changed them.',
  },
  AUDIT_ANCHOR_INVALID: {
    status: 422,
    disposition: 'reject',
    issue: 'structure',
    hint: 'An anchor is one JSON object per line: {"seq": <n>, "hash": "<64 hex>", "at": "<RFC 3339>"}. Use the file or S3 object scribe-bridge writes (audit.anchor).',
  },
  AUDIT_ANCHOR_UNAVAILABLE: {
    status: 503,
    disposition: 'retry',
    issue: 'transient',
    hint: 'Check that the anchor file or S3 object exists and that scribe-bridge may read and write it (S3: region, endpoint and credentials).',
  },
  // --- delivery ---
  MLLP_REJECTED: {
    status: 422,
    disposition: 'reject',
    issue: 'business-rule',
    hint: 'The receiver refused the message (AE / CR): fix the data or the mapping named in ERR, then replay. It is not resent unchanged.',
  },
  MLLP_NO_ACK: {
    status: 504,
    disposition: 'ambiguous',
    issue: 'timeout',
    hint: 'The message was sent but no usable ACK came back; it is resent later with the same MSH-10 so the receiver can deduplicate.',
  },
  MLLP_PROTOCOL: {
    status: 502,
    disposition: 'retry',
    issue: 'transient',
    hint: 'The receiver answered with something that is not an MLLP-framed HL7 acknowledgement; check the host, port and TLS settings.',
  },
  DELIVERY_FAILED: {
    status: 503,
    disposition: 'dead-letter',
    issue: 'transient',
    hint: 'The retry budget is spent: check that the destination is reachable and accepting, then replay from the dead-letter queue.',
  },
  FHIR_REJECTED: {
    status: 422,
    disposition: 'reject',
    issue: 'business-rule',
    hint: 'The EHR refused the write (its OperationOutcome issue codes are recorded): fix the data, the mapping or the destination settings, then replay. It is not resent unchanged.',
  },
  FHIR_NO_ANSWER: {
    status: 504,
    disposition: 'ambiguous',
    issue: 'timeout',
    hint: 'The EHR may have stored it; the reconciler reads it back by identifier before any resend.',
  },
  FHIR_UNSENDABLE: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'not-supported',
    hint: 'Choose a FHIR mapping whose output this destination can send (see docs/mappings.md).',
  },
  SHUTTING_DOWN: {
    status: 503,
    disposition: 'retry',
    issue: 'transient',
    hint: 'Nothing was sent; the delivery is retried by the next worker.',
  },
  CONFIG_INVALID: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'invalid',
    hint: 'Fix every problem listed (each names file:line and the path in the file), then start scribe-bridge again.',
  },
  // --- HTTP API ---
  AUTH_REQUIRED: {
    status: 401,
    disposition: 'reject',
    issue: 'login',
    hint: 'Send `Authorization: Bearer <token>` with a token configured for this role.',
  },
  FORBIDDEN: {
    status: 403,
    disposition: 'reject',
    issue: 'forbidden',
    hint: 'Use a token whose role (intake, operator, auditor) and tenants allow this request.',
  },
  NOT_FOUND: {
    status: 404,
    disposition: 'reject',
    issue: 'not-found',
    hint: 'Check the tenant and note id.',
  },
  HTTP_LISTEN_FAILED: {
    status: 500,
    disposition: 'reject',
    issue: 'exception',
    hint: 'Choose a free port in `http.port` (or stop what holds it), or an address of this host in `http.host`.',
  },
  QUEUE_UNAVAILABLE: {
    status: 503,
    disposition: 'retry',
    issue: 'transient',
    hint: 'The review queue cannot be read (endpoint, credentials, permissions): see the sqs.receive-failed log lines; intake resumes by itself once it can.',
  },
  METHOD_NOT_ALLOWED: {
    status: 405,
    disposition: 'reject',
    issue: 'not-supported',
    hint: 'Use the method the Allow header names (README § HTTP API).',
  },
  NOTE_CONFLICT: {
    status: 409,
    disposition: 'reject',
    issue: 'conflict',
    hint: 'This tenant, note and revision was already received with different signed content: send the amendment as the next revision instead. The conflict is audited.',
  },
  // --- dead-letter inspection and replay (operators) ---
  DEAD_LETTER_REQUEST_INVALID: {
    status: 400,
    disposition: 'reject',
    issue: 'invalid',
    hint: 'Send {"deliveryIds": [...], "revisionIds": [...], "sqsMessageIds": [...]} (numbers for ledger ids, strings for SQS message ids; at least one id).',
  },
  REPLAY_REFUSED: {
    status: 409,
    disposition: 'reject',
    issue: 'conflict',
    hint: 'Only dead-lettered items can be replayed: deliveries that ended rejected or failed, revisions dead-lettered after waiting too long. List them with `scribe-bridge dead-letters list` (GET /v1/dead-letters).',
  },
  DEAD_LETTER_QUEUE_UNAVAILABLE: {
    status: 503,
    disposition: 'retry',
    issue: 'transient',
    hint: 'Check intake.sqs.deadLetterQueueUrl, the endpoint and the AWS credentials, then try again.',
  },
  // --- command line and files ---
  USAGE: {
    status: 400,
    disposition: 'reject',
    issue: 'invalid',
    hint: 'Run `scribe-bridge --help` for usage.',
  },
  DEMO_INCOMPLETE: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'processing',
    hint: 'Run `scribe-bridge demo --verbose` to see the service log (ids and codes); each problem line names the note revision and destination.',
  },
  FILE_UNREADABLE: {
    status: 400,
    disposition: 'reject',
    issue: 'not-found',
    hint: 'Check the path and its permissions.',
  },
  FILE_UNWRITABLE: {
    status: 400,
    disposition: 'reject',
    issue: 'processing',
    hint: 'Give a file path in an existing folder you may write to (--out <folder>/<file>).',
  },
  INTERNAL: {
    status: 500,
    disposition: 'dead-letter',
    issue: 'exception',
    hint: 'This is a scribe-bridge defect; report it with the log line that carries this error.',
  },
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ScribeErrorOptions {
  /** Where: a JSON path ($.note.sections[0]…), a sentence id, file:line:column. Never a PHI value. */
  where?: string;
  /** What to do, when better than the code's default advice. */
  hint?: string;
  /** Override the code's default disposition (e.g. a transport decides retry vs reject). */
  disposition?: Disposition;
  cause?: unknown;
  /** Further located problems (e.g. every schema issue, not just the first). */
  issues?: readonly LocatedIssue[];
}

/** One located problem inside a larger error. */
export interface LocatedIssue {
  readonly where: string;
  readonly message: string;
}

/** A FHIR R4 OperationOutcome as the HTTP API returns it. */
export interface OperationOutcomeJson {
  resourceType: 'OperationOutcome';
  issue: Array<{
    severity: 'error' | 'fatal' | 'warning';
    code: IssueType;
    details: { coding: Array<{ system: string; code: string }>; text: string };
    diagnostics?: string;
    expression?: string[];
  }>;
}

export const ERROR_SYSTEM = 'urn:scribe-bridge:error';

/**
 * The product's one error class. `message` is the full human sentence (what, where, what to do);
 * `detail` is the "what" alone.
 */
export class ScribeError extends Error {
  readonly code: ErrorCode;
  readonly detail: string;
  readonly where: string | undefined;
  readonly hint: string;
  readonly disposition: Disposition;
  readonly status: number;
  readonly issues: readonly LocatedIssue[];

  constructor(code: ErrorCode, detail: string, opts: ScribeErrorOptions = {}) {
    const info: CodeInfo = ERROR_CODES[code];
    const hint = opts.hint ?? info.hint;
    const where = opts.where;
    super(`${code}: ${detail}${where ? ` (at ${where})` : ''}. ${hint}`, { cause: opts.cause });
    this.name = 'ScribeError';
    this.code = code;
    this.detail = detail;
    this.where = where;
    this.hint = hint;
    this.disposition = opts.disposition ?? info.disposition;
    // A code that is usually final but retried this time (a retraction whose revision has not arrived yet) is
    // answered as the temporary condition it is: 503, so an HTTP sender sends again, as SQS redelivers.
    this.status = this.disposition === 'retry' && info.status < 500 ? 503 : info.status;
    this.issues = opts.issues ?? [];
  }

  /** The OperationOutcome for HTTP answers: one issue per located problem, each carrying the stable code. */
  toOperationOutcome(): OperationOutcomeJson {
    const info: CodeInfo = ERROR_CODES[this.code];
    const coding = [{ system: ERROR_SYSTEM, code: this.code }];
    const located =
      this.issues.length > 0 ? this.issues : [{ where: this.where ?? '', message: this.detail }];
    return {
      resourceType: 'OperationOutcome',
      issue: located.map((i) => ({
        severity: 'error',
        code: info.issue,
        details: { coding, text: `${i.message}${i.where ? ` (at ${i.where})` : ''}` },
        diagnostics: this.hint,
        ...(i.where ? { expression: [i.where] } : {}),
      })),
    };
  }

  /** A log-safe summary: code, disposition and location only — never values. */
  toLog(): { code: ErrorCode; disposition: Disposition; where?: string } {
    return { code: this.code, disposition: this.disposition, ...(this.where ? { where: this.where } : {}) };
  }
}

export function isScribeError(e: unknown): e is ScribeError {
  return e instanceof ScribeError;
}

/** Wraps anything thrown into a ScribeError (INTERNAL unless it already is one). */
/**
 * Where an unexpected error came from, for the log line of a 500 or a failed receive: the error's class, its
 * system or SQLSTATE code and the first frame of its stack (a path inside src/ or a package, and a line). Never
 * its message, which may quote a value (a database error names the text it could not store).
 */
export function causeSummary(e: unknown): string | undefined {
  const c = e instanceof ScribeError ? e.cause : e;
  if (!(c instanceof Error)) return undefined;
  const code = (c as { code?: unknown }).code;
  const frame = c.stack
    ?.split('\n')
    .find((l) => l.trimStart().startsWith('at '))
    ?.match(/((?:src|node_modules)\/[^\s():]+:\d+)/)?.[1];
  return `${c.name}${typeof code === 'string' && /^[A-Z0-9_]{2,40}$/.test(code) ? ` ${code}` : ''}${frame ? ` at ${frame}` : ''}`;
}

export function toScribeError(e: unknown): ScribeError {
  if (e instanceof ScribeError) return e;
  return new ScribeError('INTERNAL', e instanceof Error ? e.name : 'non-error thrown', { cause: e });
}
