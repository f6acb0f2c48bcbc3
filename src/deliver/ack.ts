/**
 * Reading an HL7 v2 ACK (MSH, MSA, [ERR]) and classifying its MSA-1 code with the delivery table of
 * PRODUCT.md §5, which a destination may override for EHRs that use the codes differently.
 */
import { Hl7Message } from '@medplum/core';

/** The acknowledgement codes of HL7 table 0008 (original mode AA/AE/AR, enhanced mode CA/CE/CR). */
export const ACK_CODES = ['AA', 'AE', 'AR', 'CA', 'CE', 'CR'] as const;
export type AckCode = (typeof ACK_CODES)[number];

/** What one answered send means for the delivery: done, never resend, or try again later. */
export type AckDisposition = 'delivered' | 'rejected' | 'retry';

/** A complete code → disposition table. */
export type AckTable = Readonly<Record<AckCode, AckDisposition>>;

/** A destination's partial override of the default table (`ackCodes` in its config). */
export type AckTableOverrides = Partial<Record<AckCode, AckDisposition>>;

/**
 * The default table (PRODUCT.md §5). AE and CR say the message itself is wrong or unsupported, so a resend
 * cannot help; AR and CE say the receiver could not process or store it now.
 */
export const DEFAULT_ACK_TABLE: AckTable = Object.freeze({
  AA: 'delivered',
  CA: 'delivered',
  AE: 'rejected',
  CR: 'rejected',
  AR: 'retry',
  CE: 'retry',
});

/** The default table with a destination's overrides applied. */
export function ackTable(overrides: AckTableOverrides = {}): AckTable {
  return Object.freeze({ ...DEFAULT_ACK_TABLE, ...overrides });
}

/** True for one of the six codes of table 0008. */
export function isAckCode(code: string): code is AckCode {
  return (ACK_CODES as readonly string[]).includes(code);
}

/**
 * One ERR segment, each member the field's text exactly as received (HL7 escape sequences not decoded).
 * Diagnostic and user-message text may quote the message, so treat them as PHI when logging.
 */
export interface AckError {
  /** ERR-2 error location (segment^sequence^field^…). */
  readonly location?: string;
  /** ERR-3 HL7 error code (table 0357), e.g. `207^Application internal error^HL70357`. */
  readonly hl7ErrorCode?: string;
  /** ERR-4 severity: E error, W warning, I information. */
  readonly severity?: string;
  /** ERR-5 application error code. */
  readonly applicationErrorCode?: string;
  /** ERR-7 diagnostic information. */
  readonly diagnostic?: string;
  /** ERR-8 user message. */
  readonly userMessage?: string;
}

/** The parts of an ACK that delivery needs. Values are as received (escape sequences not decoded). */
export interface ParsedAck {
  /** MSA-1, upper-cased; may be a code outside table 0008 if the receiver sent one. */
  readonly code: string;
  /** MSA-2: the MSH-10 of the message this acknowledges. */
  readonly controlId: string;
  /** MSA-3 text message, if any (kept by v2.5.1 for backward compatibility only). */
  readonly text?: string;
  readonly errors: readonly AckError[];
}

/** Parses an ACK; undefined when the text is not an HL7 message with an MSA segment. */
export function parseAck(text: string): ParsedAck | undefined {
  let msg: Hl7Message;
  try {
    msg = Hl7Message.parse(text);
  } catch {
    return undefined;
  }
  const msa = msg.getSegment('MSA');
  if (!msa) return undefined;
  const field = (n: number): string | undefined => msa.getField(n)?.toString() || undefined;
  const errors = msg.getAllSegments('ERR').map((err): AckError => {
    const f = (n: number): string | undefined => err.getField(n)?.toString() || undefined;
    return dropUndefined({
      location: f(2),
      hl7ErrorCode: f(3),
      severity: f(4),
      applicationErrorCode: f(5),
      diagnostic: f(7),
      userMessage: f(8),
    });
  });
  const text3 = field(3);
  return {
    code: (field(1) ?? '').toUpperCase(),
    controlId: field(2) ?? '',
    ...(text3 === undefined ? {} : { text: text3 }),
    errors,
  };
}

/** The disposition of an ACK code under a table; undefined for a code outside table 0008. */
export function classifyAck(code: string, table: AckTable = DEFAULT_ACK_TABLE): AckDisposition | undefined {
  return isAckCode(code) ? table[code] : undefined;
}

// exactOptionalPropertyTypes-friendly: omit members whose value is undefined.
function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
