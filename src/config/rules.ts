/**
 * Rules across parts of the file: ids unique, every id a tenant or token names exists, no token listed
 * twice. They read the raw parsed YAML rather than the validated parts, so that a reference is still checked
 * when the part it lives in has an unrelated mistake (all problems are reported at once).
 */
import type { Problems } from './context.ts';
import type { TokenConfig } from './types.ts';

type Raw = Readonly<Record<string, unknown>>;

function isRecord(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asArray(v: unknown): readonly unknown[] {
  return Array.isArray(v) ? v : [];
}

/** The `id` of each element of a raw list (undefined where it has none). */
function ids(list: readonly unknown[]): Array<string | undefined> {
  return list.map((x) => (isRecord(x) && typeof x['id'] === 'string' ? x['id'] : undefined));
}

function checkUnique(
  section: 'tenants' | 'destinations',
  list: readonly unknown[],
  problems: Problems,
): void {
  const first = new Map<string, number>();
  for (const [i, id] of ids(list).entries()) {
    if (id === undefined) continue;
    const j = first.get(id);
    if (j === undefined) first.set(id, i);
    else problems.at([section, i, 'id'], `duplicate id ${id}: ${section}[${j}] has it already`);
  }
}

function checkNamed(
  names: unknown,
  known: ReadonlySet<string>,
  at: readonly (string | number)[],
  what: 'destination' | 'tenant',
  problems: Problems,
): void {
  for (const [j, name] of asArray(names).entries()) {
    if (typeof name !== 'string' || known.has(name)) continue;
    const list = [...known].join(', ') || 'none';
    problems.at([...at, j], `no ${what} has the id ${name} (the ${what}s are: ${list})`);
  }
}

/**
 * Adds a problem for each broken cross-reference in the raw file. `envTokens` are the tokens the
 * environment adds, checked against the file's for reuse.
 */
export function checkCrossReferences(
  raw: unknown,
  envTokens: readonly TokenConfig[],
  problems: Problems,
): void {
  const top = isRecord(raw) ? raw : {};
  const tenants = asArray(top['tenants']);
  const destinations = asArray(top['destinations']);
  checkUnique('tenants', tenants, problems);
  checkUnique('destinations', destinations, problems);

  const destinationIds = new Set(ids(destinations).filter((x) => x !== undefined));
  for (const [i, t] of tenants.entries()) {
    if (!isRecord(t)) continue;
    checkNamed(t['destinations'], destinationIds, ['tenants', i, 'destinations'], 'destination', problems);
    const seen = new Set<unknown>();
    for (const [j, d] of asArray(t['destinations']).entries()) {
      if (seen.has(d))
        problems.at(['tenants', i, 'destinations', j], `destination ${String(d)} is listed twice`);
      seen.add(d);
    }
  }

  const tenantIds = new Set(ids(tenants).filter((x) => x !== undefined));
  const auth = isRecord(top['auth']) ? top['auth'] : {};
  // One token, one role: a hash listed twice would make the role depend on the order of the list.
  const hashes = new Map<string, string>();
  for (const [i, tok] of asArray(auth['tokens']).entries()) {
    if (!isRecord(tok)) continue;
    checkNamed(tok['tenants'], tenantIds, ['auth', 'tokens', i, 'tenants'], 'tenant', problems);
    const sha = tok['sha256'];
    if (typeof sha !== 'string') continue;
    const prior = hashes.get(sha);
    if (prior !== undefined)
      problems.at(['auth', 'tokens', i, 'sha256'], `the same token as ${prior}: list each token once`);
    else hashes.set(sha, `auth.tokens[${i}]`);
  }
  for (const tok of envTokens) {
    const prior = hashes.get(tok.sha256);
    const name = `environment SCRIBE_BRIDGE_TOKEN_${tok.role.toUpperCase()}`;
    if (prior !== undefined)
      problems.elsewhere(name, `the same token as ${prior}: list each token once, with one role`);
    else hashes.set(tok.sha256, name);
  }
}
