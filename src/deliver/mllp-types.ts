/**
 * The public shapes of the MLLP client: its options, what one send returns, and what it logs.
 * Kept apart from the socket code so the ledger, config and CLI can import them without `node:net`.
 */
import type { AckDisposition, AckError, AckTableOverrides } from './ack.ts';

/** TLS for MLLP (PEM strings). Certificate verification stays on unless `rejectUnauthorized: false`. */
export interface MllpTlsOptions {
  /** CA certificate(s) that sign the receiver's certificate; the system store when absent. */
  readonly ca?: string;
  /** Client certificate, for receivers that require mutual TLS. */
  readonly cert?: string;
  /** Private key of `cert`. */
  readonly key?: string;
  /** Name to verify the receiver's certificate against (and send as SNI) when `host` is an address. */
  readonly servername?: string;
  /** Default true. False accepts any certificate: for a lab bench only, never for PHI. */
  readonly rejectUnauthorized?: boolean;
}

/** Options of one MLLP destination. */
export interface MllpClientOptions {
  readonly host: string;
  readonly port: number;
  /** When present the connection is TLS; there is never a plaintext fallback. */
  readonly tls?: MllpTlsOptions;
  /** TCP connect plus TLS handshake, in ms. Default 10 000. */
  readonly connectTimeoutMs?: number;
  /** How long to wait for the ACK of our MSH-10 after writing, in ms. Default 30 000. */
  readonly ackTimeoutMs?: number;
  /** Per-destination override of the default ACK table (PRODUCT.md §5). */
  readonly ackCodes?: AckTableOverrides;
  /** Receives warnings and connection events; entries carry ids, codes and timings, never message text. */
  readonly logger?: MllpLogger;
  /**
   * Default true: one connection carries message after message. False opens a connection per message and
   * closes it after the answer, for receivers that hang up after every ACK.
   */
  readonly keepConnection?: boolean;
  /** Cap on one inbound frame in bytes. Default 1 MiB. */
  readonly maxAckBytes?: number;
}

/**
 * The outcome of one send: the three ACK dispositions, plus `ambiguous` when the bytes were written but no
 * usable answer came back (the receiver may have stored the message: settle by resending the same MSH-10
 * later, never by a blind resend now).
 */
export type SendOutcome = AckDisposition | 'ambiguous';

/** Why a send ended the way it did. */
export type SendReason =
  /** an ACK for our MSH-10 with a code in the table */
  | 'ack'
  /** an ACK for our MSH-10 whose MSA-1 is outside table 0008: ambiguous */
  | 'ack-unknown-code'
  /** no ACK for our MSH-10 within ackTimeoutMs: ambiguous */
  | 'ack-timeout'
  /** the connection closed or reset after the bytes were written: ambiguous */
  | 'connection-lost'
  /** the receiver sent something that is not MLLP (an oversized frame): ambiguous */
  | 'protocol-error'
  /** TCP connect failed (refused, unreachable, name not found): nothing written, retry */
  | 'connect-failed'
  /** no connection within connectTimeoutMs: nothing written, retry */
  | 'connect-timeout'
  /** TLS handshake or certificate verification failed: nothing written, retry */
  | 'tls-failed';

/** What one send returns. `rawAck` may carry PHI the receiver echoed: store it, do not log it. */
export interface AckResult {
  readonly outcome: SendOutcome;
  readonly reason: SendReason;
  /** The MSH-10 we sent. */
  readonly controlId: string;
  /** Whether any byte of the message was handed to the socket (false means it cannot have arrived). */
  readonly written: boolean;
  /** MSA-1 as received, upper-cased. */
  readonly ackCode?: string;
  /** MSA-2 (equal to controlId whenever ackCode is present). */
  readonly ackControlId?: string;
  /** MSA-3 text, as received. */
  readonly ackText?: string;
  /** ERR segments, as received. */
  readonly errors?: readonly AckError[];
  /** The whole ACK message text (segments separated by \r), for the ledger. */
  readonly rawAck?: string;
  /** Node's error code when the transport failed (ECONNREFUSED, ECONNRESET, DEPTH_ZERO_SELF_SIGNED_CERT…). */
  readonly errorCode?: string;
  readonly timings: SendTimings;
}

/** Timings of one send, in ms (monotonic clock), with the wall-clock start. */
export interface SendTimings {
  /** ISO 8601 time the send started. */
  readonly startedAt: string;
  /** Connect (and TLS handshake) time, when this send opened the connection. */
  readonly connectMs?: number;
  /** From writing the message to its ACK, timeout or loss; present when written. */
  readonly waitMs?: number;
  readonly totalMs: number;
}

/** One log entry of the MLLP client. Ids and codes only: never message text. */
export type MllpLogEntry =
  | {
      readonly level: 'warn';
      readonly event: 'mllp.ack.unmatched';
      readonly controlId: string;
      readonly ackControlId: string;
      readonly ackCode: string;
    }
  | {
      readonly level: 'warn';
      readonly event: 'mllp.ack.unsolicited';
      readonly ackControlId: string;
      readonly ackCode: string;
    }
  | {
      readonly level: 'warn';
      readonly event: 'mllp.ack.unparseable';
      readonly controlId?: string;
      readonly bytes: number;
    }
  | {
      readonly level: 'warn';
      readonly event: 'mllp.ack.unknown-code';
      readonly controlId: string;
      readonly ackCode: string;
    }
  | {
      readonly level: 'warn';
      readonly event: 'mllp.frame.too-large';
      readonly controlId?: string;
      readonly maxBytes: number;
    }
  | {
      readonly level: 'info';
      readonly event: 'mllp.connected';
      readonly host: string;
      readonly port: number;
      readonly tls: boolean;
      readonly ms: number;
    }
  | {
      readonly level: 'info';
      readonly event: 'mllp.closed';
      readonly host: string;
      readonly port: number;
      readonly errorCode?: string;
    };

/** The injected logger: a callback, so the service can route entries to its own structured logger. */
export type MllpLogger = (entry: MllpLogEntry) => void;

/** Anything that sends one message and classifies the answer (the client, or a stub in tests). */
export interface MllpSender {
  send(message: string, controlId: string): Promise<AckResult>;
}
