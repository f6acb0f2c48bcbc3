/**
 * The whole input check, in the order the spec requires: the envelope's shape, then its signature and the
 * artifact hashes, then everything that depends on the HealthScribe files (their schema, evidence SegmentIds,
 * draft pointers), then edit classification. A VerifiedNote is the only thing later stages accept.
 */
import { ScribeError } from '../errors.ts';
import { type ResolvedArtifact, type ResolveOptions, resolveArtifacts } from './artifacts.ts';
import { type ClassifiedSentence, classifySentences, type RemovedDraftSentence } from './edits.ts';
import { checkLifecycle, type Envelope, type ReadEnvelope, readEnvelope } from './envelope.ts';
import {
  type ClinicalDocument,
  type HsFileAt,
  parseClinicalDocument,
  parseTranscript,
  sectionKey,
  type Transcript,
} from './healthscribe.ts';
import type { JsonValue } from './json.ts';
import {
  type Jwks,
  peekJwsHeader,
  type SignatureCheck,
  signedContent,
  verifyDetachedJws,
} from './signature.ts';

export interface VerifiedNote {
  readonly envelope: Envelope;
  readonly raw: { [k: string]: JsonValue };
  /** The canonical signed bytes; byte-identical content means a duplicate, different content a conflict. */
  readonly signedContent: Uint8Array;
  readonly signature: SignatureCheck;
  readonly artifacts: { readonly transcript: ResolvedArtifact; readonly clinicalDocument: ResolvedArtifact };
  readonly transcript: Transcript;
  readonly clinicalDocument: ClinicalDocument;
  readonly sentences: readonly ClassifiedSentence[];
  readonly removedDraftSentences: readonly RemovedDraftSentence[];
  /**
   * Evidence links of the draft (the clinical document's EvidenceLinks) to a SegmentId the transcript does not
   * have (reference/healthscribe.md Q12: AWS's own examples have them). Not delivered — each signed sentence's
   * evidence is, and is checked — so only counted and reported.
   */
  readonly unresolvedDraftEvidence: number;
}

/** Where a tenant's review keys come from (a fixed set on the command line; per tenant in the service). */
export type KeySource = Jwks | ((tenant: string) => Promise<Jwks>);

export interface VerifyOptions extends ResolveOptions {
  /**
   * The tenant's review keys. `'skip-signature'` is for dry runs only (`scribe-bridge map` without --keys):
   * everything else is checked, the signature is recorded as not verified, and nothing may be delivered.
   */
  readonly keys: KeySource | 'skip-signature';
  /** A name for locations in messages (a file path); never PHI. */
  readonly source?: string;
}

/** Reads and verifies an envelope. Throws ScribeError only. */
export async function verifyEnvelope(
  input: string | Uint8Array | ReadEnvelope,
  opts: VerifyOptions,
): Promise<VerifiedNote> {
  try {
    const read =
      typeof input === 'string' || input instanceof Uint8Array ? readEnvelope(input, opts.source) : input;
    return await verifyRead(read, opts);
  } catch (e) {
    if (e instanceof ScribeError) throw e;
    throw new ScribeError(
      'INTERNAL',
      `verification failed unexpectedly (${e instanceof Error ? e.name : 'non-error'})`,
      { cause: e },
    );
  }
}

async function verifyRead({ envelope, raw }: ReadEnvelope, opts: VerifyOptions): Promise<VerifiedNote> {
  await opts.turn?.();
  const content = signedContent(raw);
  let signature: SignatureCheck;
  if (opts.keys === 'skip-signature') {
    signature = {
      ...peekJwsHeader(envelope.signature.jws),
      signedAt: envelope.signature.signedAt,
      verified: false,
    };
  } else {
    const jwks = typeof opts.keys === 'function' ? await opts.keys(envelope.tenant) : opts.keys;
    signature = await verifyDetachedJws(envelope.signature.jws, content, jwks, envelope.signature.signedAt);
  }
  checkLifecycle(envelope);
  const artifacts = await resolveArtifacts(envelope, opts);
  await opts.turn?.();
  const transcript = parseTranscript(artifacts.transcript.json, fileAt(artifacts.transcript));
  const clinicalDocument = parseClinicalDocument(
    artifacts.clinicalDocument.json,
    fileAt(artifacts.clinicalDocument),
  );
  checkSameJob(envelope, transcript, clinicalDocument);
  checkReferences(envelope, transcript, clinicalDocument);
  const { sentences, removed } = classifySentences(envelope, clinicalDocument);
  return {
    envelope,
    raw,
    signedContent: content,
    signature,
    artifacts,
    transcript,
    clinicalDocument,
    sentences,
    removedDraftSentences: removed,
    unresolvedDraftEvidence: countUnresolved(transcript, clinicalDocument),
  };
}

function countUnresolved(transcript: Transcript, doc: ClinicalDocument): number {
  let n = 0;
  for (const section of doc.file.ClinicalDocumentation.Sections)
    for (const item of section.Summary)
      for (const link of item.EvidenceLinks) if (!transcript.segments.has(link.SegmentId)) n++;
  return n;
}

/**
 * Where a problem inside a HealthScribe file is reported: inline, its path in the envelope
 * (`$.healthscribe.transcript.inline.Conversation…`); fetched, its path in the file and the file's URI.
 */
function fileAt(a: ResolvedArtifact): HsFileAt {
  return a.source === 'inline' ? { prefix: ['healthscribe', a.name, 'inline'] } : { file: a.uri! };
}

/**
 * The artifacts are the output of the job or session the envelope names, as far as they say (reference/healthscribe.md
 * §4: evidence points at segments "of the same job/session"): a batch transcript names its JobName, a streaming one
 * its SessionId, a streaming clinical document its SessionId. A file that names another job or session — or is
 * from a streaming session when the envelope names a batch job, or the reverse — would tie the note to another
 * encounter's audio. Values are not echoed (they may identify the encounter).
 */
export function checkSameJob(env: Envelope, transcript: Transcript, doc: ClinicalDocument): void {
  const hs = env.healthscribe;
  const own = hs.jobName !== undefined ? 'jobName' : 'sessionId';
  const other = own === 'jobName' ? 'sessionId' : 'jobName';
  const named = hs[own];
  const field = { jobName: 'Conversation.JobName', sessionId: 'Conversation.SessionId' } as const;
  const mismatch = (file: string, what: string) =>
    new ScribeError(
      'HEALTHSCRIBE_JOB_MISMATCH',
      `the ${file}'s ${what} is not the ${own === 'jobName' ? 'batch job' : 'streaming session'} the envelope names`,
      { where: `$.healthscribe.${own}` },
    );
  if (named === undefined) return;
  // The transcript names the same kind of id with the same value, or (from the other kind of job) the other kind.
  const ownValue = transcript[own];
  if (ownValue !== undefined ? ownValue !== named : transcript[other] !== undefined)
    throw mismatch('transcript', field[ownValue !== undefined ? own : other]);
  // Only a streaming session's clinical document names one: its session.
  const docSession = doc.file.ClinicalDocumentation.SessionId;
  if (docSession !== undefined && (own === 'jobName' || docSession !== named))
    throw mismatch('clinical document', 'ClinicalDocumentation.SessionId');
}

/** Every evidence SegmentId exists in the transcript; every draft pointer exists in the clinical document. */
export function checkReferences(env: Envelope, transcript: Transcript, doc: ClinicalDocument): void {
  env.note.sections.forEach((section, si) => {
    section.sentences.forEach((s, i) => {
      const path = `$.note.sections[${si}].sentences[${i}]`;
      s.evidence.forEach((segmentId, ei) => {
        if (!transcript.segments.has(segmentId)) {
          throw new ScribeError(
            'EVIDENCE_UNKNOWN_SEGMENT',
            `sentence ${JSON.stringify(s.id)} cites segment ${JSON.stringify(segmentId)}, which is not in the transcript`,
            { where: `${path}.evidence[${ei}]` },
          );
        }
      });
      if (s.draft) {
        const draftSection = doc.sections.get(sectionKey(s.draft.section));
        if (!draftSection) {
          throw new ScribeError(
            'DRAFT_POINTER_INVALID',
            `sentence ${JSON.stringify(s.id)} points to draft section ${JSON.stringify(s.draft.section)}, which the clinical document does not have`,
            { where: `${path}.draft.section` },
          );
        }
        if (s.draft.index >= draftSection.Summary.length) {
          throw new ScribeError(
            'DRAFT_POINTER_INVALID',
            `sentence ${JSON.stringify(s.id)} points to draft item ${s.draft.index} of ${JSON.stringify(s.draft.section)}, which has ${draftSection.Summary.length} item(s)`,
            { where: `${path}.draft.index` },
          );
        }
      }
    });
  });
}
