/**
 * Mapping files: YAML data with an `id`, a `version`, code tables, renderings and output templates. Loaded
 * once, validated and compiled; every problem is reported with file:line:column and the path inside the file.
 * The digest (sha256 over the file and its imports) is stamped on everything the mapping produces.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import {
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  visit,
  type Node as YamlNode,
} from 'yaml';
import { z } from 'zod';
import { formatPath } from '../contract/json.ts';
import { type LocatedIssue, ScribeError } from '../errors.ts';
import type { Tables } from './expr.ts';
import {
  compileTemplate,
  type Locate,
  type PartialDef,
  type Render,
  type TemplateSource,
} from './template.ts';

/** The variables every template may use at its root (see model.ts). */
export const ROOT_VARS = [
  'note',
  'patient',
  'encounter',
  'author',
  'organization',
  'healthscribe',
  'signature',
  'ids',
  'prior',
  'retraction',
  'mapping',
  'options',
  'renderings',
  'hl7',
  'settings',
] as const;

export type MappingFormat = 'fhir' | 'hl7v2';
export type LifecycleMode = 'new' | 'amendment' | 'retraction';

const template = z.unknown().refine((v) => v !== undefined && v !== null, 'a template is required');
const name = z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, 'must be a name: letters, digits, _ and -');

const RenderingSpec = z.strictObject({
  contentType: z.string().min(1),
  /** Text before the first section (a string template), e.g. a document title line. */
  header: z.string().optional(),
  /** One line per section with sentences (a string template over %section). */
  sectionHeading: z.string().optional(),
  /** One per sentence (a string template over %sentence and %section); must include %sentence.text unchanged. */
  sentence: z.string(),
  sentenceSeparator: z.string().default('\n'),
  sectionSeparator: z.string().default('\n\n'),
  /** Text after the last section. */
  footer: z.string().optional(),
  /** Wraps the whole text (a string template over %body), e.g. an HTML document. */
  wrap: z.string().optional(),
});
export type RenderingSpec = z.infer<typeof RenderingSpec>;

const RequestSpec = z.strictObject({
  method: z.enum(['POST', 'PUT']),
  url: z.string().min(1),
  ifNoneExist: z.string().optional(),
});

const ModeTemplates = z.strictObject({
  new: template,
  amendment: template.optional(),
  retraction: template.optional(),
});

const MappingSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must match [a-z0-9][a-z0-9-]{0,62}'),
  version: z
    .string()
    .regex(/^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/, 'must be a semantic version like 1.2.0'),
  description: z.string().min(1),
  format: z.enum(['fhir', 'hl7v2']),
  imports: z.array(z.string().min(1)).optional(),
  tables: z.record(name, z.record(z.string(), z.unknown())).optional(),
  partials: z.record(name, template).optional(),
  renderings: z.record(name, RenderingSpec).optional(),
  defaultRenderings: z.array(name).optional(),
  output: ModeTemplates,
  request: z
    .strictObject({
      new: RequestSpec.optional(),
      amendment: RequestSpec.optional(),
      retraction: RequestSpec.optional(),
    })
    .optional(),
  /** Free-form settings a format's serializer reads (e.g. HL7 delimiters). */
  settings: z.record(z.string(), z.unknown()).optional(),
  /**
   * What a retraction renders: `prior` (default) — the retracted revision re-sent unchanged with
   * %retraction set (FHIR: content unchanged); `self` — the retraction envelope itself, with %prior naming
   * the retracted revision (HL7: a status-change message that carries no content).
   */
  retractionSubject: z.enum(['prior', 'self']).default('prior'),
});

const ImportSchema = z.strictObject({
  description: z.string().optional(),
  tables: z.record(name, z.record(z.string(), z.unknown())).optional(),
  partials: z.record(name, template).optional(),
  renderings: z.record(name, RenderingSpec).optional(),
});

export interface CompiledRendering {
  readonly name: string;
  readonly contentType: string;
  readonly header?: Render;
  readonly sectionHeading?: Render;
  readonly sentence: Render;
  readonly sentenceSeparator: string;
  readonly sectionSeparator: string;
  readonly footer?: Render;
  readonly wrap?: Render;
}

export interface CompiledRequest {
  readonly method: 'POST' | 'PUT';
  readonly url: Render;
  readonly ifNoneExist?: Render;
}

/** A loaded, compiled mapping. */
export interface Mapping {
  readonly id: string;
  readonly version: string;
  readonly description: string;
  readonly format: MappingFormat;
  /** sha256 hex over the file's bytes and its imports' (path and bytes). */
  readonly digest: string;
  readonly file: string;
  /** The files it was compiled from: `file`, then its imports (a change to any is a new mapping version). */
  readonly sources: readonly string[];
  readonly tables: Tables;
  readonly renderings: ReadonlyMap<string, CompiledRendering>;
  readonly defaultRenderings: readonly string[];
  readonly output: Readonly<Partial<Record<LifecycleMode, Render>>>;
  readonly request: Readonly<Partial<Record<LifecycleMode, CompiledRequest>>>;
  readonly settings: Readonly<Record<string, unknown>>;
  readonly retractionSubject: 'prior' | 'self';
  /** Which parts of the input the mapping's templates reference (for the coverage report). */
  readonly references: ReadonlySet<string>;
}

interface ParsedYaml {
  readonly value: unknown;
  readonly locate: Locate;
}

function parseYaml(text: string, file: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number) => {
    const p = lineCounter.linePos(offset);
    return `${file}:${p.line}:${p.col}`;
  };
  const lines = text.split('\n');
  const problems: LocatedIssue[] = doc.errors.map((e) => {
    const line = lines[lineCounter.linePos(e.pos[0]).line - 1] ?? '';
    // `key: {{ expr }}` is a flow mapping to YAML; say what the author meant.
    const hint = /:\s*\{\{/.test(line) ? ' — an unquoted {{ expression }}? Quote it: "{{ … }}"' : '';
    return { where: at(e.pos[0]), message: `${e.message.split('\n')[0]!}${hint}` };
  });
  visit(doc, {
    Pair(_k, pair) {
      if (isMap(pair.key) || isSeq(pair.key)) {
        const r = (pair.key as YamlNode).range;
        problems.push({
          where: at(r?.[0] ?? 0),
          message: 'a map is used as a key — an unquoted {{ expression }}? Quote it: "{{ … }}"',
        });
      }
    },
  });
  if (problems.length > 0) {
    throw new ScribeError('MAPPING_INVALID', `${file} is not valid YAML: ${problems[0]!.message}`, {
      where: problems[0]!.where,
      issues: problems,
    });
  }
  const locate: Locate = (path) => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true);
      if (node && typeof node === 'object' && 'range' in node && (node as YamlNode).range) {
        // For a member, point at its key: that is where a reader looks.
        const parent = n > 0 ? doc.getIn(path.slice(0, n - 1), true) : undefined;
        if (isMap(parent)) {
          const pair = parent.items.find(
            (it) => isPair(it) && isScalar(it.key) && it.key.value === path[n - 1],
          );
          const kr = pair && isScalar(pair.key) ? pair.key.range : undefined;
          if (kr) return at(kr[0]);
        }
        return at((node as YamlNode).range![0]);
      }
    }
    return `${file}:1:1`;
  };
  return { value: doc.toJS({ maxAliasCount: 100 }), locate };
}

function schemaIssues(error: z.ZodError, locate: Locate): LocatedIssue[] {
  return error.issues.map((i) => {
    const path = i.path as (string | number)[];
    // zod names the keys itself in its message, but only in English text: keep ours, once.
    const message =
      i.code === 'unrecognized_keys'
        ? `unknown key(s) ${i.keys.map((k) => JSON.stringify(k)).join(', ')}`
        : i.message;
    const target = i.code === 'unrecognized_keys' ? [...path, i.keys[0]!] : path;
    return { where: `${locate(target)} (${formatPath(path)})`, message };
  });
}

function invalid(file: string, issues: LocatedIssue[]): ScribeError {
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  return new ScribeError('MAPPING_INVALID', `${file}: ${issues[0]!.message}${more}`, {
    where: issues[0]!.where,
    issues,
  });
}

/** Reads a mapping file (and its imports) from disk and compiles it. */
export function loadMappingFile(path: string): Mapping {
  const file = resolve(path);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new ScribeError(
      'MAPPING_NOT_FOUND',
      `cannot read mapping file (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      {
        where: path,
      },
    );
  }
  return compileMapping(bytes, file, (rel) => {
    const p = resolve(dirname(file), rel);
    try {
      return { file: p, bytes: readFileSync(p) };
    } catch (e) {
      throw new ScribeError(
        'MAPPING_INVALID',
        `cannot read import ${rel} (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
        {
          where: file,
        },
      );
    }
  });
}

export type ReadImport = (relativePath: string) => { file: string; bytes: Uint8Array };

/** Compiles mapping text. Pure apart from `readImport`. */
export function compileMapping(bytes: Uint8Array, file: string, readImport: ReadImport): Mapping {
  const text = new TextDecoder().decode(bytes);
  const parsed = parseYaml(text, file);
  const r = MappingSchema.safeParse(parsed.value);
  if (!r.success) throw invalid(file, schemaIssues(r.error, parsed.locate));
  const m = r.data;

  const hash = createHash('sha256').update(bytes);
  const tables: Record<string, Record<string, unknown>> = {};
  const partials: Record<string, PartialDef> = {};
  const addTables = (t: Record<string, Record<string, unknown>> | undefined, where: string) => {
    for (const [k, v] of Object.entries(t ?? {})) {
      if (k in tables) throw new ScribeError('MAPPING_INVALID', `table ${k} is defined twice`, { where });
      tables[k] = v;
    }
  };
  const addPartials = (p: Record<string, unknown> | undefined, locate: Locate) => {
    for (const [k, node] of Object.entries(p ?? {})) {
      if (k in partials)
        throw new ScribeError('MAPPING_INVALID', `partial ${k} is defined twice`, {
          where: locate(['partials', k]),
        });
      partials[k] = { node, path: ['partials', k], locate };
    }
  };
  const renderingSpecs: Array<[string, RenderingSpec, Locate]> = [];
  const sources = [file];
  for (const rel of m.imports ?? []) {
    const imp = readImport(rel);
    sources.push(imp.file);
    hash.update(`\0${rel}\0`).update(imp.bytes);
    const ip = parseYaml(new TextDecoder().decode(imp.bytes), imp.file);
    const ir = ImportSchema.safeParse(ip.value);
    if (!ir.success) throw invalid(imp.file, schemaIssues(ir.error, ip.locate));
    addTables(ir.data.tables, imp.file);
    addPartials(ir.data.partials, ip.locate);
    for (const [k, v] of Object.entries(ir.data.renderings ?? {})) renderingSpecs.push([k, v, ip.locate]);
  }
  for (const [k, v] of Object.entries(m.renderings ?? {})) renderingSpecs.push([k, v, parsed.locate]);
  addTables(m.tables, file);
  addPartials(m.partials, parsed.locate);

  const settingsRead = new Set<string>();
  const src: TemplateSource = {
    tables,
    partials,
    locate: parsed.locate,
    settings: Object.keys(m.settings ?? {}),
    settingsRead,
  };
  const compileAt =
    (locate: Locate) =>
    (node: unknown, path: (string | number)[], extra: readonly string[] = []) =>
      compileTemplate(node, path, { ...src, locate }, [...ROOT_VARS, ...extra]);
  const compile = compileAt(parsed.locate);
  // FHIR output leaves out blank strings as well as empty ones (a FHIR string needs non-whitespace content).
  const compileOutput = (node: unknown, path: (string | number)[]) =>
    compileTemplate(node, path, { ...src, omitBlank: m.format === 'fhir' }, ROOT_VARS);

  const renderings = new Map<string, CompiledRendering>();
  for (const [rname, spec, locate] of renderingSpecs) {
    const p = ['renderings', rname];
    if (renderings.has(rname))
      throw new ScribeError('MAPPING_INVALID', `rendering ${rname} is defined twice`, { where: locate(p) });
    if (!/%sentence\.text(?![A-Za-z0-9_.(])/.test(spec.sentence.replace(/\.escape\('html'\)/g, ''))) {
      throw new ScribeError(
        'MAPPING_INVALID',
        'a rendering must carry each sentence unchanged: its sentence template needs {{ %sentence.text }}',
        {
          where: `${locate([...p, 'sentence'])} (renderings.${rname}.sentence)`,
        },
      );
    }
    const compile = compileAt(locate);
    renderings.set(rname, {
      name: rname,
      contentType: spec.contentType,
      ...(spec.header !== undefined ? { header: compile(spec.header, [...p, 'header']) } : {}),
      ...(spec.sectionHeading !== undefined
        ? { sectionHeading: compile(spec.sectionHeading, [...p, 'sectionHeading'], ['section']) }
        : {}),
      sentence: compile(spec.sentence, [...p, 'sentence'], ['section', 'sentence']),
      sentenceSeparator: spec.sentenceSeparator,
      sectionSeparator: spec.sectionSeparator,
      ...(spec.footer !== undefined ? { footer: compile(spec.footer, [...p, 'footer']) } : {}),
      ...(spec.wrap !== undefined ? { wrap: compile(spec.wrap, [...p, 'wrap'], ['body']) } : {}),
    });
  }
  const defaultRenderings = m.defaultRenderings ?? [...renderings.keys()].slice(0, 1);
  for (const [i, d] of defaultRenderings.entries()) {
    if (!renderings.has(d)) {
      throw new ScribeError(
        'MAPPING_INVALID',
        `defaultRenderings names ${d}, which is not a rendering of this mapping`,
        {
          where: parsed.locate(['defaultRenderings', i]),
        },
      );
    }
  }

  const output: Partial<Record<LifecycleMode, Render>> = {};
  for (const mode of ['new', 'amendment', 'retraction'] as const) {
    if (m.output[mode] !== undefined) output[mode] = compileOutput(m.output[mode], ['output', mode]);
  }
  const request: Partial<Record<LifecycleMode, CompiledRequest>> = {};
  for (const mode of ['new', 'amendment', 'retraction'] as const) {
    const spec = m.request?.[mode];
    if (!spec) continue;
    request[mode] = {
      method: spec.method,
      url: compile(spec.url, ['request', mode, 'url']),
      ...(spec.ifNoneExist !== undefined
        ? { ifNoneExist: compile(spec.ifNoneExist, ['request', mode, 'ifNoneExist']) }
        : {}),
    };
  }

  return {
    id: m.id,
    version: m.version,
    description: m.description,
    format: m.format,
    digest: hash.digest('hex'),
    file,
    sources,
    tables,
    renderings,
    defaultRenderings,
    output,
    request,
    settings: checkSettingsRead(m.settings ?? {}, settingsRead, parsed.locate),
    retractionSubject: m.retractionSubject,
    references: new Set([...text.matchAll(/%([A-Za-z_]+(?:\.[A-Za-z_]+)*)/g)].map((x) => x[1]!)),
  };
}

/** Settings the engine itself reads (the HL7 serializer), whether or not a template does. */
const ENGINE_SETTINGS: ReadonlySet<string> = new Set(['delimiters']);

/**
 * A setting nothing reads is a typo waiting to change the output silently (`evidenceIndx: false` leaves the
 * evidence index on): refused, at the key.
 */
function checkSettingsRead(
  settings: Readonly<Record<string, unknown>>,
  read: ReadonlySet<string>,
  locate: Locate,
): Readonly<Record<string, unknown>> {
  for (const key of Object.keys(settings)) {
    if (read.has(key) || ENGINE_SETTINGS.has(key)) continue;
    throw new ScribeError(
      'MAPPING_INVALID',
      `settings.${key} is read by nothing: no template uses %settings.${key} (a typo of ${[...read, ...ENGINE_SETTINGS].join(', ') || 'nothing'}?)`,
      { where: `${locate(['settings', key])} (settings.${key})` },
    );
  }
  return settings;
}
