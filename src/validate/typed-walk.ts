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
  /** For primitive types, the value check (resolved once, so the walk does not branch on the type name). */
  readonly check?: PrimitiveCheck;
}

const PRIMITIVE_NUMBERS = new Set(['integer', 'positiveInt', 'unsignedInt', 'decimal', 'integer64']);
// FHIR strings SHALL NOT contain characters below U+0020 except TAB, LF and CR (R4 datatypes §2.24.0.1).
const BAD_STRING = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;
const NON_BLANK = /\S/;
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
    r = {
      code,
      isArray: Boolean(el.isArray) || el.max > 1,
      max: el.max,
      ...(isPrimitive(code) ? { check: checkFor(code) } : {}),
    };
  }
  info.elements.set(key, r);
  return r;
}

function isPrimitive(code: string): boolean {
  const c = code.charCodeAt(0);
  return c >= 97 && c <= 122; // FHIR primitive type names start lower-case
}

/** A primitive check: the problem with `v`, or undefined. */
type PrimitiveCheck = (v: unknown) => string | undefined;

// Types whose FHIR regex admits neither blanks nor control characters: the regex is the whole check.
const SELF_CONTAINED = new Set(['id', 'date', 'dateTime', 'instant', 'time', 'uuid', 'oid']);

function xhtmlProblem(v: string): string | undefined {
  if (!v.startsWith('<div xmlns="http://www.w3.org/1999/xhtml"') || !v.endsWith('</div>')) {
    return 'narrative must be one <div xmlns="http://www.w3.org/1999/xhtml"> element';
  }
  const text = v.replace(/<[^>]*>/g, '').replace(/&[a-zA-Z]+;|&#x?[0-9a-fA-F]+;/g, 'x');
  if (!NON_BLANK.test(text)) return 'narrative has no text (txt-2)';
  if (/&(?![a-zA-Z]+;|#x?[0-9a-fA-F]+;)/.test(v)) return 'narrative has an unescaped &';
  return undefined;
}

/** The check for one primitive type, built once per type (the walk calls it for every primitive value). */
function primitiveCheck(code: string): PrimitiveCheck {
  if (code === 'boolean') return (v) => (typeof v === 'boolean' ? undefined : 'expected a boolean');
  if (PRIMITIVE_NUMBERS.has(code)) {
    const integer = code !== 'decimal';
    const min = code === 'positiveInt' ? 1 : code === 'unsignedInt' ? 0 : Number.NEGATIVE_INFINITY;
    return (v) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) return `expected a number (${code})`;
      if (integer && !Number.isInteger(v)) return `expected an integer (${code})`;
      return v < min ? `out of range for ${code}` : undefined;
    };
  }
  const notString = `expected a string (${code})`;
  const blank = 'empty or blank string (FHIR strings need non-whitespace content)';
  if (code === 'base64Binary') {
    return (v) =>
      typeof v !== 'string' ? notString : !BASE64.test(v) || v === '' ? 'not base64' : undefined;
  }
  if (code === 'xhtml') return (v) => (typeof v !== 'string' ? notString : xhtmlProblem(v));
  const re = validationRegexes[code];
  const invalid = `not a valid ${code}`;
  if (re && SELF_CONTAINED.has(code))
    return (v) => (typeof v !== 'string' ? notString : re.test(v) ? undefined : invalid);
  const control = `${code} contains a control character FHIR forbids`;
  // Many values repeat within and across notes (systems, codes, units, the tenant's URNs): remember the short
  // ones found valid. Validity is a pure function of (type, text), so the memo is exact; it is bounded.
  const valid = new Set<string>();
  return (v) => {
    if (typeof v !== 'string') return notString;
    if (valid.has(v)) return undefined;
    if (!NON_BLANK.test(v)) return blank;
    if (BAD_STRING.test(v)) return control;
    if (re && !re.test(v)) return invalid;
    if (v.length <= 256) {
      if (valid.size >= 4096) valid.clear();
      valid.add(v);
    }
    return undefined;
  };
}

const primitiveChecks = new Map<string, PrimitiveCheck>();

function checkFor(code: string): PrimitiveCheck {
  let check = primitiveChecks.get(code);
  if (!check) {
    check = primitiveCheck(code);
    primitiveChecks.set(code, check);
  }
  return check;
}

function checkPrimitive(v: unknown, code: string, at: Path, issues: WalkIssue[]): void {
  const problem = checkFor(code)(v);
  if (problem) push(issues, at, problem);
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
  if (t === 'Extension') checkExtension(obj, at, issues);
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
      const check = el.check;
      for (let i = 0; i < value.length; i++) {
        at.push(i);
        if (check) {
          const problem = check(value[i]);
          if (problem) push(issues, at, problem);
        } else walk(value[i], el.code, at, issues);
        at.pop();
      }
      at.pop();
    } else if (Array.isArray(value)) {
      at.push(key);
      push(issues, at, 'a single value is expected, not an array');
      at.pop();
    } else if (el.check) {
      const problem = el.check(value);
      if (problem) {
        at.push(key);
        push(issues, at, problem);
        at.pop();
      }
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

const OWN_EXTENSION = 'https://fhir.scribe-bridge.dev/StructureDefinition/';
const EDIT_CLASSES = new Set(['ai-verbatim', 'clinician-edited', 'clinician-added']);
const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * ext-1 (an extension has a value or extensions, not both) — which varies per note when a value expression gives
 * nothing — and the value rules of scribe-bridge's own extensions, without FHIRPath (full validation evaluates
 * their invariants).
 */
function checkExtension(ext: Record<string, unknown>, at: Path, issues: WalkIssue[]): void {
  let hasValue = false;
  for (const k in ext) {
    if (k.startsWith('value')) {
      hasValue = true;
      break;
    }
  }
  if (hasValue === (ext['extension'] !== undefined))
    push(issues, at, 'an extension needs a value or extensions, not both (ext-1)');
  const url = ext['url'];
  if (typeof url !== 'string' || !url.startsWith(OWN_EXTENSION)) return;
  const name = url.slice(OWN_EXTENSION.length);
  if (name === 'edit-class') {
    if (!EDIT_CLASSES.has(ext['valueCode'] as string))
      push(issues, at, 'edit-class needs valueCode ai-verbatim, clinician-edited or clinician-added');
  } else if (name === 'audio-offset') {
    const r = ext['valueRange'] as { low?: { value?: unknown }; high?: { value?: unknown } } | undefined;
    const low = r?.low?.value;
    const high = r?.high?.value;
    if (typeof low !== 'number' || typeof high !== 'number' || low > high) {
      push(issues, at, 'audio-offset needs a low and a high time in seconds, low ≤ high');
    }
  } else if (name === 'artifact-sha256') {
    if (!SHA256_HEX.test(ext['valueString'] as string))
      push(issues, at, 'artifact-sha256 needs 64 lower-case hex digits');
  }
}

/** Walks one resource (a Bundle walks its entries' resources too). Returns every issue found. */
export function typedWalk(resource: unknown): WalkIssue[] {
  const issues: WalkIssue[] = [];
  const rt = (resource as { resourceType?: unknown } | null)?.resourceType;
  walk(resource, typeof rt === 'string' ? rt : 'Resource', [typeof rt === 'string' ? rt : '$'], issues);
  return issues;
}
