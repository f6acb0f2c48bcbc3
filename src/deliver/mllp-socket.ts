/**
 * Opening the TCP or TLS connection of an MLLP destination, with a deadline that covers the TCP connect and
 * the TLS handshake together. Failures are returned, not thrown: none of them can have delivered anything.
 */
import net from 'node:net';
import tls from 'node:tls';
import { guardedLookup } from '../config/egress.ts';
import type { MllpTlsOptions, SendReason } from './mllp-types.ts';

/** Where and how to connect. */
export interface OpenOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: MllpTlsOptions | undefined;
  readonly connectTimeoutMs: number;
}

/** A failed connection attempt: nothing was written. */
export interface OpenFailure {
  readonly ok: false;
  readonly reason: Extract<SendReason, 'connect-failed' | 'connect-timeout' | 'tls-failed'>;
  readonly errorCode?: string;
}

/** The open socket, or why there is none. */
export type OpenResult = { readonly ok: true; readonly socket: net.Socket } | OpenFailure;

/** Connects; resolves once the socket can carry a message (after the TLS handshake when TLS is on). */
export function openSocket(o: OpenOptions): Promise<OpenResult> {
  return new Promise((resolve) => {
    const socket = o.tls
      ? tls.connect({
          host: o.host,
          port: o.port,
          lookup: guardedLookup,
          ...(o.tls.ca === undefined ? {} : { ca: o.tls.ca }),
          ...(o.tls.cert === undefined ? {} : { cert: o.tls.cert }),
          ...(o.tls.key === undefined ? {} : { key: o.tls.key }),
          ...(o.tls.servername === undefined ? {} : { servername: o.tls.servername }),
          rejectUnauthorized: o.tls.rejectUnauthorized ?? true,
        })
      : net.connect({ host: o.host, port: o.port, lookup: guardedLookup });
    // Set once TCP is up: an error after that, before the handshake completes, is a TLS failure.
    let tcpUp = false;
    let settled = false;

    const finish = (result: OpenResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('connect', onTcp);
      socket.off('secureConnect', onReady);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (!result.ok) {
        // A late error from a socket we are abandoning must not become an uncaught 'error' event.
        socket.on('error', () => {});
        socket.destroy();
      }
      resolve(result);
    };
    const onTcp = (): void => {
      tcpUp = true;
      if (!o.tls) onReady();
    };
    const onReady = (): void => finish({ ok: true, socket });
    const failReason = (): OpenFailure['reason'] => (o.tls && tcpUp ? 'tls-failed' : 'connect-failed');
    const onError = (err: Error): void => {
      const code = errorCode(err);
      finish({ ok: false, reason: failReason(), ...(code === undefined ? {} : { errorCode: code }) });
    };
    const onClose = (): void => finish({ ok: false, reason: failReason() });
    const timer = setTimeout(() => finish({ ok: false, reason: 'connect-timeout' }), o.connectTimeoutMs);

    socket.once('connect', onTcp);
    if (o.tls) socket.once('secureConnect', onReady);
    socket.on('error', onError);
    socket.once('close', onClose);
  });
}

/** Node's error code of a socket error (ECONNRESET, CERT_HAS_EXPIRED…), which carries no PHI. */
export function errorCode(err: unknown): string | undefined {
  if (err instanceof AggregateError) return errorCode(err.errors[0]);
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
