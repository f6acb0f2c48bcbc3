/**
 * A scripted MLLP receiver for the demo and the integration tests: a real `net.Server` (or `tls.Server`) on 127.0.0.1 with
 * @medplum/hl7's `Hl7Connection` doing the framing, so the client's own codec is checked against an
 * independent one. (Not `Hl7Server`: it binds every interface.)
 *
 * For each received message a script returns the actions to perform, in order: answer with an ACK code (to
 * the received MSH-10, or to another control id), wait, stay silent, close, or reset the connection.
 */
import net from 'node:net';
import tls from 'node:tls';
import { type AckCode, type Hl7Message, Hl7Segment } from '@medplum/core';
import { Hl7Connection } from '@medplum/hl7';

/** One thing the receiver does in answer to a message. */
export type ServerAction =
  /** Answer with this code; MSA-2 is the received MSH-10 unless `controlId` says otherwise. */
  | { readonly ack: AckCode; readonly controlId?: string; readonly text?: string; readonly err?: string }
  /** Wait this long before the next action. */
  | { readonly delayMs: number }
  /** Close the connection gracefully (FIN). */
  | { readonly close: true }
  /** Reset the connection (RST). */
  | { readonly reset: true };

/** Actions for the message at `index` (0-based, across all connections). No actions: no answer at all. */
export type Script = (message: ReceivedMessage, index: number) => readonly ServerAction[];

/** A message as the receiver saw it. */
export interface ReceivedMessage {
  /** The exact text inside the frame. */
  readonly raw: string;
  /** Its MSH-10. */
  readonly controlId: string;
  /** Which connection (0-based, in accept order) carried it. */
  readonly connection: number;
  /** performance.now() when it arrived, and when its first ACK left (if one did). */
  readonly receivedAt: number;
  ackedAt?: number;
}

export interface MllpTestServer {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Every message received, in order. `received.length` is the number of sends the receiver saw. */
  readonly received: ReceivedMessage[];
  /** Connections accepted so far. */
  readonly connections: () => number;
  /** Connections open now. */
  readonly openConnections: () => number;
  setScript(script: Script | readonly (readonly ServerAction[])[]): void;
  /** Closes every open connection gracefully (the receiver hangs up between messages). */
  dropConnections(): Promise<void>;
  close(): Promise<void>;
}

/** Answer AA to everything. */
export const ACK_ALL: Script = () => [{ ack: 'AA' }];

/** Starts a receiver on 127.0.0.1 with an ephemeral port. */
export async function startMllpServer(
  options: {
    script?: Script | readonly (readonly ServerAction[])[];
    tls?: { key: string; cert: string };
  } = {},
): Promise<MllpTestServer> {
  let script = toScript(options.script ?? ACK_ALL);
  const received: ReceivedMessage[] = [];
  const sockets = new Set<net.Socket>();
  let accepted = 0;

  const onSocket = (socket: net.Socket): void => {
    const connection = accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const conn = new Hl7Connection(socket);
    conn.addEventListener('error', () => {});
    // Hl7Connection dispatches messages as they are decoded; run each script after the previous one.
    let chain = Promise.resolve();
    conn.addEventListener('message', (event) => {
      const message = event.message;
      const entry: ReceivedMessage = {
        raw: message.toString(),
        controlId: message.getSegment('MSH')?.getField(10)?.toString() ?? '',
        connection,
        receivedAt: performance.now(),
      };
      received.push(entry);
      const actions = script(entry, received.length - 1);
      chain = chain.then(() => perform(conn, socket, message, entry, actions));
    });
  };

  const server = options.tls
    ? tls.createServer({ key: options.tls.key, cert: options.tls.cert }, onSocket)
    : net.createServer(onSocket);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    host: '127.0.0.1',
    port,
    received,
    connections: () => accepted,
    openConnections: () => sockets.size,
    setScript: (s) => {
      script = toScript(s);
    },
    dropConnections: async () => {
      await Promise.all([...sockets].map((s) => endSocket(s)));
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function perform(
  conn: Hl7Connection,
  socket: net.Socket,
  message: Hl7Message,
  entry: ReceivedMessage,
  actions: readonly ServerAction[],
): Promise<void> {
  for (const action of actions) {
    if (socket.destroyed) return;
    if ('delayMs' in action) {
      await new Promise((r) => setTimeout(r, action.delayMs));
    } else if ('close' in action) {
      await endSocket(socket);
    } else if ('reset' in action) {
      socket.resetAndDestroy();
    } else {
      conn.send(buildAck(message, action));
      entry.ackedAt ??= performance.now();
    }
  }
}

/** An ACK built by @medplum/core, with MSA-2 / MSA-3 replaced when the action asks. */
function buildAck(message: Hl7Message, action: Extract<ServerAction, { ack: AckCode }>): Hl7Message {
  const errSegment = action.err === undefined ? undefined : Hl7Segment.parse(action.err);
  const ack = message.buildAck({ ackCode: action.ack, ...(errSegment ? { errSegment } : {}) });
  const msa = ack.getSegment('MSA');
  if (msa && action.controlId !== undefined) msa.setField(2, action.controlId);
  if (msa && action.text !== undefined) msa.setField(3, action.text);
  return ack;
}

function endSocket(socket: net.Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.end();
    // A peer that never answers our FIN must not hold the test.
    setTimeout(() => socket.destroy(), 500).unref();
  });
}

function toScript(s: Script | readonly (readonly ServerAction[])[]): Script {
  if (typeof s === 'function') return s;
  return (_m, i) => s[i] ?? [{ ack: 'AA' }];
}
