/**
 * The ledger's values: what goes in (a verified, rendered revision; an attempt's result) and what comes out
 * (outcomes, claimed deliveries, status views). Plain data, camelCase; rows are mapped in the query modules.
 */
import type { NoteStatus } from '../contract/envelope.ts';
import type { JsonValue } from '../contract/json.ts';
import type { WritePlan } from '../deliver/fhir-request.ts';

export type { WritePlan };

/** A revision's place in its note's lifecycle. */
export type RevisionState = 'accepted' | 'waiting' | 'dead-lettered';

/** Every delivery state, in the order of the state machine. */
export const DELIVERY_STATES = [
  'pending',
  'sending',
  'delivered',
  'rejected',
  'failed',
  'ambiguous',
  'blocked',
] as const;
/** A delivery's state at one destination (design/ARCHITECTURE.md, "Delivery state"). */
export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** States after which a delivery is never sent again without an operator. */
export const TERMINAL_STATES: readonly DeliveryState[] = ['delivered', 'rejected', 'failed'];

/** Where a revision came from. */
export type NoteSource = 'sqs' | 'http' | 'cli' | 'replay';

/** What a destination can later be asked about: a FHIR identifier, or an MDM document number + MSH-10. */
export type DestinationIdentifier =
  | { readonly system: string; readonly value: string }
  | { readonly documentNumber: string; readonly controlId: string };

/** One destination's rendering of a revision, made by the caller before recording. */
export interface RenderingInput {
  readonly destination: string;
  readonly mapping: { readonly id: string; readonly version: string; readonly digest: string };
  readonly contentType: string;
  /** The exact bytes to deliver (UTF-8 text). */
  readonly payload: string;
  /** sha256 hex of `payload` (checked). */
  readonly payloadSha256: string;
  /** For FHIR REST: how the payload is written. */
  readonly writeRequest?: {
    readonly method: string;
    readonly url: string;
    readonly ifNoneExist?: string;
  } | null;
  /** For FHIR REST: the request planned at intake (see migration 004), exactly as it will be sent. */
  readonly writePlan?: WritePlan | null;
  readonly identifiers: readonly DestinationIdentifier[];
}

/** A verified signed revision and its renderings, to record in one transaction. */
export interface RevisionInput {
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  readonly status: NoteStatus;
  readonly replaces: number | null;
  /** sha256 hex of the canonical signed content. */
  readonly contentSha256: string;
  /** The envelope as received (parsed JSON). */
  readonly envelope: { readonly [k: string]: JsonValue };
  readonly signature: {
    readonly kid: string;
    readonly alg: string;
    readonly thumbprint?: string | undefined;
    readonly signedAt: string;
    /** Must be true: an unverified (dry-run) note is never recorded for delivery. */
    readonly verified: boolean;
  };
  readonly artifacts: readonly {
    readonly name: string;
    readonly source: string;
    readonly uri?: string | undefined;
    readonly sha256: string;
    readonly hashSigned: boolean;
  }[];
  readonly source: NoteSource;
  /** What the provenance trace needs from the verified note (src/trace/record.ts `TraceData`); stored as jsonb. */
  readonly trace?: object | undefined;
  /** One per destination of the tenant (none while `renderPending`). */
  readonly renderings: readonly RenderingInput[];
  /**
   * A retraction whose retracted revision has not arrived: it cannot be rendered yet. Recorded as waiting with no
   * renderings; the service renders it once the predecessor is recorded (`Ledger.attachRenderings`).
   */
  readonly renderPending?: boolean;
  /** Default: the ledger's clock. */
  readonly receivedAt?: Date;
}

/** A delivery as a revision's outcome reports it. */
export interface DeliverySummary {
  readonly id: number;
  readonly destination: string;
  readonly state: DeliveryState;
}

/** A later revision whose place changed because this one arrived. */
export interface ReleasedRevision {
  readonly revision: number;
  readonly state: RevisionState;
}

/** What `recordRevision` decided. */
export type RecordResult =
  | {
      readonly outcome: 'accepted' | 'waiting';
      readonly revisionId: number;
      readonly deliveries: readonly DeliverySummary[];
      /** Waiting successors now accepted (or dead-lettered, after an entered-in-error). */
      readonly released: readonly ReleasedRevision[];
      /** True when this re-sent content revived a dead-lettered revision. */
      readonly revived: boolean;
    }
  | {
      readonly outcome: 'duplicate';
      readonly revisionId: number;
      readonly state: RevisionState;
      readonly deliveries: readonly DeliverySummary[];
    }
  | { readonly outcome: 'conflict'; readonly revisionId: number; readonly storedSha256: string }
  | {
      readonly outcome: 'rejected';
      readonly code: 'LIFECYCLE_INVALID';
      /** PHI-free: revision numbers only. */
      readonly detail: string;
    };

/** A delivery handed to a worker, with everything needed to send it. */
export interface ClaimedDelivery {
  readonly id: number;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  readonly status: NoteStatus;
  readonly destination: string;
  /** `ambiguous`: an earlier send may have landed; read back before any resend. */
  readonly claimedFrom: 'pending' | 'ambiguous';
  /** Attempts recorded before this one. */
  readonly attempts: number;
  readonly leaseOwner: string;
  readonly leaseUntil: Date;
  readonly receivedAt: Date;
  readonly rendering: {
    readonly id: number;
    readonly mapping: { readonly id: string; readonly version: string; readonly digest: string };
    readonly contentType: string;
    readonly payload: string;
    readonly payloadSha256: string;
    readonly writeRequest: {
      readonly method: string;
      readonly url: string;
      readonly ifNoneExist?: string;
    } | null;
    /** Null for MLLP/file destinations and for renderings recorded before migration 004. */
    readonly writePlan?: WritePlan | null;
    readonly identifiers: readonly DestinationIdentifier[];
  };
}

/** Options of `claimDue`. */
export interface ClaimOptions {
  /** At most this many rows now. */
  readonly limit: number;
  /** Who holds the lease (worker id); `recordAttempt` must name the same owner. */
  readonly owner: string;
  readonly leaseMs: number;
  /** The destination's concurrency: at most this many unexpired `sending` leases at once (default unbounded). */
  readonly concurrency?: number;
  /** Default: the ledger's clock. */
  readonly now?: Date;
}

/** A send's result, as the worker reports it. */
export interface AttemptResult {
  /** `failed`: the caller decided the retry budget is spent. */
  readonly outcome: 'delivered' | 'rejected' | 'retry' | 'ambiguous' | 'failed';
  readonly startedAt: Date;
  readonly durationMs: number;
  readonly httpStatus?: number;
  /** HL7 MSA-1 (AA, AE, AR, CA, CE, CR). */
  readonly ackCode?: string;
  /** A stable ScribeError code (or a destination's code such as an OperationOutcome issue code). */
  readonly errorCode?: string;
  /** PHI-free: ids, versions, codes (e.g. `{ id, versionId, location }`, `{ msa2 }`). */
  readonly receipt?: { readonly [k: string]: JsonValue };
  /** sha256 of the bytes actually sent, when they differ from the rendering's. */
  readonly sentPayloadSha256?: string;
  /** Required for `retry`; for `ambiguous` defaults to now (the reconciler's turn). */
  readonly nextAttemptAt?: Date;
}

/** What `recordAttempt` stored. */
export interface AttemptRecorded {
  readonly deliveryId: number;
  readonly state: DeliveryState;
  readonly attempts: number;
  /** Deliveries of later revisions at this destination that became pending. */
  readonly unblocked: readonly number[];
}

/** A lease that ran out: the delivery is now `ambiguous`. */
export interface ExpiredLease {
  readonly deliveryId: number;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  readonly destination: string;
  readonly owner: string;
}

/** A waiting revision whose hold ran out. */
export interface DeadLetteredRevision {
  readonly revisionId: number;
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
  readonly reason: string;
}

/** One delivery in a status view. */
export interface DeliveryStatus {
  readonly id: number;
  readonly destination: string;
  readonly state: DeliveryState;
  readonly attempts: number;
  readonly nextAttemptAt: Date | null;
  readonly lastErrorCode: string | null;
  readonly receipt: JsonValue | null;
  readonly mapping: { readonly id: string; readonly version: string; readonly digest: string };
  readonly payloadSha256: string;
  readonly updatedAt: Date;
}

/** A note's revisions and their per-destination deliveries. */
export interface NoteStatusView {
  readonly tenant: string;
  readonly noteId: string;
  readonly revisions: readonly {
    readonly revision: number;
    readonly status: NoteStatus;
    readonly state: RevisionState;
    readonly stateReason: string | null;
    readonly holdUntil: Date | null;
    readonly contentSha256: string;
    readonly source: string;
    readonly receivedAt: Date;
    /** signedAt as the envelope has it (the signed string). */
    readonly signature: { readonly kid: string; readonly alg: string; readonly signedAt: string };
    readonly deliveries: readonly DeliveryStatus[];
  }[];
}

/** Open work: deliveries by state (delivered ones are history, not backlog) and revisions waiting. */
export interface Backlog {
  readonly byState: Readonly<Record<Exclude<DeliveryState, 'delivered'>, number>>;
  readonly byDestination: Readonly<Record<string, Readonly<Partial<Record<DeliveryState, number>>>>>;
  readonly waitingRevisions: number;
}
