/**
 * PRODUCT.md lists each FHIR auth type's keys as `bearer: { tokenEnv }`, `client-credentials: { tokenUrl, … }`,
 * `smart-backend: { … }`. Both readings of that line are accepted: the keys beside `type` (the form the rest of the
 * product documents) and the same keys nested under the type's own name:
 *
 *   auth: { type: bearer, tokenEnv: EHR_TOKEN }
 *   auth: { type: bearer, bearer: { tokenEnv: EHR_TOKEN } }
 *
 * The nested form is lifted into the flat one before the file is checked, and every problem found in the lifted
 * keys is reported at the path the file really has (`destinations[0].auth.bearer.tokenEnv`).
 */
import type { PathSegment } from '../contract/json.ts';

type Path = readonly PathSegment[];

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The file's value with nested auth blocks lifted, and how a problem's path maps back to the file. */
export interface LiftedAuth {
  readonly value: unknown;
  /** The path in the file for a path in `value` (unchanged outside a lifted auth block). */
  readonly inFile: (path: Path) => Path;
}

/**
 * Lifts `destinations[i].auth.<type>` when it is the only key beside `type` and a mapping. A block that mixes both
 * forms is left as written: the schema then reports the nested key as unknown beside the flat ones.
 */
export function liftNestedAuth(value: unknown): LiftedAuth {
  const lifted = new Map<number, string>();
  if (!isRecord(value) || !Array.isArray(value['destinations'])) return { value, inFile: (p) => p };
  const destinations = value['destinations'].map((d: unknown, i) => {
    if (!isRecord(d) || !isRecord(d['auth'])) return d;
    const auth = d['auth'];
    const type = auth['type'];
    if (typeof type !== 'string' || type === 'type' || !isRecord(auth[type])) return d;
    if (Object.keys(auth).some((k) => k !== 'type' && k !== type)) return d;
    lifted.set(i, type);
    return { ...d, auth: { ...(auth[type] as Record<string, unknown>), type } };
  });
  if (lifted.size === 0) return { value, inFile: (p) => p };
  return {
    value: { ...value, destinations },
    inFile: (p) => {
      const type = p[0] === 'destinations' && p[2] === 'auth' ? lifted.get(p[1] as number) : undefined;
      if (type === undefined || p.length < 4 || p[3] === 'type') return p;
      return [...p.slice(0, 3), type, ...p.slice(3)];
    },
  };
}
