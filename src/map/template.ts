/**
 * Output templates: the shape of what a mapping produces, written as plain YAML/JSON with FHIRPath
 * expressions in `{{ … }}`, compiled once into closures.
 *
 * - `"{{ expr }}"` (the whole string): the expression's value — nothing (member omitted), one value (kept with its
 *   JSON type: numbers stay numbers), or several (an array).
 * - `"text {{ expr }} text"`: string interpolation; each expression must give at most one value.
 * - `{ $for: expr, $as: name, $each: template }`: one output per item (spliced into a surrounding array).
 *   `$index: name` also binds the 0-based position.
 * - `$if: expr` on an object: the object exists only when the expression is `true`.
 * - `$let: { name: expr }` on an object: binds variables for its members.
 * - `{ $include: partial, $with: { name: expr } }`: a named partial template of the mapping.
 *
 * FHIR has no empty values, so empty strings, empty arrays and empty objects are omitted.
 */
import { ScribeError } from '../errors.ts';
import {
  type CompiledExpr,
  compileExpr,
  ExprSyntaxError,
  LookupMissError,
  type Tables,
  type Vars,
} from './expr.ts';

/** Marks an omitted value. */
export const OMIT: unique symbol = Symbol('omit');
export type Out = unknown;
export type Render = (vars: Vars) => Out;

/** "file:line:column" of the node at a template path. */
export type Locate = (path: readonly (string | number)[]) => string;

/** A named partial template and where it was written (it may come from an imported file). */
export interface PartialDef {
  readonly node: unknown;
  readonly path: readonly (string | number)[];
  readonly locate: Locate;
}

/** What the compiler needs to know about the file it compiles. */
export interface TemplateSource {
  readonly tables: Tables;
  readonly partials: Readonly<Record<string, PartialDef>>;
  readonly locate: Locate;
  /**
   * Leave out a string value with no non-whitespace character, as an empty one is (FHIR output: a FHIR string
   * needs some non-whitespace content). Otherwise only the empty string is left out (HL7 fields, text renderings).
   */
  readonly omitBlank?: boolean;
  /** The mapping's `settings` keys: `%settings.x` must name one. Each one read is added to `settingsRead`. */
  readonly settings?: readonly string[];
  readonly settingsRead?: Set<string>;
}

/**
 * The members each root variable with a fixed shape has (model.ts; a test in `src/map/mapping-file.test.ts` keeps this in step
 * with what buildVars makes): `%note.signedat` is a typo refused at compile time, not an empty value at render.
 * Roots not listed (`ids`, `options`, `renderings`, `settings` — checked against the mapping's own) are open.
 */
export const ROOT_MEMBERS: Readonly<Record<string, readonly string[]>> = {
  note: [
    'hasAiContent',
    'language',
    'noteId',
    'removed',
    'replaces',
    'revision',
    'sections',
    'sentences',
    'signedAt',
    'status',
    'template',
    'tenant',
  ],
  patient: ['birthDate', 'gender', 'identifier', 'name'],
  encounter: ['class', 'identifier', 'period'],
  author: ['identifier', 'name'],
  organization: ['identifier', 'name'],
  healthscribe: ['clinicalDocument', 'conversationId', 'jobName', 'mode', 'sessionId', 'transcript'],
  signature: ['alg', 'kid', 'signedAt', 'verified'],
  mapping: ['digest', 'id', 'version'],
  hl7: [
    'birthDate',
    'controlId',
    'documentNumber',
    'encounterEnd',
    'encounterStart',
    'parentDocumentNumber',
    'signedAt',
  ],
  prior: ['documentIdentifier', 'identifier', 'revision'],
  retraction: ['ids', 'replaces', 'revision', 'signedAt'],
};

const NON_BLANK = /\S/;

/** A string with no non-whitespace character. Most values start with a printable ASCII character: no regex then. */
function isBlank(v: unknown): boolean {
  if (typeof v !== 'string') return false;
  const c = v.charCodeAt(0);
  return !(c > 32 && c < 127) && !NON_BLANK.test(v);
}

/** FHIRPath environment variables fhirpath.js itself defines. */
const BUILTIN_VARS = new Set(['ucum', 'context', 'resource', 'rootResource', 'sct', 'loinc', 'factory']);
const DIRECTIVES = new Set(['$for', '$as', '$each', '$index', '$if', '$let', '$include', '$with']);

interface Scope {
  readonly vars: ReadonlySet<string>;
  readonly including: readonly string[];
}

/** Compiles a template. `vars` are the variable names the engine provides at the root. */
export function compileTemplate(
  node: unknown,
  path: readonly (string | number)[],
  src: TemplateSource,
  vars: Iterable<string>,
): Render {
  return compileNode(node, [...path], src, { vars: new Set(vars), including: [] });
}

function fail(src: TemplateSource, path: readonly (string | number)[], detail: string): never {
  throw new ScribeError('MAPPING_INVALID', detail, { where: `${src.locate(path)} (${pathText(path)})` });
}

export function pathText(path: readonly (string | number)[]): string {
  return (
    path
      .map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`))
      .join('')
      .replace(/^\./, '') || '(root)'
  );
}

function compileNode(node: unknown, path: (string | number)[], src: TemplateSource, scope: Scope): Render {
  if (typeof node === 'string') return compileString(node, path, src, scope);
  if (node === null || node === undefined) return () => OMIT;
  if (Array.isArray(node)) return compileArray(node, path, src, scope);
  if (typeof node === 'object') return compileObject(node as Record<string, unknown>, path, src, scope);
  return () => node; // number, boolean
}

function compileExpression(
  source: string,
  path: (string | number)[],
  src: TemplateSource,
  scope: Scope,
): CompiledExpr {
  let compiled: CompiledExpr;
  try {
    compiled = compileExpr(source, src.tables);
  } catch (e) {
    if (e instanceof ExprSyntaxError)
      fail(src, path, `FHIRPath syntax error in {{ ${source} }}: ${e.message} (column ${e.column})`);
    throw e;
  }
  for (const name of referencedVars(source)) {
    if (!scope.vars.has(name) && !BUILTIN_VARS.has(name)) {
      fail(
        src,
        path,
        `{{ ${source} }} uses %${name}, which is not defined here (defined: ${[...scope.vars].map((v) => `%${v}`).join(', ')})`,
      );
    }
  }
  for (const [, root, member] of source.matchAll(/%([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b(?!\s*\()/g)) {
    const known = root === 'settings' ? src.settings : ROOT_MEMBERS[root!];
    if (root === 'settings') src.settingsRead?.add(member!);
    if (known && !known.includes(member!)) {
      const has = known.length > 0 ? known.join(', ') : 'nothing';
      fail(
        src,
        path,
        root === 'settings'
          ? `{{ ${source} }} reads %settings.${member}, which the mapping's settings do not define (they define: ${has})`
          : `{{ ${source} }} reads %${root}.${member}, which %${root} does not have (it has: ${has}; names are case-sensitive)`,
      );
    }
  }
  for (const m of source.matchAll(/lookup\(\s*'([^']*)'/g)) {
    if (!Object.hasOwn(src.tables, m[1]!)) {
      fail(src, path, `{{ ${source} }} looks up table ${m[1]}, which the mapping does not define`);
    }
  }
  const where = `${src.locate(path)} (${pathText(path)})`;
  const evaluate = compiled.evaluate;
  return {
    ...compiled,
    evaluate: (vars) => {
      try {
        return evaluate(vars);
      } catch (e) {
        if (e instanceof LookupMissError)
          throw new ScribeError('MAPPING_EVAL', `{{ ${source} }}: ${e.message}`, { where });
        if (e instanceof ScribeError) throw e;
        throw new ScribeError(
          'MAPPING_EVAL',
          `{{ ${source} }} failed: ${(e as Error).message.split('\n')[0]}`,
          { where },
        );
      }
    },
  };
}

/** `%name` references (outside string literals). */
function referencedVars(source: string): string[] {
  const code = source.replace(/'(?:[^'\\]|\\.)*'/g, "''");
  return [...code.matchAll(/%([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!);
}

const PLACEHOLDER = /\{\{([\s\S]*?)\}\}/g;

function compileString(text: string, path: (string | number)[], src: TemplateSource, scope: Scope): Render {
  const parts: Array<string | CompiledExpr> = [];
  let last = 0;
  const literal = (from: number, to: number) => {
    const t = text.slice(from, to);
    // A `{{` with no `}}` after it is a typo, not text to send: say so at load, not in an EHR's chart.
    if (t.includes('{{')) {
      fail(
        src,
        path,
        `an unclosed {{ placeholder (no }} after it) in ${JSON.stringify(text.length > 80 ? `${text.slice(0, 77)}...` : text)}; close it, or write a literal {{ as {{ '{{' }}`,
      );
    }
    parts.push(t);
  };
  for (const m of text.matchAll(PLACEHOLDER)) {
    if (m.index > last) literal(last, m.index);
    const source = m[1]!.trim();
    if (source === '') fail(src, path, 'an empty {{ }} placeholder');
    parts.push(compileExpression(source, path, src, scope));
    last = m.index + m[0].length;
  }
  if (last < text.length) literal(last, text.length);
  if (parts.length === 0) return () => OMIT;
  if (parts.length === 1 && typeof parts[0] === 'string') {
    const constant = parts[0];
    return () => constant;
  }
  const where = src.locate(path);
  const nothing = src.omitBlank ? isBlank : (v: unknown) => v === '';
  if (parts.length === 1) {
    const expr = parts[0] as CompiledExpr;
    return (vars) => {
      const c = expr.evaluate(vars);
      if (c.length === 0) return OMIT;
      if (c.length === 1) return nothing(c[0]) ? OMIT : c[0];
      if (!src.omitBlank) return c;
      const kept = c.filter((v) => !isBlank(v));
      return kept.length === 0 ? OMIT : kept;
    };
  }
  return (vars) => {
    let out = '';
    for (const p of parts) {
      if (typeof p === 'string') {
        out += p;
        continue;
      }
      const c = p.evaluate(vars);
      if (c.length > 1) {
        throw new ScribeError(
          'MAPPING_EVAL',
          `{{ ${p.source} }} gave ${c.length} values inside a text; it must give one`,
          {
            where: `${where} (${pathText(path)})`,
          },
        );
      }
      if (c.length === 1) {
        const v = c[0];
        if (v !== null && typeof v === 'object') {
          throw new ScribeError(
            'MAPPING_EVAL',
            `{{ ${p.source} }} gave an object inside a text; select a member of it`,
            {
              where: `${where} (${pathText(path)})`,
            },
          );
        }
        out += String(v);
      }
    }
    return nothing(out) ? OMIT : out;
  };
}

function compileArray(
  items: unknown[],
  path: (string | number)[],
  src: TemplateSource,
  scope: Scope,
): Render {
  const renders = items.map((item, i) => {
    const r = compileNode(item, [...path, i], src, scope);
    const spreads =
      isFor(item) ||
      isInclude(item) ||
      (typeof item === 'string' && /^\s*\{\{[\s\S]*\}\}\s*$/.test(item) && !item.includes('}}{{'));
    return { r, spreads };
  });
  return (vars) => {
    const out: unknown[] = [];
    for (const { r, spreads } of renders) {
      const v = r(vars);
      if (v === OMIT) continue;
      if (spreads && Array.isArray(v)) {
        for (const x of v) if (x !== OMIT) out.push(x);
      } else out.push(v);
    }
    return out.length === 0 ? OMIT : out;
  };
}

/** An `$include` in a list splices a partial that renders a list (e.g. several HL7 segments). */
function isInclude(node: unknown): boolean {
  return node !== null && typeof node === 'object' && !Array.isArray(node) && '$include' in node;
}

function isFor(node: unknown): boolean {
  return node !== null && typeof node === 'object' && !Array.isArray(node) && '$for' in node;
}

function compileObject(
  obj: Record<string, unknown>,
  path: (string | number)[],
  src: TemplateSource,
  scope: Scope,
): Render {
  for (const k of Object.keys(obj)) {
    if (k.startsWith('$') && !DIRECTIVES.has(k))
      fail(src, [...path, k], `unknown directive ${k} (known: ${[...DIRECTIVES].join(', ')})`);
  }
  let inner = scope;
  // $let bindings are evaluated in order, each seeing the ones before it.
  const lets: Array<[string, CompiledExpr]> = [];
  if ('$let' in obj) {
    const l = obj['$let'];
    if (!l || typeof l !== 'object' || Array.isArray(l))
      fail(src, [...path, '$let'], '$let takes a map of name: expression');
    for (const [name, expr] of Object.entries(l as Record<string, unknown>)) {
      if (typeof expr !== 'string')
        fail(src, [...path, '$let', name], '$let values are FHIRPath expressions (strings)');
      // A bare expression, or a text with {{ }} placeholders ("urn:uuid:{{ %ids.compositionUuid }}").
      const isText = expr.includes('{{') && !/^\s*\{\{[\s\S]*\}\}\s*$/.test(expr);
      const letPath = [...path, '$let', name];
      if (isText) {
        const text = compileString(expr, letPath, src, inner);
        lets.push([
          name,
          {
            source: expr,
            fast: true,
            evaluate: (vars) => {
              const v = text(vars);
              return v === OMIT ? [] : [v];
            },
          },
        ]);
      } else lets.push([name, compileExpression(stripBraces(expr), letPath, src, inner)]);
      inner = { ...inner, vars: new Set([...inner.vars, name]) };
    }
  }
  const cond = '$if' in obj ? compileCondition(obj['$if'], [...path, '$if'], src, inner) : undefined;

  let body: Render;
  if ('$for' in obj) body = compileFor(obj, path, src, inner);
  else if ('$include' in obj) body = compileInclude(obj, path, src, inner);
  else {
    const members: Array<[string, Render]> = [];
    for (const [k, v] of Object.entries(obj)) {
      if (k.startsWith('$')) continue;
      members.push([k, compileNode(v, [...path, k], src, inner)]);
    }
    body = (vars) => {
      const out: Record<string, unknown> = {};
      let any = false;
      for (const [k, r] of members) {
        const v = r(vars);
        if (v !== OMIT) {
          out[k] = v;
          any = true;
        }
      }
      return any ? out : OMIT;
    };
  }

  if (lets.length === 0 && !cond) return body;
  return (vars) => {
    let scoped = vars;
    if (lets.length > 0) {
      scoped = Object.create(vars) as Vars;
      for (const [name, expr] of lets) {
        const c = expr.evaluate(scoped);
        scoped[name] = c.length === 1 ? c[0] : c;
      }
    }
    if (cond && !cond(scoped)) return OMIT;
    return body(scoped);
  };
}

function stripBraces(expr: string): string {
  const m = /^\s*\{\{([\s\S]*)\}\}\s*$/.exec(expr);
  return (m ? m[1]! : expr).trim();
}

function compileCondition(
  node: unknown,
  path: (string | number)[],
  src: TemplateSource,
  scope: Scope,
): (vars: Vars) => boolean {
  if (typeof node === 'boolean') return () => node;
  if (typeof node !== 'string') fail(src, path, '$if takes a FHIRPath expression');
  const expr = compileExpression(stripBraces(node), path, src, scope);
  const where = src.locate(path);
  return (vars) => {
    const c = expr.evaluate(vars);
    if (c.length === 0) return false;
    if (c.length === 1 && typeof c[0] === 'boolean') return c[0];
    throw new ScribeError('MAPPING_EVAL', `$if {{ ${expr.source} }} must give true, false or nothing`, {
      where: `${where} (${pathText(path)})`,
    });
  };
}

function compileFor(
  obj: Record<string, unknown>,
  path: (string | number)[],
  src: TemplateSource,
  scope: Scope,
): Render {
  const as = obj['$as'];
  const indexName = obj['$index'];
  if (typeof obj['$for'] !== 'string') fail(src, [...path, '$for'], '$for takes a FHIRPath expression');
  if (typeof as !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(as))
    fail(src, [...path, '$as'], '$for needs $as: <variable name>');
  if (
    indexName !== undefined &&
    (typeof indexName !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(indexName))
  ) {
    fail(src, [...path, '$index'], '$index takes a variable name');
  }
  if (!('$each' in obj)) fail(src, path, '$for needs $each: <template>');
  for (const k of Object.keys(obj)) {
    if (!k.startsWith('$'))
      fail(src, [...path, k], `a $for object has only $for, $as, $index, $each, $if and $let (found ${k})`);
  }
  const items = compileExpression(stripBraces(obj['$for']), [...path, '$for'], src, scope);
  const names = [as, ...(indexName ? [indexName as string] : [])];
  const each = compileNode(obj['$each'], [...path, '$each'], src, {
    ...scope,
    vars: new Set([...scope.vars, ...names]),
  });
  return (vars) => {
    const c = items.evaluate(vars);
    const out: unknown[] = [];
    const child = Object.create(vars) as Vars;
    for (let i = 0; i < c.length; i++) {
      child[as] = c[i];
      if (indexName) child[indexName as string] = i;
      const v = each(child);
      if (v === OMIT) continue;
      if (Array.isArray(v) && isFor(obj['$each'])) out.push(...v);
      else out.push(v);
    }
    return out.length === 0 ? OMIT : out;
  };
}

function compileInclude(
  obj: Record<string, unknown>,
  path: (string | number)[],
  src: TemplateSource,
  scope: Scope,
): Render {
  const name = obj['$include'];
  if (typeof name !== 'string' || !Object.hasOwn(src.partials, name)) {
    fail(
      src,
      [...path, '$include'],
      `no partial named ${JSON.stringify(name)} (partials: ${Object.keys(src.partials).join(', ') || 'none'})`,
    );
  }
  for (const k of Object.keys(obj)) {
    if (!k.startsWith('$'))
      fail(src, [...path, k], `an $include object has only $include, $with, $if and $let (found ${k})`);
  }
  if (scope.including.includes(name))
    fail(src, path, `partial ${name} includes itself (${[...scope.including, name].join(' → ')})`);
  const withs: Array<[string, CompiledExpr]> = [];
  const w = obj['$with'];
  if (w !== undefined) {
    if (!w || typeof w !== 'object' || Array.isArray(w))
      fail(src, [...path, '$with'], '$with takes a map of name: expression');
    for (const [k, expr] of Object.entries(w as Record<string, unknown>)) {
      if (typeof expr !== 'string') fail(src, [...path, '$with', k], '$with values are FHIRPath expressions');
      withs.push([k, compileExpression(stripBraces(expr), [...path, '$with', k], src, scope)]);
    }
  }
  const inner: Scope = {
    vars: new Set([...scope.vars, ...withs.map(([k]) => k)]),
    including: [...scope.including, name],
  };
  const def = src.partials[name]!;
  const partial = compileNode(def.node, [...def.path], { ...src, locate: def.locate }, inner);
  if (withs.length === 0) return partial;
  return (vars) => {
    const child = Object.create(vars) as Vars;
    for (const [k, expr] of withs) {
      const c = expr.evaluate(vars);
      child[k] = c.length === 1 ? c[0] : c;
    }
    return partial(child);
  };
}
