/**
 * Mapping expressions are FHIRPath (the `fhirpath` package, HL7's reference JavaScript implementation).
 *
 * Every expression is parsed by fhirpath at load, so a syntax error is reported where it was written. Most
 * expressions in a mapping are plain paths (`%sentence.text`, `%patient.identifier[0]`), and fhirpath.js costs
 * about 1.6 µs per evaluation even compiled — a typical transaction Bundle needs ~2,000 of them. So the
 * compiler recognises a small, exactly defined subset of FHIRPath in the parsed syntax tree and evaluates it
 * with direct property access; everything else runs through fhirpath.js. The subset's results equal
 * fhirpath.js's for the same inputs (a property test, `expr.property.test.ts`, checks that):
 *
 *   %var  ·  'string' and integer literals  ·  {}  ·  .member  ·  [integer literal]  ·  .first()  ·  .exists()
 *   ·  .empty()  ·  .not()  ·  .upper()  ·  .lower()  ·  .escape('html')  ·  iif(c, a[, b])
 *   ·  lookup('table', <subset expression>)
 *
 * `lookup(table, key)` is the one function scribe-bridge adds to FHIRPath: the row of a mapping code table.
 */
import fhirpath from 'fhirpath';

/** A FHIRPath collection. */
export type Collection = unknown[];

/** Evaluation scope: FHIRPath environment variables (`%name`). */
export type Vars = Record<string, unknown>;

/** Code tables by name; rows by key. */
export type Tables = Readonly<Record<string, Readonly<Record<string, unknown>>>>;

export interface CompiledExpr {
  readonly source: string;
  /** Whether the fast subset evaluates it (else fhirpath.js). */
  readonly fast: boolean;
  readonly evaluate: (vars: Vars) => Collection;
}

export class ExprSyntaxError extends Error {
  readonly line: number;
  readonly column: number;
  constructor(message: string, line: number, column: number) {
    super(message);
    this.name = 'ExprSyntaxError';
    this.line = line;
    this.column = column;
  }
}

interface AstNode {
  type: string;
  text?: string;
  children?: AstNode[];
  start?: { line: number; column: number };
}

type Step = (v: unknown) => Collection;
/** A fast evaluator; `undefined` means "outside the subset for this input": fhirpath.js decides. */
type Fast = (vars: Vars) => Collection | undefined;

/** FHIRPath's view of a JS value as a collection: absent → empty, array → its items (flattened), else one item. */
export function toCollection(v: unknown): Collection {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) {
    let flat = true;
    for (const x of v) {
      if (x === undefined || x === null || Array.isArray(x)) {
        flat = false;
        break;
      }
    }
    return flat ? v : v.flatMap(toCollection);
  }
  return [v];
}

function member(name: string): Step {
  return (v) => {
    if (v === undefined || v === null || typeof v !== 'object') return [];
    return toCollection((v as Record<string, unknown>)[name]);
  };
}

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** fhirpath.js's `escape('html')`: the five XML-significant characters. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

/** The functions scribe-bridge adds to FHIRPath, as fhirpath.js's user invocation table. */
export function userInvocationTable(tables: Tables) {
  return {
    lookup: {
      fn: (_inputs: unknown[], table: unknown, key: unknown) => lookupRow(tables, table, key),
      arity: { 2: ['String', 'String'] as ('String' | 'Any')[] },
    },
  };
}

/** A `lookup()` found no row for its key and the table has no `'*'` default row. */
export class LookupMissError extends Error {
  readonly table: string;
  readonly key: string;
  constructor(table: string, key: string) {
    super(`table ${table} has no row for ${JSON.stringify(key)} and no '*' default row`);
    this.name = 'LookupMissError';
    this.table = table;
    this.key = key;
  }
}

/**
 * The row of `table` for `key`; the `'*'` row when the key is missing; an error when neither exists — a code
 * table that does not cover its input is a mapping defect, never silently an empty code.
 */
function lookupRow(tables: Tables, table: unknown, key: unknown): Collection {
  if (typeof table !== 'string' || typeof key !== 'string') return [];
  const t = tables[table];
  if (!t) throw new LookupMissError(table, key);
  if (Object.hasOwn(t, key)) return toCollection(t[key]);
  if (Object.hasOwn(t, '*')) return toCollection(t['*']);
  throw new LookupMissError(table, key);
}

/** Compiles a FHIRPath expression; throws ExprSyntaxError with line/column on a syntax error. */
export function compileExpr(source: string, tables: Tables): CompiledExpr {
  let ast: AstNode;
  try {
    ast = fhirpath.parse(source) as AstNode;
  } catch (e) {
    const m = /line: (\d+); column: (\d+); message: (.*)/s.exec(String((e as Error).message));
    throw new ExprSyntaxError(
      m ? m[3]!.split('\n')[0]! : String((e as Error).message),
      m ? Number(m[1]) : 1,
      m ? Number(m[2]) : 0,
    );
  }
  let slowFn: ((resource: unknown, vars: Vars) => unknown) | undefined;
  const slow = (vars: Vars): Collection => {
    slowFn ??= fhirpath.compile(source, undefined, { userInvocationTable: userInvocationTable(tables) }) as (
      r: unknown,
      v: Vars,
    ) => unknown;
    const r = slowFn({}, vars);
    return Array.isArray(r) ? r : toCollection(r);
  };
  const fast = compileFast(ast, tables);
  if (fast) return { source, fast: true, evaluate: (vars) => fast(vars) ?? slow(vars) };
  return { source, fast: false, evaluate: slow };
}

/** Evaluates the fast subset, or returns undefined when the expression is outside it. */
function compileFast(ast: AstNode, tables: Tables): Fast | undefined {
  const body = unwrap(ast);
  return body ? compileTerm(body, tables) : undefined;
}

function unwrap(n: AstNode): AstNode | undefined {
  let cur = n;
  while (cur.type === 'EntireExpression' && cur.children?.length === 1) cur = cur.children[0]!;
  return cur.type === 'EntireExpression' ? undefined : cur;
}

function compileTerm(n: AstNode, tables: Tables): Fast | undefined {
  switch (n.type) {
    case 'TermExpression': {
      const t = n.children?.[0];
      if (t?.type === 'ExternalConstantTerm') {
        const name = externalName(t);
        if (name === undefined) return undefined;
        return (vars) => toCollection(vars[name]);
      }
      if (t?.type === 'InvocationTerm') return compileFunctionTerm(t, tables);
      if (t?.type === 'LiteralTerm') return compileLiteral(t);
      return undefined;
    }
    case 'InvocationExpression': {
      const [left, inv] = n.children ?? [];
      if (!left || !inv) return undefined;
      const base = compileTerm(left, tables);
      if (!base) return undefined;
      if (inv.type === 'MemberInvocation') {
        const name = inv.children?.[0]?.text;
        if (!name || name.startsWith('`')) return undefined;
        const step = member(name);
        return (vars) => {
          const items = base(vars);
          if (items === undefined) return undefined;
          if (items.length === 1) return step(items[0]);
          return items.flatMap(step);
        };
      }
      if (inv.type === 'FunctionInvocation') return compileMethod(base, inv);
      return undefined;
    }
    case 'IndexerExpression': {
      const [left, idx] = n.children ?? [];
      const base = left && compileTerm(left, tables);
      const i = idx && integerLiteral(idx);
      if (!base || i === undefined) return undefined;
      return (vars) => {
        const items = base(vars);
        if (items === undefined) return undefined;
        return i < items.length ? [items[i]] : [];
      };
    }
    default:
      return undefined;
  }
}

function externalName(t: AstNode): string | undefined {
  const ident = t.children?.[0]?.children?.[0];
  if (ident?.type !== 'Identifier' || !ident.text || ident.text.startsWith('`')) return undefined;
  return ident.text;
}

function integerLiteral(n: AstNode): number | undefined {
  const lit = n.type === 'TermExpression' ? n.children?.[0] : undefined;
  const num = lit?.type === 'LiteralTerm' ? lit.children?.[0] : undefined;
  if (num?.type !== 'NumberLiteral' || !num.text || !/^\d+$/.test(num.text)) return undefined;
  return Number(num.text);
}

function stringLiteral(n: AstNode | undefined): string | undefined {
  const lit = n?.type === 'TermExpression' ? n.children?.[0] : undefined;
  const s = lit?.type === 'LiteralTerm' ? lit.children?.[0] : undefined;
  if (s?.type !== 'StringLiteral' || !s.text) return undefined;
  const body = s.text.slice(1, -1);
  return body.includes('\\') ? undefined : body;
}

/** Function name and parameter nodes of a `Function` node. */
function functionParts(fn: AstNode | undefined): { name: string; params: AstNode[] } | undefined {
  if (fn?.type !== 'Functn') return undefined;
  const name = fn.children?.[0]?.text;
  const paramList = fn.children?.[1];
  const params = paramList?.type === 'ParamList' ? (paramList.children ?? []) : [];
  return name ? { name, params } : undefined;
}

function compileMethod(base: Fast, inv: AstNode): Fast | undefined {
  const f = functionParts(inv.children?.[0]);
  if (!f) return undefined;
  if (f.name === 'first' && f.params.length === 0) {
    return (vars) => {
      const items = base(vars);
      if (items === undefined) return undefined;
      return items.length > 0 ? [items[0]] : [];
    };
  }
  if (f.name === 'exists' && f.params.length === 0) {
    return (vars) => {
      const items = base(vars);
      return items === undefined ? undefined : [items.length > 0];
    };
  }
  if (f.name === 'empty' && f.params.length === 0) {
    return (vars) => {
      const items = base(vars);
      return items === undefined ? undefined : [items.length === 0];
    };
  }
  if (f.name === 'not' && f.params.length === 0) {
    return (vars) => {
      const items = base(vars);
      if (items?.length === 1 && typeof items[0] === 'boolean') return [!items[0]];
      return items?.length === 0 ? [] : undefined;
    };
  }
  if ((f.name === 'upper' || f.name === 'lower') && f.params.length === 0) {
    const upper = f.name === 'upper';
    return (vars) => {
      const items = base(vars);
      if (items?.length === 1 && typeof items[0] === 'string')
        return [upper ? items[0].toUpperCase() : items[0].toLowerCase()];
      return items?.length === 0 ? [] : undefined;
    };
  }
  if (f.name === 'escape' && f.params.length === 1 && stringLiteral(f.params[0]) === 'html') {
    return (vars) => {
      const items = base(vars);
      if (items?.length === 1 && typeof items[0] === 'string') return [escapeHtml(items[0])];
      return items?.length === 0 ? [] : undefined;
    };
  }
  return undefined;
}

function compileLiteral(t: AstNode): Fast | undefined {
  const lit = t.children?.[0];
  if (lit?.type === 'NullLiteral' || (!lit && t.text === '{}')) return () => [];
  if (lit?.type === 'NumberLiteral' && lit.text && /^\d{1,15}$/.test(lit.text)) {
    const n = [Number(lit.text)];
    return () => n;
  }
  const str = stringLiteral({ type: 'TermExpression', children: [t] });
  if (str !== undefined) return () => [str];
  return undefined;
}

/** iif(criterion, true-result[, otherwise-result]): branches evaluated only when chosen, as in fhirpath.js. */
function compileIif(params: AstNode[], tables: Tables): Fast | undefined {
  if (params.length < 2 || params.length > 3) return undefined;
  const [c, a, b] = params.map((p) => compileTerm(unwrap(p) ?? p, tables));
  if (!c || !a || (params.length === 3 && !b)) return undefined;
  return (vars) => {
    const cond = c(vars);
    if (cond === undefined) return undefined;
    if (cond.length === 1 && cond[0] === true) return a(vars);
    return b ? b(vars) : [];
  };
}

function compileFunctionTerm(t: AstNode, tables: Tables): Fast | undefined {
  const call = functionParts(t.children?.[0]?.children?.[0]);
  if (call?.name === 'iif') return compileIif(call.params, tables);
  const f = call;
  if (f?.name !== 'lookup' || f.params.length !== 2) return undefined;
  const table = stringLiteral(f.params[0]);
  const key = f.params[1] && compileTerm(unwrap(f.params[1]) ?? f.params[1], tables);
  if (table === undefined || !key) return undefined;
  return (vars) => {
    const k = key(vars);
    if (k === undefined) return undefined;
    return k.length === 1 && typeof k[0] === 'string'
      ? lookupRow(tables, table, k[0])
      : k.length === 0
        ? []
        : undefined;
  };
}
