/**
 * The per-note half of conformance: a typed walk of one rendered resource against the base FHIR R4 type
 * definitions Medplum has indexed (`getElementDefinition`, `validationRegexes`). It checks what can vary from
 * note to note once a mapping version's structure has been proven by full profile validation of its probe
 * outputs (conformance.ts): every property is an element of its type, arrays are arrays within their
 * cardinality, required elements are present, and every primitive value — where the note's own data lands —
 * has its FHIR type's lexical form (FHIR's regexes; strings without forbidden control characters; narrative
 * XHTML that is a `div` with text). It costs a fraction of a millisecond for a typical transaction, where the
 * full validator costs tens of milliseconds.
 */
import { getDataType, getElementDefinition, type InternalTypeSchema, validationRegexes } from '@medplum/core';

export interface WalkIssue {
  readonly path: string;
  readonly message: string;
}

interface ResolvedElement {
  readonly code: string;
  readonly isArray: boolean;
  readonly max: number;
}

const PRIMITIVE_NUMBERS = new Set(['integer', 'positiveInt', 'unsignedInt', 'decimal', 'integer64']);
// FHIR strings SHALL NOT contain characters below U+0020 except TAB, LF and CR (R4 datatypes §2.24.0.1).
const BAD_STRING = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

interface TypeInfo {
  readonly name: string;
  readonly isResource: boolean;
  readonly elements: Map<string, ResolvedElement | null>;
  /** Required element names ([x] stripped) and whether each is a choice. */
  readonly required: ReadonlyArray<readonly [string, boolean]>;
}

const types = new Map<string, TypeInfo | null>();

/** Per-type facts, computed once per process (the walk runs per note; these never change). */
function typeInfo(type: string): TypeInfo | null {
  let info = types.get(type);
  if (info !== undefined) return info;
  let schema: InternalTypeSchema | undefined;
  try {
    schema = getDataType(type);
  } catch {
    schema = undefined;
  }
  info = schema
    ? {
        name: type,
        isResource: schema.kind === 'resource',
        elements: new Map(),
        required: [...(schema.mandatoryProperties ?? [])].map(
          (r) => [r.replace('[x]', ''), r.endsWith('[x]')] as const,
        ),
      }
    : null;
  types.set(type, info);
  return info;
}

function resolveElement(info: TypeInfo, key: string): ResolvedElement | null {
  let r = info.elements.get(key);
  if (r !== undefined) return r;
  const el = getElementDefinition(info.name, key);
  if (!el) r = null;
  else {
    let code = el.type[0]?.code ?? 'Element';
    if (el.type.length > 1 || el.path.endsWith('[x]')) {
      // Choice type: the property name's suffix names the type (valueString → string, occurredPeriod → Period).
      const base = el.path.slice(el.path.lastIndexOf('.') + 1).replace('[x]', '');
      const suffix = key.slice(base.length);
      code = el.type.find((t) => t.code.toLowerCase() === suffix.toLowerCase())?.code ?? code;
    }
    // Resource.id is typed System.String in the R4 definitions but is an `id` ([A-Za-z0-9\-.]{1,64}).
    if (key === 'id' && info.isResource) code = 'id';
    r = { code, isArray: Boolean(el.isArray) || el.max > 1, max: el.max };
  }
  info.elements.set(key, r);
  return r;
}

function isPrimitive(code: string): boolean {
  const c = code.charCodeAt(0);
  return c >= 97 && c <= 122; // FHIR primitive type names start lower-case
}

function checkPrimitive(v: unknown, code: string, at: Path, issues: WalkIssue[]): void {
  if (code === 'boolean') {
    if (typeof v !== 'boolean') push(issues, at, `expected a boolean`);
    return;
  }
  if (PRIMITIVE_NUMBERS.has(code)) {
    if (typeof v !== 'number' || !Number.isFinite(v)) push(issues, at, `expected a number (${code})`);
    else if (code !== 'decimal' && !Number.isInteger(v)) push(issues, at, `expected an integer (${code})`);
    else if ((code === 'unsignedInt' && v < 0) || (code === 'positiveInt' && v < 1))
      push(issues, at, `out of range for ${code}`);
    return;
  }
  if (typeof v !== 'string') {
    push(issues, at, `expected a string (${code})`);
    return;
  }
  if (v.trim().length === 0) {
    push(issues, at, 'empty or blank string (FHIR strings need non-whitespace content)');
    return;
  }
  if (code === 'base64Binary') {
    if (!BASE64.test(v)) push(issues, at, 'not base64');
    return;
  }
  if (code === 'xhtml') {
    if (!v.startsWith('<div xmlns="http://www.w3.org/1999/xhtml"') || !v.endsWith('</div>'))
      push(issues, at, 'narrative must be one <div xmlns="http://www.w3.org/1999/xhtml"> element');
    else if (
      v
        .replace(/<[^>]*>/g, '')
        .replace(/&[a-zA-Z]+;|&#x?[0-9a-fA-F]+;/g, 'x')
        .trim() === ''
    ) {
      push(issues, at, 'narrative has no text (txt-2)');
    } else if (/&(?![a-zA-Z]+;|#x?[0-9a-fA-F]+;)/.test(v)) push(issues, at, 'narrative has an unescaped &');
    return;
  }
  if (BAD_STRING.test(v)) {
    push(issues, at, `${code} contains a control character FHIR forbids`);
    return;
  }
  const re = validationRegexes[code];
  if (re && !re.test(v)) push(issues, at, `not a valid ${code}`);
}

type Path = Array<string | number>;

function pathString(at: Path): string {
  let out = '';
  for (const p of at) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

/** Issues carry the path as text; it is built only when an issue is found. */
function push(issues: WalkIssue[], at: Path, message: string): void {
  issues.push({ path: pathString(at), message });
}

function walk(v: unknown, type: string, at: Path, issues: WalkIssue[]): void {
  if (isPrimitive(type)) {
    checkPrimitive(v, type, at, issues);
    return;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    push(issues, at, `expected an object (${type})`);
    return;
  }
  const obj = v as Record<string, unknown>;
  let t = type;
  if (type === 'Resource' || type === 'DomainResource') {
    const rt = obj['resourceType'];
    if (typeof rt !== 'string' || !typeInfo(rt)) {
      push(issues, at, 'resourceType missing or unknown');
      return;
    }
    t = rt;
  }
  const info = typeInfo(t);
  if (!info) {
    push(issues, at, `unknown type ${t}`);
    return;
  }
  let any = false;
  for (const key in obj) {
    if (key === 'resourceType' && obj[key] === t) continue;
    any = true;
    const el = resolveElement(info, key);
    if (!el) {
      at.push(key);
      push(issues, at, `${key} is not an element of ${t}`);
      at.pop();
      continue;
    }
    const value = obj[key];
    if (el.isArray) {
      if (!Array.isArray(value) || value.length === 0) {
        at.push(key);
        push(issues, at, 'expected a non-empty array');
        at.pop();
        continue;
      }
      if (value.length > el.max) {
        at.push(key);
        push(issues, at, `at most ${el.max} allowed`);
        at.pop();
      }
      at.push(key);
      for (let i = 0; i < value.length; i++) {
        at.push(i);
        walk(value[i], el.code, at, issues);
        at.pop();
      }
      at.pop();
    } else if (Array.isArray(value)) {
      at.push(key);
      push(issues, at, 'a single value is expected, not an array');
      at.pop();
    } else {
      at.push(key);
      walk(value, el.code, at, issues);
      at.pop();
    }
  }
  if (!any) push(issues, at, 'empty object (FHIR has no empty values)');
  for (const [name, choice] of info.required) {
    if (choice ? !Object.keys(obj).some((k) => k.startsWith(name)) : obj[name] === undefined) {
      push(issues, at, `missing required ${name}${choice ? '[x]' : ''}`);
    }
  }
}

/** Walks one resource (a Bundle walks its entries' resources too). Returns every issue found. */
export function typedWalk(resource: unknown): WalkIssue[] {
  const issues: WalkIssue[] = [];
  const rt = (resource as { resourceType?: unknown } | null)?.resourceType;
  walk(resource, typeof rt === 'string' ? rt : 'Resource', [typeof rt === 'string' ? rt : '$'], issues);
  return issues;
}
