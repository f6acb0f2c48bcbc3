/**
 * Strict JSON reading for signed input: RFC 8259 syntax, I-JSON (RFC 7493) rules — no duplicate member names,
 * no lone surrogates, no Unicode noncharacters (§2.1: U+FDD0–U+FDEF and the last two code points of every
 * plane; XML, and so FHIR narrative, cannot carry U+FFFE / U+FFFF either), numbers within a double — and
 * locations (line:column) for every JSON path, so errors can say where.
 *
 * The syntax tree comes from @humanwhocodes/momoa (the parser behind ESLint's JSON support), because
 * `JSON.parse` silently keeps the last of two duplicate members, which would let the parser and the
 * canonicaliser disagree about what was signed.
 *
 * Building that tree costs ~10× `JSON.parse`, so a document is first read with `JSON.parse` and accepted
 * without the tree when it provably has none of these problems: every string (member names included) is
 * allowed, every number finite, the nesting within bounds, no member name has an escape (see parseUnique), and
 * the number of members the text declares equals the number the parsed value holds (a duplicate makes the value
 * smaller). Anything else takes the momoa path, which produces the located error, or the value built from the
 * checked tree. Locations for later (schema) errors build the tree on demand.
 */
import { type AnyNode, type DocumentNode, parse as momoaParse } from '@humanwhocodes/momoa';
import { type ErrorCode, ScribeError } from '../errors.ts';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** A JSON path segment: a member name or an array index. */
export type PathSegment = string | number;

/** `$.a.b[0]["odd key"]` — the form every error message uses. */
/**
 * The control characters the envelope spec forbids in note text (U+0000–U+0008, U+000B, U+000C, U+000E–U+001F,
 * U+007F): they break HL7 framing, and FHIR strings may not hold them. TAB, LF and CR are allowed.
 */
export const FORBIDDEN_CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;

export function formatPath(path: readonly PathSegment[]): string {
  let out = '$';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(seg)) out += `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

export interface StrictJson {
  readonly value: JsonValue;
  /** line:column (1-based) of the value at `path`, or of its nearest existing ancestor. */
  locate(path: readonly PathSegment[]): string | undefined;
}

export interface StrictJsonOptions {
  /** Prefix for locations, e.g. a file name. */
  source?: string;
  /** Code for syntax errors (default ENVELOPE_JSON). */
  syntaxCode?: ErrorCode;
  /** Code for duplicate members (default ENVELOPE_DUPLICATE_MEMBER). */
  duplicateCode?: ErrorCode;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Decodes bytes as UTF-8, refusing malformed sequences (they cannot have been signed meaningfully). */
export function decodeUtf8(bytes: Uint8Array, what: string, code: ErrorCode = 'ENVELOPE_JSON'): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new ScribeError(code, `${what} is not valid UTF-8`);
  }
}

/** Parses JSON text strictly (see module doc). Throws ScribeError with a location on any violation. */
export function parseStrictJson(text: string, opts: StrictJsonOptions = {}): StrictJson {
  try {
    return parseStrict(text, opts);
  } catch (e) {
    // Nesting deep enough to exhaust the stack of a recursive reader (tens of thousands of levels).
    if (e instanceof RangeError) throw tooDeep(opts);
    throw e;
  }
}

function tooDeep(opts: StrictJsonOptions): ScribeError {
  return new ScribeError(
    opts.syntaxCode ?? 'ENVELOPE_JSON',
    `arrays and objects are nested more than ${MAX_DEPTH} levels deep`,
    { ...(opts.source ? { where: opts.source } : {}) },
  );
}

/** Deeper than any envelope or HealthScribe file (about 8 levels); refused before anything recurses into it. */
const MAX_DEPTH = 256;

function parseStrict(text: string, opts: StrictJsonOptions): StrictJson {
  const fast = parseUnique(text);
  if (fast === undefined) return parseWithTree(text, opts);
  const at = locationFormat(opts);
  let doc: DocumentNode | undefined;
  return {
    value: fast,
    locate(path) {
      // The text parsed without error above, so momoa (a conforming RFC 8259 parser) reads it too.
      doc ??= momoaParse(text, { mode: 'json' });
      const node = find(doc.body, path);
      return at(node.loc.start.line, node.loc.start.column);
    },
  };
}

const locationFormat =
  (opts: StrictJsonOptions) =>
  (line: number, column: number): string =>
    `${opts.source ? `${opts.source}:` : ''}${line}:${column}`;

/** I-JSON (RFC 7493 §2.1): strings and member names must not include noncharacters. */
const NONCHARACTER = /\p{Noncharacter_Code_Point}/u;

/** A string I-JSON allows: well-formed UTF-16 (no lone surrogate) and no noncharacter. */
const allowedString = (s: string): boolean => s.isWellFormed() && !NONCHARACTER.test(s);

/** Every string token of JSON text; group 1 is set when the string is a member name (a `:` follows). */
const STRING_TOKEN = /"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?/g;

/**
 * `JSON.parse(text)` when the text is valid JSON with no duplicate member and no string I-JSON refuses; otherwise
 * undefined (the caller then finds and reports the problem with its location).
 */
function parseUnique(text: string): JsonValue | undefined {
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch {
    return undefined;
  }
  // Members declared in the text. The text is valid JSON, so scanning from string token to string token never
  // starts inside a string, and a string followed by `:` is always a member name.
  let declared = 0;
  STRING_TOKEN.lastIndex = 0;
  for (let m = STRING_TOKEN.exec(text); m !== null; m = STRING_TOKEN.exec(text)) {
    if (m[1] === undefined) continue;
    // A member name with an escape takes the tree path. Node 24's JSON.parse (V8 13.6; not Node 20's) was seen
    // to give a repeated escaped member name as a new, wrong one — `{"\u0061": 1, "b": 2, "\u0061": 3}` with
    // three members, one named `\` — once the process had run enough regular-expression matches: the duplicate
    // then went unseen (found by this module's property test). momoa decodes names itself.
    if (m[0].includes('\\')) return undefined;
    declared++;
  }
  const held = countMembers(value, 0);
  return held === declared ? value : undefined;
}

/**
 * Members held by a parsed value, or -1 when a string or member name is one I-JSON refuses, a number is out of
 * the range of a double (JSON.parse makes it Infinity), or nesting is deeper than MAX_DEPTH.
 */
function countMembers(v: JsonValue, depth: number): number {
  if (typeof v === 'string') return allowedString(v) ? 0 : -1;
  if (typeof v === 'number') return Number.isFinite(v) ? 0 : -1;
  if (v === null || typeof v !== 'object') return 0;
  if (depth >= MAX_DEPTH) return -1;
  let n = 0;
  if (Array.isArray(v)) {
    for (const x of v) {
      const c = countMembers(x, depth + 1);
      if (c < 0) return -1;
      n += c;
    }
    return n;
  }
  for (const k in v) {
    if (!allowedString(k)) return -1;
    const c = countMembers(v[k]!, depth + 1);
    if (c < 0) return -1;
    n += c + 1;
  }
  return n;
}

/** The full strict read with momoa's tree: every problem is found and reported with its location. */
function parseWithTree(text: string, opts: StrictJsonOptions): StrictJson {
  const at = locationFormat(opts);
  let doc: DocumentNode;
  try {
    doc = momoaParse(text, { mode: 'json' });
  } catch (e) {
    if (e instanceof RangeError) throw tooDeep(opts);
    const err = e as { message?: string; line?: number; column?: number };
    const where = err.line !== undefined ? at(err.line, err.column ?? 0) : opts.source;
    // momoa's message names the unexpected token and its position; it carries no document content beyond one character.
    throw new ScribeError(opts.syntaxCode ?? 'ENVELOPE_JSON', `not valid JSON: ${firstLine(err.message)}`, {
      ...(where ? { where } : {}),
    });
  }
  checkNode(doc.body, [], opts, at, text, 0);
  // The value from the checked tree itself, not JSON.parse: texts with escaped member names come this way.
  const value = treeValue(doc.body);
  return {
    value,
    locate(path) {
      const node = find(doc.body, path);
      return at(node.loc.start.line, node.loc.start.column);
    },
  };
}

/** The JSON value of a checked momoa tree, as JSON.parse makes it (a member named `__proto__` is an own one). */
function treeValue(node: AnyNode): JsonValue {
  switch (node.type) {
    case 'Object': {
      const o: { [k: string]: JsonValue } = {};
      for (const m of node.members) {
        const name = m.name.type === 'String' ? m.name.value : m.name.name;
        Object.defineProperty(o, name, {
          value: treeValue(m.value),
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
      return o;
    }
    case 'Array':
      return node.elements.map((e) => treeValue(e.value));
    case 'String':
    case 'Number':
    case 'Boolean':
      return node.value;
    case 'Null':
      return null;
    default:
      throw new ScribeError('ENVELOPE_JSON', `not valid JSON: unexpected ${node.type}`);
  }
}

function firstLine(msg: string | undefined): string {
  return (msg ?? 'syntax error').split('\n')[0]!.replace(/\s*\(\d+:\d+\)\s*$/, '');
}

function checkNode(
  node: AnyNode,
  path: PathSegment[],
  opts: StrictJsonOptions,
  at: (l: number, c: number) => string,
  text: string,
  depth: number,
): void {
  if ((node.type === 'Object' || node.type === 'Array') && depth >= MAX_DEPTH) throw tooDeep(opts);
  if (node.type === 'Object') {
    const seen = new Set<string>();
    for (const m of node.members) {
      const name = m.name.type === 'String' ? m.name.value : m.name.name;
      if (seen.has(name)) {
        path.push(name);
        throw new ScribeError(
          opts.duplicateCode ?? 'ENVELOPE_DUPLICATE_MEMBER',
          `member ${JSON.stringify(name)} appears more than once in the same object`,
          { where: `${formatPath(path)} (${at(m.loc.start.line, m.loc.start.column)})` },
        );
      }
      seen.add(name);
      if (m.name.type === 'String') checkString(m.name, path, opts, at, text);
      path.push(name);
      checkNode(m.value, path, opts, at, text, depth + 1);
      path.pop();
    }
  } else if (node.type === 'Array') {
    node.elements.forEach((el, i) => {
      path.push(i);
      checkNode(el.value, path, opts, at, text, depth + 1);
      path.pop();
    });
  } else if (node.type === 'String') {
    checkString(node, path, opts, at, text);
  } else if (node.type === 'Number' && !Number.isFinite(node.value)) {
    throw new ScribeError(
      opts.syntaxCode ?? 'ENVELOPE_JSON',
      'a number is too large for a double (IEEE 754), as I-JSON requires (RFC 7493 §2.2)',
      { where: `${formatPath(path)} (${at(node.loc.start.line, node.loc.start.column)})` },
    );
  }
}

/** RFC 8259 §7: a control character (U+0000–U+001F) inside a string must be escaped. */
const RAW_CONTROL = /[\u0000-\u001F]/;

function checkString(
  node: {
    value: string;
    loc: { start: { line: number; column: number; offset: number }; end: { offset: number } };
  },
  path: PathSegment[],
  opts: StrictJsonOptions,
  at: (l: number, c: number) => string,
  text: string,
): void {
  const s = node.value;
  const loc = node.loc.start;
  const raw = RAW_CONTROL.exec(text.slice(loc.offset, node.loc.end.offset));
  if (raw) {
    const cp = raw[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new ScribeError(
      opts.syntaxCode ?? 'ENVELOPE_JSON',
      `not valid JSON: a string holds the control character U+${cp} unescaped (JSON requires \\u${cp.toLowerCase()}, or \\n, \\r, \\t)`,
      { where: `${formatPath(path)} (${at(loc.line, loc.column)})` },
    );
  }
  // I-JSON: no unpaired surrogates (they have no UTF-8 form, so no canonical form to sign).
  if (!s.isWellFormed()) {
    throw new ScribeError(
      opts.syntaxCode ?? 'ENVELOPE_JSON',
      'string contains an unpaired UTF-16 surrogate',
      {
        where: `${formatPath(path)} (${at(loc.line, loc.column)})`,
      },
    );
  }
  const nonchar = NONCHARACTER.exec(s);
  if (nonchar) {
    const cp = nonchar[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new ScribeError(
      opts.syntaxCode ?? 'ENVELOPE_JSON',
      `string contains the Unicode noncharacter U+${cp}, which I-JSON (RFC 7493 §2.1) does not allow`,
      {
        where: `${formatPath(path)} (${at(loc.line, loc.column)})`,
        hint: 'Noncharacters carry no text (XML, and so FHIR narrative, cannot hold U+FFFE or U+FFFF): remove it in the review application and sign the note again.',
      },
    );
  }
}

function find(node: AnyNode, path: readonly PathSegment[]): AnyNode {
  let cur: AnyNode = node;
  for (const seg of path) {
    let next: AnyNode | undefined;
    if (cur.type === 'Object' && typeof seg === 'string') {
      next = cur.members.find((m) => (m.name.type === 'String' ? m.name.value : m.name.name) === seg)?.value;
    } else if (cur.type === 'Array' && typeof seg === 'number') {
      next = cur.elements[seg]?.value;
    }
    if (!next) break;
    cur = next;
  }
  return cur;
}
