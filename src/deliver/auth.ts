/**
 * Credentials for a FHIR destination: none, a static bearer token, OAuth2 client credentials (secret by
 * Basic or form), or SMART Backend Services (a private_key_jwt client assertion signed with jose,
 * standards.md §9). mTLS is not here: it is the client certificate in the destination's TLS options.
 *
 * Tokens are cached until shortly before they expire, one token request at a time per destination; a 401
 * makes the destination call `invalidate` with the token that failed, then `authorize` once more.
 * Nothing here logs or returns a secret except the Authorization header value itself.
 */
import { randomUUID } from 'node:crypto';
import { importJWK, importPKCS8, type JWK, SignJWT } from 'jose';
import { ScribeError } from '../errors.ts';
import { classifyAnswer, isObject, parseJson } from './fhir-classify.ts';
import type { HttpExchange, HttpTransport } from './fhir-http.ts';
import type { FhirAuthConfig, FhirLogger } from './fhir-types.ts';

/** What to send, or why nothing can be sent. */
export type Authorization =
  | { readonly ok: true; readonly header?: string }
  | {
      readonly ok: false;
      /** `retry`: the token endpoint is down or throttling; `rejected`: it refused our credentials. */
      readonly outcome: 'retry' | 'rejected';
      readonly httpStatus?: number;
      readonly retryAfterMs?: number;
      readonly errorCode?: string;
      /** Log-safe: the OAuth error code or the transport code, never a secret. */
      readonly detail: string;
    };

export interface AuthProvider {
  authorize(): Promise<Authorization>;
  /**
   * Forgets the token that was just refused (`header` as authorize gave it). Returns false when there is
   * nothing to refresh (no auth, a static token), so the refusal is final.
   */
  invalidate(header: string | undefined): boolean;
}

export interface AuthDeps {
  readonly http: HttpTransport;
  readonly timeoutMs: number;
  readonly destination: string;
  readonly now: () => number;
  readonly logger: FhirLogger;
}

/** SMART: the assertion lives 4 minutes, inside the 5 the server allows, so clock skew cannot push it over. */
const ASSERTION_LIFETIME_S = 240;
/** Lifetime assumed when the token endpoint gives no expires_in, s (SMART's recommended maximum). */
const DEFAULT_EXPIRES_IN_S = 300;
/** Refresh this long before expiry: a tenth of the lifetime, at most a minute, so no request carries a dying token. */
const refreshMarginMs = (lifetimeMs: number): number => Math.min(60_000, lifetimeMs / 10);

/** The provider for a destination's auth config. Throws ScribeError for a config that cannot work. */
export function createAuth(config: FhirAuthConfig, deps: AuthDeps): AuthProvider {
  switch (config.type) {
    case 'none':
    case 'mtls':
      return { authorize: async () => ({ ok: true }), invalidate: () => false };
    case 'bearer': {
      const value = `Bearer ${config.token}`;
      return { authorize: async () => ({ ok: true, header: value }), invalidate: () => false };
    }
    case 'client-credentials':
      return new OAuthClient(config.tokenUrl, deps, async () => clientSecretAuth(config), config.scope);
    case 'smart-backend':
      return new OAuthClient(config.tokenUrl, deps, smartAssertion(config, deps.now), config.scope);
  }
}

/** Form fields and headers that authenticate the client at the token endpoint. */
interface ClientAuth {
  readonly form: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;
}

function clientSecretAuth(c: Extract<FhirAuthConfig, { type: 'client-credentials' }>): ClientAuth {
  if ((c.clientAuth ?? 'basic') === 'post')
    return { form: { client_id: c.clientId, client_secret: c.clientSecret }, headers: {} };
  // RFC 6749 §2.3.1: each part form-urlencoded before the Basic encoding.
  const basic = Buffer.from(`${formEncode(c.clientId)}:${formEncode(c.clientSecret)}`).toString('base64');
  return { form: {}, headers: { authorization: `Basic ${basic}` } };
}

function smartAssertion(
  c: Extract<FhirAuthConfig, { type: 'smart-backend' }>,
  now: () => number,
): () => Promise<ClientAuth> {
  const jwk = typeof c.privateKey === 'string' ? parseJwkText(c.privateKey) : (c.privateKey as JWK);
  const kid = c.kid ?? (typeof jwk?.kid === 'string' ? jwk.kid : undefined);
  if (!kid) {
    throw new ScribeError('CONFIG_INVALID', 'smart-backend auth needs a kid (in the config or the JWK)', {
      where: 'auth.kid',
    });
  }
  // Imported once, on first use: a bad key then fails the token request, not the process start.
  let key: Promise<CryptoKey | Uint8Array> | undefined;
  const signingKey = () => {
    key ??= jwk ? importJWK(jwk, c.alg) : importPKCS8(c.privateKey as string, c.alg);
    return key;
  };
  return async () => {
    const iat = Math.floor(now() / 1000);
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: c.alg, kid, typ: 'JWT' })
      .setIssuer(c.clientId)
      .setSubject(c.clientId)
      .setAudience(c.tokenUrl)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ASSERTION_LIFETIME_S)
      .setJti(randomUUID())
      .sign(await signingKey());
    return {
      form: {
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      },
      headers: {},
    };
  };
}

/** A JWK given as JSON text, or undefined for PEM text. */
function parseJwkText(text: string): JWK | undefined {
  if (text.trimStart().startsWith('-----BEGIN')) return undefined;
  const v = parseJson(text);
  if (isObject(v)) return v as JWK;
  throw new ScribeError('INTERNAL', 'the smart-backend private key is neither PKCS#8 PEM nor a JWK', {
    where: 'auth.privateKey',
  });
}

/** An OAuth2 client_credentials client with a token cache. */
class OAuthClient implements AuthProvider {
  readonly #tokenUrl: URL;
  readonly #deps: AuthDeps;
  readonly #clientAuth: () => Promise<ClientAuth>;
  readonly #scope: string | undefined;
  #token: { readonly header: string; readonly refreshAt: number } | undefined;
  #inflight: Promise<Authorization> | undefined;

  constructor(tokenUrl: string, deps: AuthDeps, clientAuth: () => Promise<ClientAuth>, scope?: string) {
    this.#tokenUrl = new URL(tokenUrl);
    this.#deps = deps;
    this.#clientAuth = clientAuth;
    this.#scope = scope;
  }

  authorize(): Promise<Authorization> {
    if (this.#token && this.#deps.now() < this.#token.refreshAt)
      return Promise.resolve({ ok: true, header: this.#token.header });
    // Concurrent sends share one token request.
    this.#inflight ??= this.#fetch().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  invalidate(header: string | undefined): boolean {
    // Only drop the token that failed: a concurrent send may already have replaced it.
    if (this.#token?.header === header) this.#token = undefined;
    return true;
  }

  async #fetch(): Promise<Authorization> {
    const { http, timeoutMs, destination, now, logger } = this.#deps;
    let auth: ClientAuth;
    try {
      auth = await this.#clientAuth();
    } catch (e) {
      // A key jose cannot import or sign with: configuration, not the network.
      const code = (e as { code?: unknown }).code;
      return {
        ok: false,
        outcome: 'rejected',
        detail: `client assertion not signed (${typeof code === 'string' ? code : 'key'})`,
      };
    }
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      ...(this.#scope ? { scope: this.#scope } : {}),
      ...auth.form,
    });
    const ex = await http.exchange({
      method: 'POST',
      url: this.#tokenUrl,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
        ...auth.headers,
      },
      body: form.toString(),
      timeoutMs,
    });
    const result = tokenResult(ex, now());
    logger({
      level: result.auth.ok ? 'info' : 'warn',
      event: 'fhir.token',
      destination,
      ok: result.auth.ok,
      ...(ex.kind === 'response' ? { status: ex.status } : {}),
      ...(result.expiresInS === undefined ? {} : { expiresInS: result.expiresInS }),
      ms: ex.ms,
    });
    if (result.auth.ok && result.auth.header) {
      const lifetimeMs = (result.expiresInS ?? DEFAULT_EXPIRES_IN_S) * 1000;
      this.#token = {
        header: result.auth.header,
        refreshAt: now() + lifetimeMs - refreshMarginMs(lifetimeMs),
      };
    }
    return result.auth;
  }
}

/** Reads a token response (RFC 6749 §5.1 / §5.2). */
function tokenResult(ex: HttpExchange, nowMs: number): { auth: Authorization; expiresInS?: number } {
  if (ex.kind === 'failed')
    return {
      auth: {
        ok: false,
        outcome: 'retry',
        errorCode: ex.errorCode,
        detail: `token endpoint: ${ex.errorCode}`,
      },
    };
  const body = parseJson(ex.body);
  if (
    ex.status === 200 &&
    isObject(body) &&
    typeof body['access_token'] === 'string' &&
    body['access_token']
  ) {
    const type = typeof body['token_type'] === 'string' ? body['token_type'] : 'bearer';
    if (type.toLowerCase() !== 'bearer')
      return {
        auth: {
          ok: false,
          outcome: 'rejected',
          httpStatus: 200,
          detail: `token endpoint: token_type ${type}`,
        },
      };
    const expiresIn = Number(body['expires_in']);
    return {
      auth: { ok: true, header: `Bearer ${body['access_token']}` },
      ...(Number.isFinite(expiresIn) && expiresIn > 0 ? { expiresInS: expiresIn } : {}),
    };
  }
  const error = isObject(body) && typeof body['error'] === 'string' ? body['error'] : `HTTP ${ex.status}`;
  const c = classifyAnswer(ex.status, ex.headers, body, nowMs);
  // invalid_client / invalid_grant / invalid_scope (400, 401) are our configuration: resending cannot help.
  const retry = c.outcome === 'retry' || ex.status === 200;
  return {
    auth: {
      ok: false,
      outcome: retry ? 'retry' : 'rejected',
      httpStatus: ex.status,
      ...(retry && c.retryAfterMs !== undefined ? { retryAfterMs: c.retryAfterMs } : {}),
      detail: `token endpoint: ${/^[\w.-]{1,64}$/.test(error) ? error : `HTTP ${ex.status}`}`,
    },
  };
}

const formEncode = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
