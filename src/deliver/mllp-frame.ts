/**
 * MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 1): each message travels as
 * `0x0B <message bytes> 0x1C 0x0D`. Messages are UTF-8 on the wire.
 *
 * Our own codec rather than @medplum/hl7's `Hl7Connection` for the client side: `Hl7Connection.sendAndWait`
 * cannot tell whether the bytes were handed to the socket, never settles when the peer closes, and parses
 * every frame inside its `data` handler, so one malformed frame drops whatever else was buffered. The test
 * receiver does use `Hl7Connection`, which checks this codec against an independent implementation.
 */
import { ScribeError } from '../errors.ts';

/** Start block: vertical tab. */
export const MLLP_START = 0x0b;
/** End block: file separator, always followed by a carriage return. */
export const MLLP_END = 0x1c;
/** The carriage return that closes a frame (and separates segments inside it). */
export const MLLP_CR = 0x0d;

/** Default cap on one inbound frame: an ACK is a few hundred bytes; 1 MiB bounds a misbehaving peer. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;

/** Wraps one ER7 message in an MLLP frame. The caller ensures the text holds no 0x0B or 0x1C. */
export function encodeFrame(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  const frame = Buffer.allocUnsafe(body.length + 3);
  frame[0] = MLLP_START;
  body.copy(frame, 1);
  frame[body.length + 1] = MLLP_END;
  frame[body.length + 2] = MLLP_CR;
  return frame;
}

/** True when the text can be framed: the block characters would end the frame early. */
export function isFrameable(message: string): boolean {
  return !message.includes('\x0b') && !message.includes('\x1c');
}

/**
 * A streaming decoder: feed it socket chunks, get back the text of every completed frame. Bytes outside a
 * frame (before 0x0B) are skipped, as receivers commonly do. Text is decoded only once a frame is complete,
 * so a UTF-8 character split across chunks survives.
 */
export class MllpFrameDecoder {
  readonly maxFrameBytes: number;
  #pending: Buffer = Buffer.alloc(0);
  #skipped = 0;

  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes discarded so far because they arrived outside a frame. */
  get skippedBytes(): number {
    return this.#skipped;
  }

  /**
   * Adds a chunk; returns the messages it completed (possibly none, possibly several).
   * Throws a ScribeError (disposition retry) when an unfinished frame outgrows `maxFrameBytes`.
   */
  push(chunk: Uint8Array): string[] {
    let buf = this.#pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#pending, chunk]);
    const out: string[] = [];
    for (;;) {
      const start = buf.indexOf(MLLP_START);
      if (start < 0) {
        this.#skipped += buf.length;
        buf = Buffer.alloc(0);
        break;
      }
      this.#skipped += start;
      const end = findEnd(buf, start + 1);
      if (end < 0) {
        buf = buf.subarray(start);
        if (buf.length > this.maxFrameBytes + 3) {
          this.#pending = Buffer.alloc(0);
          throw new ScribeError(
            'MLLP_PROTOCOL',
            `an MLLP frame from the receiver exceeded ${this.maxFrameBytes} bytes`,
            {
              disposition: 'retry',
              hint: 'The receiver is not speaking MLLP (or sent an oversized answer); check the destination host and port.',
            },
          );
        }
        break;
      }
      out.push(buf.toString('utf8', start + 1, end));
      buf = buf.subarray(end + 2);
    }
    // Copy so the retained tail does not pin a large socket buffer.
    this.#pending = Buffer.from(buf);
    return out;
  }
}

/** Index of the 0x1C of the first 0x1C 0x0D pair at or after `from`, or -1. */
function findEnd(buf: Buffer, from: number): number {
  let i = buf.indexOf(MLLP_END, from);
  while (i >= 0 && i + 1 < buf.length) {
    if (buf[i + 1] === MLLP_CR) return i;
    i = buf.indexOf(MLLP_END, i + 1);
  }
  return -1;
}
