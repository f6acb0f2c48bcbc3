/**
 * The mapping engine: a verified note + a compiled mapping → the exact bytes a destination receives.
 * Pure and deterministic: no IO, no clock, no randomness (every time comes from the envelope, every id from
 * src/map/ids.ts), so the same envelope and mapping version always give the same bytes.
 */
import { createHash } from 'node:crypto';
import type { VerifiedNote } from '../contract/verify.ts';
import { ScribeError } from '../errors.ts';
import type { Vars } from './expr.ts';
import { DEFAULT_DELIMITERS, type Delimiters, escapedPieces, parseDelimiters, serializeHl7 } from './hl7.ts';
import { hl7Vars } from './hl7-vars.ts';
import type { LifecycleMode, Mapping } from './mapping-file.ts';
import { buildVars, type RenderOptions } from './model.ts';
import { OMIT } from './template.ts';

/** Tag systems that stamp every FHIR resource with the mapping that produced it (docs/mappings.md). */
export const MAPPING_TAG_SYSTEM = 'https://fhir.scribe-bridge.dev/CodeSystem/mapping';
export const MAPPING_DIGEST_TAG_SYSTEM = 'https://fhir.scribe-bridge.dev/CodeSystem/mapping-digest';

export interface RenderInput {
  readonly note: VerifiedNote;
  /** The revision a retraction retracts (required for a retraction: its content is re-sent unchanged). */
  readonly prior?: VerifiedNote;
  readonly options?: RenderOptions;
}

/** How a FHIR payload is written (for the FHIR REST destination). */
export interface WriteRequest {
  readonly method: 'POST' | 'PUT';
  readonly url: string;
  readonly ifNoneExist?: string;
}

export interface Rendering {
  readonly mapping: { readonly id: string; readonly version: string; readonly digest: string };
  readonly mode: LifecycleMode;
  readonly format: Mapping['format'];
  readonly contentType: string;
  /** The exact bytes to deliver (UTF-8). */
  readonly body: string;
  readonly sha256: string;
  /** The rendered value before serialisation (FHIR JSON; for HL7, the segment list). */
  readonly value: unknown;
  readonly request?: WriteRequest;
}

export function lifecycleMode(note: VerifiedNote): LifecycleMode {
  const s = note.envelope.status;
  return s === 'entered-in-error' ? 'retraction' : note.envelope.revision > 1 ? 'amendment' : 'new';
}

/** A format's serializer: value → exact bytes. */
export type Serializer = (
  value: unknown,
  mapping: Mapping,
  vars: Vars,
) => { body: string; contentType: string };

const serializers: Record<Mapping['format'], Serializer> = {
  fhir: (value) => ({ body: JSON.stringify(value), contentType: 'application/fhir+json' }),
  hl7v2: (value, mapping) => ({
    body: serializeHl7(value, delimitersOf(mapping)),
    contentType: 'x-application/hl7-v2+er7',
  }),
};

function delimitersOf(mapping: Mapping): Delimiters {
  return typeof mapping.settings['delimiters'] === 'string'
    ? parseDelimiters(mapping.settings['delimiters'])
    : DEFAULT_DELIMITERS;
}

/** Renders one note with one mapping. Throws ScribeError (MAPPING_*) only. */
export function render(mapping: Mapping, input: RenderInput): Rendering {
  const mode = lifecycleMode(input.note);
  const template = mapping.output[mode] ?? (mode === 'amendment' ? mapping.output.new : undefined);
  if (!template) {
    throw new ScribeError(
      'MAPPING_UNSUPPORTED',
      `mapping ${mapping.id} ${mapping.version} has no output for a ${mode}`,
      {
        where: `${mapping.file} (output.${mode})`,
      },
    );
  }
  let subject = input.note;
  if (mode === 'retraction' && mapping.retractionSubject === 'prior') {
    const prior = input.prior;
    if (!prior) {
      throw new ScribeError(
        'MAPPING_PRIOR_REQUIRED',
        `revision ${input.note.envelope.revision} retracts revision ${input.note.envelope.replaces}, which was not given`,
      );
    }
    const e = input.note.envelope;
    if (
      prior.envelope.tenant !== e.tenant ||
      prior.envelope.noteId !== e.noteId ||
      prior.envelope.revision !== e.replaces
    ) {
      throw new ScribeError(
        'MAPPING_PRIOR_REQUIRED',
        `the prior revision given is not revision ${e.replaces} of note ${e.noteId}`,
      );
    }
    subject = prior;
  }
  const stamp = { id: mapping.id, version: mapping.version, digest: mapping.digest };
  const options = input.options ?? {};
  const vars = buildVars(subject, stamp, options, mode === 'retraction' ? input.note : undefined);
  vars['settings'] = mapping.settings;
  if (mapping.format === 'hl7v2') vars['hl7'] = hl7Vars(vars);
  vars['renderings'] = renderTexts(mapping, vars, options);

  let value = template(vars);
  if (value === OMIT)
    throw new ScribeError('MAPPING_EVAL', `mapping ${mapping.id} produced nothing for this note`, {
      where: mapping.file,
    });
  if (mapping.format === 'fhir') value = stampFhir(value, stamp);
  const { body, contentType } = serializers[mapping.format](value, mapping, vars);
  const req = mapping.request[mode] ?? (mode === 'amendment' ? mapping.request.new : undefined);
  const request = req ? writeRequest(req, vars) : undefined;
  return {
    mapping: stamp,
    mode,
    format: mapping.format,
    contentType,
    body,
    sha256: createHash('sha256').update(body).digest('hex'),
    value,
    ...(request ? { request } : {}),
  };
}

function writeRequest(req: NonNullable<Mapping['request']['new']>, vars: Vars): WriteRequest {
  const url = req.url(vars);
  const ifNoneExist = req.ifNoneExist?.(vars);
  if (typeof url !== 'string') throw new ScribeError('MAPPING_EVAL', 'request.url did not give a text');
  return { method: req.method, url, ...(typeof ifNoneExist === 'string' ? { ifNoneExist } : {}) };
}

/** Renders the mapping's text renderings (the ones the destination asked for, or the defaults). */
function renderTexts(mapping: Mapping, vars: Vars, options: RenderOptions): Record<string, unknown> {
  const wanted = options.renderings ?? mapping.defaultRenderings;
  const hl7 = mapping.format === 'hl7v2' ? delimitersOf(mapping) : undefined;
  const out: Record<string, unknown> = {};
  const list: unknown[] = [];
  for (const name of wanted) {
    const r = mapping.renderings.get(name);
    if (!r) {
      throw new ScribeError('MAPPING_UNSUPPORTED', `mapping ${mapping.id} has no rendering ${name}`, {
        hint: `Choose from: ${[...mapping.renderings.keys()].join(', ')}.`,
      });
    }
    const text = renderText(r, vars);
    const bytes = Buffer.from(text, 'utf8');
    // One item per line (CRLF, CR or LF): what HL7 TX content takes, one OBX per line.
    const lines = text.replace(/\r?\n$|\r$/, '').split(/\r\n|\r|\n/);
    const entry = {
      name,
      contentType: r.contentType,
      text,
      lines,
      // For HL7: the text, and each line, in pieces that fit one FT / TX value once escaped (65,536 characters).
      ...(hl7
        ? { pieces: escapedPieces(text, hl7), linePieces: lines.flatMap((l) => escapedPieces(l, hl7)) }
        : {}),
      data: bytes.toString('base64'),
      size: bytes.length,
      hash: createHash('sha1').update(bytes).digest('base64'),
    };
    out[name] = entry;
    list.push(entry);
  }
  out['all'] = list;
  return out;
}

const asText = (v: unknown): string => (v === OMIT || v === undefined ? '' : String(v));

function renderText(r: NonNullable<ReturnType<Mapping['renderings']['get']>>, vars: Vars): string {
  const note = vars['note'] as { sections: Array<{ sentences: unknown[] }> };
  const parts: string[] = [];
  const scope = Object.create(vars) as Vars;
  for (const section of note.sections) {
    if (section.sentences.length === 0) continue;
    scope['section'] = section;
    const lines: string[] = [];
    for (const sentence of section.sentences) {
      scope['sentence'] = sentence;
      lines.push(asText(r.sentence(scope)));
    }
    const heading = r.sectionHeading ? asText(r.sectionHeading(scope)) : '';
    parts.push((heading ? `${heading}\n` : '') + lines.join(r.sentenceSeparator));
  }
  const body =
    (r.header ? asText(r.header(vars)) : '') +
    parts.join(r.sectionSeparator) +
    (r.footer ? asText(r.footer(vars)) : '');
  if (!r.wrap) return body;
  const w = Object.create(vars) as Vars;
  w['body'] = body;
  return asText(r.wrap(w));
}

function stampFhir(value: unknown, stamp: { id: string; version: string; digest: string }): unknown {
  const tags = [
    { system: MAPPING_TAG_SYSTEM, code: `${stamp.id}|${stamp.version}` },
    { system: MAPPING_DIGEST_TAG_SYSTEM, code: stamp.digest },
  ];
  const stampOne = (r: Record<string, unknown>) => {
    const meta = (r['meta'] as Record<string, unknown> | undefined) ?? {};
    const tag = Array.isArray(meta['tag']) ? [...meta['tag'], ...tags] : tags;
    r['meta'] = { ...meta, tag };
  };
  if (value && typeof value === 'object' && 'resourceType' in value) {
    const res = value as Record<string, unknown>;
    stampOne(res);
    if (res['resourceType'] === 'Bundle' && Array.isArray(res['entry'])) {
      for (const e of res['entry'] as Array<{ resource?: Record<string, unknown> }>)
        if (e.resource) stampOne(e.resource);
    }
  }
  return value;
}
