/**
 * The MLLP client of one destination: a persistent connection reused across sends, at most one message
 * outstanding on it, reconnection when it closes, optional TLS, and each answer classified with the ACK
 * table of PRODUCT.md §5 (or the destination's override).
 *
 * Contract of `send`: it never throws for anything the network or the receiver does; the result says
 * `delivered`, `rejected`, `retry` (nothing was written) or `ambiguous` (written, no usable answer). It throws
 * a ScribeError only for caller defects (MSH-10 mismatch, unframeable text, a closed client).
 */
import type net from 'node:net';
import { setImmediate } from 'node:timers/promises';
import { ScribeError } from '../errors.ts';
import { type AckTable, ackTable, classifyAck, type ParsedAck, parseAck } from './ack.ts';
import { encodeFrame, isFrameable, MllpFrameDecoder } from './mllp-frame.ts';
import { errorCode, openSocket } from './mllp-socket.ts';
import type { AckResult, MllpClientOptions, MllpLogger, MllpSender, SendTimings } from './mllp-types.ts';

export type * from './mllp-types.ts';

/** Default connect (plus handshake) deadline, ms. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Default ACK deadline, ms: generous, because an EHR may commit to disk before it answers. */
export const DEFAULT_ACK_TIMEOUT_MS = 30_000;
/** TCP keep-alive probe delay, ms: finds a silently dropped idle connection before the next send needs it. */
const KEEPALIVE_MS = 60_000;

/** How a wait for the ACK ended. */
type Settlement =
  | { readonly kind: 'ack'; readonly raw: string; readonly ack: ParsedAck }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'lost'; readonly errorCode: string | undefined }
  | { readonly kind: 'protocol' };

interface Waiter {
  readonly controlId: string;
  readonly settle: (s: Settlement) => void;
}

interface Connection {
  readonly socket: net.Socket;
  readonly decoder: MllpFrameDecoder;
  waiter: Waiter | undefined;
  errorCode: string | undefined;
}

/** An MLLP client for one destination. Create one per destination and reuse it; `close()` at shutdown. */
export class MllpClient implements MllpSender {
  readonly host: string;
  readonly port: number;
  readonly #options: MllpClientOptions;
  readonly #table: AckTable;
  readonly #log: MllpLogger;
  #conn: Connection | undefined;
  // Sends run one after another: MLLP has no request ids beyond MSA-2, and receivers answer in order.
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: MllpClientOptions) {
    this.#options = options;
    this.host = options.host;
    this.port = options.port;
    this.#table = ackTable(options.ackCodes);
    this.#log = options.logger ?? (() => {});
  }

  /** The effective ACK table (defaults plus this destination's overrides). */
  get table(): AckTable {
    return this.#table;
  }

  /**
   * Sends one ER7 message (segments separated by \r) and waits for the ACK whose MSA-2 is `controlId`.
   * Concurrent calls are queued: one message is outstanding per connection.
   */
  async send(message: string, controlId: string): Promise<AckResult> {
    checkMessage(message, controlId);
    const run = this.#tail.then(() => this.#sendNow(message, controlId));
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /** Closes the connection. A send in flight ends `ambiguous`; later sends throw. */
  async close(): Promise<void> {
    this.#closed = true;
    const conn = this.#conn;
    this.#conn = undefined;
    if (!conn || conn.socket.closed) return;
    await new Promise<void>((resolve) => {
      conn.socket.once('close', () => resolve());
      conn.socket.destroy();
    });
  }

  async #sendNow(message: string, controlId: string): Promise<AckResult> {
    if (this.#closed) throw closedError();
    const t0 = performance.now();
    const startedAt = new Date().toISOString();
    const timings = (extra: Partial<SendTimings>): SendTimings => ({
      startedAt,
      ...extra,
      totalMs: performance.now() - t0,
    });

    if (this.#conn) {
      // Receivers that answer and then hang up send the FIN right behind the ACK. Two turns of the event loop
      // (measured: one is not enough when the receiver's shutdown waits for its write to flush) let that
      // close land before we reuse the socket; otherwise the next message would be written into a closing
      // connection and end ambiguous for no reason. `keepConnection: false` removes the race entirely.
      await setImmediate();
      await setImmediate();
    }
    let conn = this.#conn;
    let connectMs: number | undefined;
    if (conn?.socket.readyState !== 'open') {
      // A connection the receiver closed (idle timeout, restart) is replaced before anything is written.
      conn?.socket.destroy();
      const opened = await openSocket({
        host: this.host,
        port: this.port,
        tls: this.#options.tls,
        connectTimeoutMs: this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      });
      if (!opened.ok) {
        return {
          outcome: 'retry',
          reason: opened.reason,
          controlId,
          written: false,
          ...(opened.errorCode === undefined ? {} : { errorCode: opened.errorCode }),
          timings: timings({}),
        };
      }
      connectMs = performance.now() - t0;
      conn = this.#adopt(opened.socket, connectMs);
      if (this.#closed) {
        conn.socket.destroy();
        throw closedError();
      }
    }
    const connected = conn;
    const connectTiming = connectMs === undefined ? {} : { connectMs };

    const w0 = performance.now();
    const settlement = await new Promise<Settlement>((resolve) => {
      let done = false;
      const settle = (s: Settlement): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        connected.waiter = undefined;
        resolve(s);
      };
      const timer = setTimeout(() => {
        settle({ kind: 'timeout' });
        // The receiver may still answer this message later; a fresh connection keeps that late ACK from
        // being read as the answer to the next one.
        connected.socket.destroy();
      }, this.#options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS);
      connected.waiter = { controlId, settle };
      connected.socket.write(encodeFrame(message));
    });
    const waited = { ...connectTiming, waitMs: performance.now() - w0 };
    if (this.#options.keepConnection === false) connected.socket.destroy();

    switch (settlement.kind) {
      case 'timeout':
        return {
          outcome: 'ambiguous',
          reason: 'ack-timeout',
          controlId,
          written: true,
          timings: timings(waited),
        };
      case 'protocol':
        return {
          outcome: 'ambiguous',
          reason: 'protocol-error',
          controlId,
          written: true,
          timings: timings(waited),
        };
      case 'lost':
        return {
          outcome: 'ambiguous',
          reason: 'connection-lost',
          controlId,
          written: true,
          ...(settlement.errorCode === undefined ? {} : { errorCode: settlement.errorCode }),
          timings: timings(waited),
        };
      case 'ack':
        return this.#ackResult(settlement, controlId, timings(waited));
    }
  }

  #ackResult(s: { raw: string; ack: ParsedAck }, controlId: string, timings: SendTimings): AckResult {
    const { ack } = s;
    const disposition = classifyAck(ack.code, this.#table);
    if (disposition === undefined) {
      this.#log({ level: 'warn', event: 'mllp.ack.unknown-code', controlId, ackCode: clip(ack.code) });
    }
    return {
      outcome: disposition ?? 'ambiguous',
      reason: disposition === undefined ? 'ack-unknown-code' : 'ack',
      controlId,
      written: true,
      ackCode: ack.code,
      ackControlId: ack.controlId,
      ...(ack.text === undefined ? {} : { ackText: ack.text }),
      ...(ack.errors.length === 0 ? {} : { errors: ack.errors }),
      rawAck: s.raw,
      timings,
    };
  }

  /** Wires a fresh socket into a Connection and makes it the current one. */
  #adopt(socket: net.Socket, ms: number): Connection {
    const conn: Connection = {
      socket,
      decoder: new MllpFrameDecoder(this.#options.maxAckBytes),
      waiter: undefined,
      errorCode: undefined,
    };
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.on('data', (chunk: Buffer) => this.#onData(conn, chunk));
    // 'close' always follows 'error'; remember the code so the waiter learns why.
    socket.on('error', (err) => {
      conn.errorCode ??= errorCode(err);
    });
    socket.on('close', () => {
      if (this.#conn === conn) this.#conn = undefined;
      conn.waiter?.settle({ kind: 'lost', errorCode: conn.errorCode });
      this.#log({
        level: 'info',
        event: 'mllp.closed',
        host: this.host,
        port: this.port,
        ...(conn.errorCode === undefined ? {} : { errorCode: conn.errorCode }),
      });
    });
    this.#conn = conn;
    this.#log({
      level: 'info',
      event: 'mllp.connected',
      host: this.host,
      port: this.port,
      tls: this.#options.tls !== undefined,
      ms,
    });
    return conn;
  }

  #onData(conn: Connection, chunk: Buffer): void {
    let frames: string[];
    try {
      frames = conn.decoder.push(chunk);
    } catch {
      const controlId = conn.waiter?.controlId;
      this.#log({
        level: 'warn',
        event: 'mllp.frame.too-large',
        ...(controlId === undefined ? {} : { controlId }),
        maxBytes: conn.decoder.maxFrameBytes,
      });
      conn.waiter?.settle({ kind: 'protocol' });
      conn.socket.destroy();
      return;
    }
    for (const raw of frames) this.#onFrame(conn, raw);
  }

  #onFrame(conn: Connection, raw: string): void {
    const waiter = conn.waiter;
    const ack = parseAck(raw);
    if (!ack) {
      this.#log({
        level: 'warn',
        event: 'mllp.ack.unparseable',
        ...(waiter ? { controlId: waiter.controlId } : {}),
        bytes: Buffer.byteLength(raw),
      });
      return;
    }
    if (!waiter) {
      this.#log({
        level: 'warn',
        event: 'mllp.ack.unsolicited',
        ackControlId: clip(ack.controlId),
        ackCode: clip(ack.code),
      });
      return;
    }
    if (ack.controlId !== waiter.controlId) {
      // An acknowledgement of something else (a late ACK, a receiver bug): discard it and keep waiting.
      this.#log({
        level: 'warn',
        event: 'mllp.ack.unmatched',
        controlId: waiter.controlId,
        ackControlId: clip(ack.controlId),
        ackCode: clip(ack.code),
      });
      return;
    }
    waiter.settle({ kind: 'ack', raw, ack });
  }
}

/** MSH-10 of an ER7 message (the text between the 9th and 10th field separators of the first segment). */
export function messageControlId(message: string): string | undefined {
  if (!message.startsWith('MSH') || message.length < 8) return undefined;
  const sep = message.charAt(3);
  const end = message.indexOf('\r');
  const msh = end < 0 ? message : message.slice(0, end);
  return msh.split(sep)[9];
}

function checkMessage(message: string, controlId: string): void {
  if (controlId === '' || messageControlId(message) !== controlId) {
    throw new ScribeError(
      'INTERNAL',
      'the controlId given to the MLLP client is not the MSH-10 of the message',
      {
        where: 'MSH-10',
      },
    );
  }
  if (!isFrameable(message)) {
    throw new ScribeError('INTERNAL', 'the HL7 message contains an MLLP block character (0x0B or 0x1C)', {
      where: `MSH-10 ${controlId}`,
    });
  }
}

function closedError(): ScribeError {
  return new ScribeError('SHUTTING_DOWN', 'the MLLP client was closed before this message was written', {
    disposition: 'retry',
    hint: 'Nothing was sent; the delivery is retried by the next worker.',
  });
}

/** Bounds what a receiver can make us log: a code or id, never a paragraph. */
function clip(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}
