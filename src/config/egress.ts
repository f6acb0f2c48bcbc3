/**
 * Where scribe-bridge may connect (reliability-scenarios S6, SSRF): every outbound host comes from the
 * configuration file — FHIR base URLs, MLLP hosts, token URLs, JWKS URLs, SQS and S3 endpoints — never from an
 * envelope (artifact URIs name S3 objects, fetched through the configured S3 client).
 *
 * - Never: link-local addresses (169.254.0.0/16, fe80::/10), where cloud instance metadata and its credentials
 *   live (169.254.169.254, and fd00:ec2::254 on AWS), and the metadata host names. A file naming one fails at
 *   load; a configured host name that resolves to one is refused when the connection is made (`guardedLookup`),
 *   so no packet goes there.
 * - Optionally only listed hosts: `egress.allowHosts` (host names, `*.domain` for any name under a domain, IP
 *   addresses, CIDR ranges). With it, a file naming any other host fails at load. AWS endpoints the SDK derives
 *   itself (no `endpoint:` given) are AWS's, not the file's, and are not listed.
 */
import dns from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { Problems } from './context.ts';

type Raw = Readonly<Record<string, unknown>>;
type Path = readonly (string | number)[];

/** Addresses no configuration may reach. */
const NEVER = new BlockList();
NEVER.addSubnet('169.254.0.0', 16, 'ipv4');
NEVER.addSubnet('fe80::', 10, 'ipv6');
NEVER.addAddress('fd00:ec2::254', 'ipv6');
/** Names of instance-metadata services (GCP's two, AWS's legacy one). */
const NEVER_NAMES = new Set(['metadata.google.internal', 'metadata.goog', 'instance-data.ec2.internal']);

/** The host part of a URL or a bare host, lower-cased, IPv6 without brackets; undefined if unparseable. */
function hostOf(endpoint: string, bare: boolean): string | undefined {
  if (bare) {
    const host = endpoint
      .trim()
      .toLowerCase()
      .replace(/^\[(.*)\]$/, '$1');
    if (isIP(host) === 6) return host;
    // As the resolver reads it: a URL host parser turns 2852039166, 0xa9fea9fe, 0251.0376.0251.0376 and
    // "169.254.169.254." into the address they name, so none slips past the checks below as a "name".
    try {
      return new URL(`http://${host}`).hostname.replace(/^(\d+\.\d+\.\d+\.\d+)\.$/, '$1');
    } catch {
      return host;
    }
  }
  try {
    return new URL(endpoint).hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
}

function family(address: string): 'ipv4' | 'ipv6' | undefined {
  const v = isIP(address);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined;
}

/** Why no connection may go to this host (a literal address or a name), or undefined. */
export function neverReason(host: string): string | undefined {
  const f = family(host);
  if (f && NEVER.check(host, f))
    return 'a link-local address, where cloud instance metadata (and its credentials) is served';
  if (NEVER_NAMES.has(host.replace(/\.$/, ''))) return 'a cloud instance-metadata host name';
  return undefined;
}

/** An `egress.allowHosts` list, compiled. */
export class HostAllowList {
  readonly #names = new Set<string>();
  readonly #suffixes: string[] = [];
  readonly #addresses = new BlockList();

  /** `patterns` must have passed `patternProblem`. */
  constructor(patterns: readonly string[]) {
    for (const raw of patterns) {
      const p = raw
        .trim()
        .toLowerCase()
        .replace(/^\[(.*)\]$/, '$1');
      const cidr = /^(.+)\/(\d{1,3})$/.exec(p);
      const f = family(cidr ? cidr[1]! : p);
      if (cidr && f) this.#addresses.addSubnet(cidr[1]!, Number(cidr[2]), f);
      else if (f) this.#addresses.addAddress(p, f);
      else if (p.startsWith('*.')) this.#suffixes.push(p.slice(1));
      else this.#names.add(p.replace(/\.$/, ''));
    }
  }

  allows(host: string): boolean {
    const f = family(host);
    if (f) return this.#addresses.check(host, f);
    const name = host.replace(/\.$/, '');
    return this.#names.has(name) || this.#suffixes.some((s) => name.endsWith(s));
  }
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** What is wrong with one `egress.allowHosts` entry, or undefined. */
export function patternProblem(pattern: string): string | undefined {
  const p = pattern
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  const cidr = /^(.+)\/(\d{1,3})$/.exec(p);
  if (cidr) {
    const f = family(cidr[1]!);
    if (!f) return `${pattern} is not a CIDR range (address/prefix, e.g. 10.0.0.0/8)`;
    if (Number(cidr[2]) > (f === 'ipv4' ? 32 : 128)) return `${pattern} has a prefix longer than the address`;
    return undefined;
  }
  if (family(p)) return undefined;
  const name = p.startsWith('*.') ? p.slice(2) : p;
  if (
    name
      .replace(/\.$/, '')
      .split('.')
      .every((l) => LABEL.test(l))
  )
    return undefined;
  return `${pattern} is not a host name, *.domain, IP address or CIDR range`;
}

/** Every endpoint the raw file names, with its path and whether it is a bare host (MLLP) or a URL. */
function endpoints(top: Raw): Array<{ at: Path; value: string; bare: boolean }> {
  const out: Array<{ at: Path; value: string; bare: boolean }> = [];
  const rec = (v: unknown): Raw =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Raw) : {};
  const list = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : []);
  const add = (at: Path, v: unknown, bare = false) => {
    if (typeof v === 'string' && v !== '') out.push({ at, value: v, bare });
  };
  const sqs = rec(rec(top['intake'])['sqs']);
  for (const k of ['queueUrl', 'endpoint', 'deadLetterQueueUrl']) add(['intake', 'sqs', k], sqs[k]);
  add(['s3', 'endpoint'], rec(top['s3'])['endpoint']);
  for (const [i, t] of list(top['tenants']).entries()) {
    const keys = rec(t)['reviewKeys'];
    if (typeof keys === 'string' && /^https?:\/\//i.test(keys)) add(['tenants', i, 'reviewKeys'], keys);
  }
  for (const [i, d] of list(top['destinations']).entries()) {
    const dest = rec(d);
    if (dest['type'] === 'fhir') add(['destinations', i, 'baseUrl'], dest['baseUrl']);
    if (dest['type'] === 'mllp') add(['destinations', i, 'host'], dest['host'], true);
    add(['destinations', i, 'auth', 'tokenUrl'], rec(dest['auth'])['tokenUrl']);
  }
  return out;
}

/**
 * Adds a problem for each endpoint of the raw file that points where no connection may go, or (with
 * `egress.allowHosts`) at a host the list does not allow, and for each list entry that is not a pattern.
 */
export function checkEgress(top: Raw, problems: Problems): void {
  const egress = top['egress'];
  const patterns =
    typeof egress === 'object' && egress !== null && Array.isArray((egress as Raw)['allowHosts'])
      ? ((egress as Raw)['allowHosts'] as unknown[])
      : undefined;
  let allow: HostAllowList | undefined;
  if (patterns && patterns.length > 0) {
    const bad = patterns.map((p) => (typeof p === 'string' ? patternProblem(p) : undefined));
    for (const [i, b] of bad.entries()) if (b) problems.at(['egress', 'allowHosts', i], b);
    if (bad.every((b) => b === undefined) && patterns.every((p) => typeof p === 'string'))
      allow = new HostAllowList(patterns);
  }
  for (const e of endpoints(top)) {
    const host = hostOf(e.value, e.bare);
    if (host === undefined || host === '') continue; // the schema reports an unparseable URL
    const never = neverReason(host);
    if (never) {
      problems.at(e.at, `${host} is ${never}: scribe-bridge never connects there`);
    } else if (allow && !allow.allows(host)) {
      problems.at(
        e.at,
        `${host} is not in egress.allowHosts: add it (or a *.domain or CIDR covering it) if this endpoint is meant`,
      );
    }
  }
}

/**
 * A `lookup` for sockets to configured hosts: DNS as usual, but a name resolving to an address no connection may
 * reach fails with EGRESS_REFUSED before any connection is attempted. (A literal address is never looked up; the
 * configuration check refuses those.)
 */
export const guardedLookup: LookupFunction = guardLookup();

/** `guardedLookup` over another resolver (tests give one that answers what DNS here cannot). */
export function guardLookup(
  resolve: (
    hostname: string,
    options: dns.LookupAllOptions,
    callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
  ) => void = dns.lookup,
): LookupFunction {
  return (hostname, options, callback) =>
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const refused = addresses.find((a) => neverReason(a.address) !== undefined);
      if (refused) {
        const e = Object.assign(new Error(`${hostname} resolves to a link-local address`), {
          code: 'EGRESS_REFUSED',
        }) as NodeJS.ErrnoException;
        return callback(e, '', 0);
      }
      if (options.all) return (callback as (e: null, a: dns.LookupAddress[]) => void)(null, addresses);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error('no address'), { code: 'ENOTFOUND' }), '', 0);
      callback(null, first.address, first.family);
    });
}
