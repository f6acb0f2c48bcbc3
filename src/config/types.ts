/**
 * The normalised service configuration: what `loadConfig` and `defaultConfig` return. Every default is
 * applied, every path is absolute, every secret the file names by environment variable is resolved into a
 * {@link Secret}. The YAML shape it comes from is in `schema.ts`; PRODUCT.md "Configuration" is the contract.
 */
import type { AckTableOverrides } from '../deliver/ack.ts';
import type { RetryPolicy } from '../deliver/backoff.ts';
import type { MappingFormat } from '../map/mapping-file.ts';
import type { Secret } from './secret.ts';

/** Where the ledger lives. */
export type StoreConfig =
  /** PostgreSQL, shared by many workers. The URL carries no password (libpq's PGPASSWORD does). */
  | { readonly kind: 'postgres'; readonly url: string }
  /** Embedded PGlite in one data directory (absolute), used by one process at a time. */
  | { readonly kind: 'pglite'; readonly dir: string };

/** The HTTP listener (intake, status, trace, health, metrics). */
export interface HttpConfig {
  readonly host: string;
  /** 0 asks the OS for a free port (tests). */
  readonly port: number;
}

/** The three bearer-token roles of the HTTP API. */
export type Role = 'intake' | 'operator' | 'auditor';

/** One accepted bearer token, known only by its hash. */
export interface TokenConfig {
  readonly role: Role;
  /** sha256 of the token's UTF-8 bytes, 64 lower-case hex digits. */
  readonly sha256: string;
  /** The tenants this token may act for; absent means every tenant. */
  readonly tenants?: readonly string[];
  /** Where it came from: the config file, a SCRIBE_BRIDGE_TOKEN_* variable, or generated at start. */
  readonly source: 'file' | 'env' | 'generated';
}

/** The SQS consumer. All durations in seconds. */
export interface SqsConfig {
  readonly queueUrl: string;
  readonly region: string;
  /** For SQS-compatible servers; absent for AWS. */
  readonly endpoint?: string;
  /** Where poison messages go on their first receive; absent means they are left to the queue's redrive policy. */
  readonly deadLetterQueueUrl?: string;
  readonly visibilityTimeoutSeconds: number;
  /** Long-poll wait, 0–20 (the SQS limit). */
  readonly waitTimeSeconds: number;
  /** Messages per receive, 1–10 (the SQS limit). */
  readonly maxMessages: number;
  /** How often an in-progress message's visibility is extended; always < visibilityTimeoutSeconds. */
  readonly heartbeatSeconds: number;
}

/** Intake settings. */
export interface IntakeConfig {
  /** Absent: only HTTP intake runs. */
  readonly sqs?: SqsConfig;
  /** How long a revision waits for its predecessor before it is dead-lettered, seconds. */
  readonly holdSeconds: number;
}

/** The S3 client used to resolve claim-check pointers and artifact URIs. */
export interface S3Config {
  readonly region: string;
  readonly endpoint?: string;
  readonly forcePathStyle: boolean;
}

/** Where the audit chain's head is anchored (so a truncated chain is detectable). */
export type AuditAnchorConfig =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 's3'; readonly bucket: string; readonly key: string };

/** The audit log's settings (`audit:`). */
export interface AuditConfig {
  readonly anchor?: AuditAnchorConfig;
  readonly intervalSeconds: number;
}

/** Where a tenant's review-application public keys come from. */
export type ReviewKeysConfig =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'url'; readonly url: string };

/** One tenant: whose signatures are trusted for it and where its notes go. */
export interface TenantConfig {
  readonly id: string;
  readonly reviewKeys: ReviewKeysConfig;
  /** Destination ids, each present in {@link Config.destinations}. */
  readonly destinations: readonly string[];
}

/** A destination's mapping: as written, and the file it resolved to (load it with `MappingRegistry`). */
export interface MappingRefConfig {
  /** What the config says: a shipped id or a path. */
  readonly ref: string;
  /** The absolute mapping file; `MappingRegistry.get(file)` reloads it when it changes (hot reload). */
  readonly file: string;
  /** The mapping's format when the config was loaded. */
  readonly format: MappingFormat;
}

/** TLS material as absolute file paths (each checked to exist at load; the transport reads them). */
export interface TlsConfig {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  /** Name to verify the server's certificate against when the host is an address. */
  readonly servername?: string;
}

/** How a FHIR destination authenticates. Secrets are resolved from the environment at load. */
export type FhirAuthConfig =
  | { readonly type: 'none' }
  | { readonly type: 'bearer'; readonly tokenEnv: string; readonly token: Secret }
  | {
      readonly type: 'client-credentials';
      readonly tokenUrl: string;
      readonly clientId: string;
      readonly clientSecretEnv: string;
      readonly clientSecret: Secret;
      readonly scope?: string;
    }
  | {
      readonly type: 'smart-backend';
      readonly tokenUrl: string;
      readonly clientId: string;
      /** Where the key came from: an absolute file path, or the variable's name. */
      readonly privateKeySource: { readonly file: string } | { readonly env: string };
      /** The private key text (PKCS#8 PEM or a private JWK as JSON), checked to import for `alg`. */
      readonly privateKey: Secret;
      readonly kid: string;
      readonly alg: 'RS384' | 'ES384';
      readonly scope?: string;
    }
  /** Mutual TLS: the destination's `tls` has `cert` and `key`. */
  | { readonly type: 'mtls' };

interface DestinationCommon {
  readonly id: string;
  readonly mapping: MappingRefConfig;
  readonly retry: RetryPolicy;
  /** Deliveries in flight to this destination at once, per worker. */
  readonly concurrency: number;
}

/** A FHIR R4 REST endpoint. */
export interface FhirDestinationConfig extends DestinationCommon {
  readonly type: 'fhir';
  readonly baseUrl: string;
  readonly auth: FhirAuthConfig;
  /** `conditional-create` on the identifier (default), or `put` to a deterministic id. */
  readonly write: 'conditional-create' | 'put';
  /** `logical` references by identifier (default), or `resolve` them to the EHR's ids at send time. */
  readonly references: 'logical' | 'resolve';
  /** Per request, ms. */
  readonly timeoutMs: number;
  readonly tls?: TlsConfig;
  /** Rendering names of the mapping to send; absent means the mapping's defaultRenderings. */
  readonly renderings?: readonly string[];
}

/** An HL7 v2 receiver over MLLP. */
export interface MllpDestinationConfig extends DestinationCommon {
  readonly type: 'mllp';
  readonly host: string;
  readonly port: number;
  readonly sendingApplication?: string;
  readonly sendingFacility?: string;
  readonly receivingApplication?: string;
  readonly receivingFacility?: string;
  /** How long to wait for the ACK of the MSH-10 sent, ms. */
  readonly ackTimeoutMs: number;
  readonly tls?: TlsConfig;
  /** Overrides of the default ACK table (PRODUCT.md §5); empty when the defaults hold. */
  readonly ackCodes: AckTableOverrides;
}

/** A folder that receives one file per payload (atomic writes). */
export interface FileDestinationConfig extends DestinationCommon {
  readonly type: 'file';
  /** Absolute. Created by the destination if missing. */
  readonly directory: string;
}

/** One place notes are delivered to. */
export type DestinationConfig = FhirDestinationConfig | MllpDestinationConfig | FileDestinationConfig;

/** The whole service configuration, validated and normalised. */
export interface Config {
  /** The absolute path of the YAML file; undefined for the embedded defaults. */
  readonly file: string | undefined;
  /** The folder relative paths were resolved against (the file's folder, or the working directory). */
  readonly baseDir: string;
  readonly store: StoreConfig;
  readonly http: HttpConfig;
  readonly auth: { readonly tokens: readonly TokenConfig[] };
  readonly intake: IntakeConfig;
  readonly s3?: S3Config;
  /** Audit chain anchoring; absent: not anchored. */
  readonly audit?: AuditConfig;
  /** Only these hosts may be named as endpoints (checked at load, src/config/egress.ts); absent: any host. */
  readonly egress?: { readonly allowHosts: readonly string[] };
  /** How long a graceful stop may take before the process gives up waiting, seconds. */
  readonly shutdownSeconds: number;
  readonly tenants: readonly TenantConfig[];
  readonly destinations: readonly DestinationConfig[];
}
