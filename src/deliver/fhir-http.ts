/**
 * One HTTP exchange with an EHR, on node:http / node:https with a keep-alive agent per destination.
 *
 * Why not fetch or fhir-kit-client: delivery must know whether the request was fully written before a
 * failure (a refused connection is safe to retry; a reset after the body left is ambiguous), must send
 * exactly the recorded bytes, and needs per-destination TLS (ca, client certificate). Node's fetch takes TLS
 * options only through an undici `Agent`, and undici is not a dependency of this project (Node bundles it
 * without exporting it); fhir-kit-client 2.0.3 is fetch underneath (its `agent` option is ignored by fetch),
 * re-serialises bodies, throws plain objects that embed request headers, and its `debug` logging prints
 * Authorization headers, URLs with identifier values and response bodies whenever DEBUG matches.
 * `ClientRequest` gives all of this directly: 'finish' says the body was handed to the socket.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { guardedLookup } from '../config/egress.ts';
import type { FhirTlsOptions } from './fhir-types.ts';

/** Largest answer read, bytes: a transaction response with `return=representation` of a long note is ~2 MB. */
const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
/** Sockets per destination: bounds parallel requests to one EHR (the service's concurrency limit is lower). */
const MAX_SOCKETS = 32;

export interface HttpRequestSpec {
  readonly method: 'GET' | 'POST' | 'PUT';
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  /** Deadline of the whole exchange (connect, write, answer), ms. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

/** How an exchange ended: an answer (any status), or a transport failure and how far the request got. */
export type HttpExchange =
  | {
      readonly kind: 'response';
      readonly status: number;
      readonly headers: IncomingHttpHeaders;
      readonly body: string;
      readonly ms: number;
    }
  | {
      readonly kind: 'failed';
      /** A connection (or a reused keep-alive socket) was in hand. */
      readonly connected: boolean;
      /** The whole request was handed to the socket: the server may have acted on it. */
      readonly written: boolean;
      readonly errorCode: string;
      readonly ms: number;
    };

/** The HTTP side of one destination: keep-alive agents for http and https, closed together. */
export class HttpTransport {
  readonly #http: http.Agent;
  readonly #https: https.Agent;
  /** For the one resend after a stale keep-alive socket (see `exchange`): always a new connection. */
  readonly #httpFresh: http.Agent;
  readonly #httpsFresh: https.Agent;

  constructor(tls: FhirTlsOptions = {}) {
    const tlsOptions = {
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.cert ? { cert: tls.cert } : {}),
      ...(tls.key ? { key: tls.key } : {}),
      ...(tls.servername ? { servername: tls.servername } : {}),
      rejectUnauthorized: tls.rejectUnauthorized ?? true,
    };
    // Every connection resolves its host through the egress guard (no link-local / metadata addresses).
    const common = { maxSockets: MAX_SOCKETS, lookup: guardedLookup };
    this.#http = new http.Agent({ keepAlive: true, ...common });
    this.#https = new https.Agent({ keepAlive: true, ...common, ...tlsOptions });
    this.#httpFresh = new http.Agent({ keepAlive: false, ...common });
    this.#httpsFresh = new https.Agent({ keepAlive: false, ...common, ...tlsOptions });
  }

  /**
   * Runs one exchange. Never throws: every transport problem is a `failed` result.
   *
   * A server may close an idle keep-alive connection at any time (RFC 9112 §9.6) — Node's own server after 5 s —
   * and the close can cross a request the client just wrote on it: the request then fails with ECONNRESET (or
   * EPIPE) before any answer, although the server never read it. Node's agent retires idle sockets a second
   * before the server's announced `Keep-Alive: timeout`, but a busy event loop can still lose that race. So,
   * as RFC 9110 §9.2.2 allows, an idempotent request (GET, PUT, or a conditional create: POST with
   * If-None-Exist, which finds the first one if it was applied) that failed that way on a REUSED socket, with
   * no byte of an answer, is sent once more on a new connection within the same deadline. Anything else —
   * a fresh connection, another error, a plain POST — is answered as it failed (the caller decides, e.g.
   * ambiguous → read-back).
   */
  async exchange(spec: HttpRequestSpec): Promise<HttpExchange> {
    const first = await this.#exchangeOnce(spec, spec.timeoutMs);
    if (!first.staleSocket || !idempotent(spec) || spec.signal?.aborted || first.ms >= spec.timeoutMs)
      return first.exchange;
    const again = await this.#exchangeOnce(spec, spec.timeoutMs - first.ms, true);
    return { ...again.exchange, ms: first.ms + again.exchange.ms };
  }

  #exchangeOnce(
    spec: HttpRequestSpec,
    timeoutMs: number,
    fresh = false,
  ): Promise<{ exchange: HttpExchange; staleSocket: boolean; ms: number }> {
    const t0 = performance.now();
    const elapsed = () => Math.round(performance.now() - t0);
    let reused = false;
    let answered = false;
    return new Promise<HttpExchange>((resolve) => {
      let connected = false;
      let written = false;
      let settled = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let req: http.ClientRequest | undefined;
      const onAbort = () => req?.destroy(codeError('ABORT_ERR'));
      const finish = (x: HttpExchange) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        spec.signal?.removeEventListener('abort', onAbort);
        resolve(x);
      };
      const fail = (e: unknown) => {
        const code = errorCode(e);
        // With TLS 1.3 the server checks our certificate after the client has finished its handshake, so a
        // refused certificate arrives as an alert after the request was written. No HTTP request is
        // processed on a connection whose handshake failed: it did not arrive.
        const refused = /^ERR_SSL_.*ALERT/.test(code);
        finish({
          kind: 'failed',
          connected: connected && !refused,
          written: written && !refused,
          errorCode: code,
          ms: elapsed(),
        });
      };
      const isHttps = spec.url.protocol === 'https:';
      const body = spec.body === undefined ? undefined : Buffer.from(spec.body, 'utf8');
      try {
        req = (isHttps ? https : http).request(spec.url, {
          method: spec.method,
          agent: isHttps ? (fresh ? this.#httpsFresh : this.#https) : fresh ? this.#httpFresh : this.#http,
          headers: { ...spec.headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        });
      } catch (e) {
        fail(e);
        return;
      }
      const r = req;
      timer = setTimeout(() => r.destroy(codeError('ETIMEDOUT')), timeoutMs);
      if (spec.signal?.aborted) onAbort();
      spec.signal?.addEventListener('abort', onAbort, { once: true });
      req.on('socket', (socket) => {
        reused = r.reusedSocket;
        if (r.reusedSocket || !socket.connecting) connected = true;
        else socket.once(isHttps ? 'secureConnect' : 'connect', () => (connected = true));
      });
      req.on('finish', () => (written = true));
      req.on('error', fail);
      req.on('response', (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) r.destroy(codeError('ERESPONSETOOLARGE'));
          else chunks.push(c);
        });
        res.on('error', fail);
        res.on('aborted', () => fail(codeError('ECONNRESET')));
        res.on('end', () =>
          finish({
            kind: 'response',
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            ms: elapsed(),
          }),
        );
      });
      req.end(body);
    }).then((exchange) => ({
      exchange,
      staleSocket:
        exchange.kind === 'failed' &&
        reused &&
        !answered &&
        (exchange.errorCode === 'ECONNRESET' || exchange.errorCode === 'EPIPE'),
      ms: exchange.ms,
    }));
  }

  /** Closes idle and active sockets. */
  close(): void {
    for (const agent of [this.#http, this.#https, this.#httpFresh, this.#httpsFresh]) agent.destroy();
  }
}

/** Safe to send twice: the second finds what the first did (RFC 9110 §9.2.2; FHIR conditional create). */
function idempotent(spec: HttpRequestSpec): boolean {
  if (spec.method === 'GET' || spec.method === 'PUT') return true;
  return Object.keys(spec.headers).some((h) => h.toLowerCase() === 'if-none-exist');
}

function codeError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

/** Node's error code (ECONNREFUSED, ECONNRESET, CERT_HAS_EXPIRED…), never the message (it may hold a URL). */
function errorCode(e: unknown): string {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'EUNKNOWN';
}
