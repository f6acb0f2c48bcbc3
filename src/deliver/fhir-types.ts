/**
 * The public shapes of the FHIR REST destination: its configuration, what one send returns, and what it
 * logs. Kept apart from the HTTP code so the ledger, config and CLI can import them without `node:http`.
 */

/** TLS for the EHR's FHIR and token endpoints (PEM strings, already read from the files the config names). */
export interface FhirTlsOptions {
  /** CA certificate(s) of the EHR; replaces the system store when given. */
  readonly ca?: string;
  /** Client certificate, for EHRs that require mutual TLS (auth type `mtls`, or alongside a token). */
  readonly cert?: string;
  /** Private key of `cert`. */
  readonly key?: string;
  /** Name to verify the EHR's certificate against when the URL holds an address. */
  readonly servername?: string;
  /** Default true. False accepts any certificate: for a lab bench only, never for PHI. */
  readonly rejectUnauthorized?: boolean;
}

/**
 * How the destination authenticates, with secrets already resolved from the environment by the config layer
 * (`tokenEnv`, `clientSecretEnv`, `privateKeyFile | privateKeyEnv` become the values here).
 */
export type FhirAuthConfig =
  | { readonly type: 'none' }
  /** TLS client certificate only: `tls.cert` and `tls.key` carry it. */
  | { readonly type: 'mtls' }
  | { readonly type: 'bearer'; readonly token: string }
  | {
      readonly type: 'client-credentials';
      readonly tokenUrl: string;
      readonly clientId: string;
      readonly clientSecret: string;
      readonly scope?: string;
      /** RFC 6749 §2.3.1: HTTP Basic (default, what Oracle Health uses) or form fields. */
      readonly clientAuth?: 'basic' | 'post';
    }
  | {
      readonly type: 'smart-backend';
      readonly tokenUrl: string;
      readonly clientId: string;
      /** PKCS#8 PEM, or a private JWK (object or JSON text). */
      readonly privateKey: string | Readonly<Record<string, unknown>>;
      /** The key id registered with the EHR; defaults to the JWK's `kid`. */
      readonly kid?: string;
      readonly alg: 'RS384' | 'ES384';
      readonly scope: string;
    };

/** One FHIR destination (the `type: fhir` entry of the config, with defaults applied). */
export interface FhirDestinationConfig {
  readonly id: string;
  /** The FHIR base, e.g. https://ehr.example.org/fhir/R4 (no trailing slash needed). */
  readonly baseUrl: string;
  /**
   * How a single DocumentReference is written: as the rendering's request says (conditional create on its
   * identifier; default), or `PUT DocumentReference/<resource.id>` (update-as-create with the deterministic
   * id, for servers whose CapabilityStatement allows updateCreate).
   */
  readonly write?: 'conditional-create' | 'put';
  /** Keep patient/encounter/author/custodian references logical (default) or resolve them to EHR ids. */
  readonly references?: 'logical' | 'resolve';
  /** Deadline of one HTTP exchange, ms. Default 30 000. */
  readonly timeoutMs?: number;
  readonly auth: FhirAuthConfig;
  readonly tls?: FhirTlsOptions;
  /** How long a resolved reference id is reused, ms. Default 300 000. */
  readonly referenceCacheTtlMs?: number;
}

/** What one send means for the delivery. */
export type FhirOutcome =
  /** the EHR stored it (2xx), or a read-back found it */
  | 'delivered'
  /** permanent: resending the same bytes cannot help */
  | 'rejected'
  /** transient: nothing was stored; try again later (no earlier than `retryAfterMs`) */
  | 'retry'
  /** sent, no usable answer (or 409/412): settle by read-back, never by a blind resend */
  | 'ambiguous';

/** Why a send ended the way it did. */
export type FhirReason =
  /** an HTTP answer, classified by status and OperationOutcome */
  | 'http'
  /** no connection: nothing was sent */
  | 'connect-failed'
  /** the connection broke, or the deadline passed, before the request was fully written: nothing usable arrived */
  | 'send-failed'
  /** the request was written, then the connection broke or the deadline passed without an answer */
  | 'no-answer'
  /** the token endpoint refused or failed; nothing was sent to the FHIR server */
  | 'auth-failed'
  /** a logical reference did not resolve to exactly one resource; nothing was sent */
  | 'reference-unresolved'
  /** reference resolution could not finish (the search failed transiently); nothing was sent */
  | 'reference-search-failed'
  /** a read-back search found the resource */
  | 'read-back';

/** One transaction-response entry. */
export interface FhirEntryReceipt {
  /** As the server wrote it, e.g. `201 Created`. */
  readonly status: string;
  readonly resourceType?: string;
  readonly id?: string;
  readonly versionId?: string;
  readonly etag?: string;
}

/** What the EHR said it stored, for the ledger (ids and versions, never resource content). */
export interface FhirReceipt {
  readonly status: number;
  /** The written resource (for a transaction: its DocumentReference entry; for a document: the Bundle). */
  readonly resourceType?: string;
  readonly id?: string;
  readonly versionId?: string;
  readonly etag?: string;
  readonly lastModified?: string;
  /** The Location header, as sent. */
  readonly location?: string;
  /** True when this request created it (201), false when it matched or updated an existing one. */
  readonly created?: boolean;
  /** Transaction responses, in request order. */
  readonly entries?: readonly FhirEntryReceipt[];
  /** For a read-back: how many resources carried the identifier (more than one means the EHR holds duplicates). */
  readonly matches?: number;
}

/** The result of one send (or read-back). `sentBody` may carry PHI: store it, never log it. */
export interface FhirResult {
  readonly outcome: FhirOutcome;
  readonly reason: FhirReason;
  readonly httpStatus?: number;
  /** The server's Retry-After as a wait from now, ms (429, 503). */
  readonly retryAfterMs?: number;
  /** OperationOutcome issue codes of the answer, in order, without repeats. */
  readonly issueCodes?: readonly string[];
  /** A refusal's issues with where they point (code and plain FHIRPath expressions only: R15). */
  readonly issues?: readonly { readonly code: string; readonly expression: readonly string[] }[];
  readonly receipt?: FhirReceipt;
  /** Whether the request body was fully handed to the network (false: it cannot have been stored). */
  readonly written: boolean;
  /** The exact bytes sent (or that would have been sent): `rendering.body` unless references were resolved. */
  readonly sentBody: string;
  /** sha256 hex of `sentBody`: what the ledger records as `payloadSha256`. */
  readonly sentSha256: string;
  /** A log-safe explanation (codes, types, identifier systems — never values or text). */
  readonly detail?: string;
  /** Node's error code when the transport failed (ECONNREFUSED, ECONNRESET, ETIMEDOUT, …). */
  readonly errorCode?: string;
  /** True when a 401/security answer made us fetch a new token and send once more. */
  readonly authRefreshed?: boolean;
  /** Wall time of the whole send (token, reference resolution, HTTP), whole ms. */
  readonly ms: number;
}

/** One log entry of the FHIR destination. Ids, codes, systems and timings only: never bodies, values or tokens. */
export type FhirLogEntry =
  | {
      readonly level: 'info' | 'warn';
      readonly event: 'fhir.send';
      readonly destination: string;
      readonly method: string;
      /** Path below the base without the query (which may carry identifier values). */
      readonly path: string;
      readonly status?: number;
      readonly outcome: FhirOutcome;
      readonly reason: FhirReason;
      readonly ms: number;
    }
  | {
      readonly level: 'info' | 'warn';
      readonly event: 'fhir.token';
      readonly destination: string;
      readonly ok: boolean;
      readonly status?: number;
      readonly expiresInS?: number;
      readonly ms: number;
    }
  | {
      readonly level: 'warn';
      readonly event: 'fhir.reference.unresolved';
      readonly destination: string;
      readonly resourceType: string;
      readonly system: string;
      readonly matches: number;
    };

export type FhirLogger = (entry: FhirLogEntry) => void;

/** Injected pieces: logging and the wall clock (token expiry, HTTP-date Retry-After). */
export interface FhirDestinationDeps {
  readonly logger?: FhirLogger;
  /** Epoch ms; defaults to Date.now. */
  readonly now?: () => number;
}
