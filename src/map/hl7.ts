/**
 * HL7 v2 ER7 serialisation for `format: hl7v2` mappings.
 *
 * A template renders a list of segments. A segment is an object `{ segment: NAME, <n>: field, … }` with fields
 * keyed by their position (MSH counted as the standard does: MSH-1 is the field separator, MSH-2 the encoding
 * characters, both written by the serialiser). Keys make positions explicit, so an empty field is simply an
 * absent key — a template never counts pipes. A field is text, a number, an object of components keyed by
 * position (each component text or an object of sub-components), or `{ repeat: [field, …] }`.
 *
 * Every text value is escaped for the message's own delimiters (escape character first): `\F\ \S\ \T\ \R\ \E\`;
 * line breaks (CRLF, CR or LF) become `\.br\`, since a raw CR would end the segment. @medplum/core and
 * hl7-standard escape nothing (reference/tooling.md §5), so this small function is ours, and proven by a property
 * test against an independent parser (test/hl7-roundtrip.property.test.ts).
 */
import { ScribeError } from '../errors.ts';

/** The five delimiters, MSH-1 then MSH-2's four: component, repetition, escape, sub-component. */
export interface Delimiters {
  readonly field: string;
  readonly component: string;
  readonly repetition: string;
  readonly escape: string;
  readonly subcomponent: string;
}

export const DEFAULT_DELIMITERS: Delimiters = {
  field: '|',
  component: '^',
  repetition: '~',
  escape: '\\',
  subcomponent: '&',
};

/** `|^~\&` → Delimiters. Throws MAPPING_INVALID unless five distinct, printable, non-alphanumeric characters. */
export function parseDelimiters(s: string): Delimiters {
  const chars = [...s];
  if (
    chars.length !== 5 ||
    new Set(chars).size !== 5 ||
    chars.some((c) => /[A-Za-z0-9\s]/.test(c) || c.charCodeAt(0) < 0x21 || c.charCodeAt(0) > 0x7e)
  ) {
    throw new ScribeError(
      'MAPPING_INVALID',
      `settings.delimiters must be five distinct printable punctuation characters, like "|^~\\&" (got ${JSON.stringify(s)})`,
    );
  }
  const [field, component, repetition, esc, subcomponent] = chars as [string, string, string, string, string];
  return { field, component, repetition, escape: esc, subcomponent };
}

/** Escapes one text value for a field, component or sub-component. */
export function escapeHl7(text: string, d: Delimiters = DEFAULT_DELIMITERS): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === d.escape) out += `${d.escape}E${d.escape}`;
    else if (c === d.field) out += `${d.escape}F${d.escape}`;
    else if (c === d.component) out += `${d.escape}S${d.escape}`;
    else if (c === d.subcomponent) out += `${d.escape}T${d.escape}`;
    else if (c === d.repetition) out += `${d.escape}R${d.escape}`;
    else if (c === '\r') {
      if (text[i + 1] === '\n') i++;
      out += `${d.escape}.br${d.escape}`;
    } else if (c === '\n') out += `${d.escape}.br${d.escape}`;
    else out += c;
  }
  return out;
}

type Positional = Record<string, unknown>;

function isPositional(v: unknown): v is Positional {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function text(v: unknown, where: string, d: Delimiters): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return escapeHl7(v, d);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new ScribeError(
    'MAPPING_EVAL',
    `an HL7 value must be text or a number, not ${Array.isArray(v) ? 'a list' : 'an object'}`,
    { where },
  );
}

/**
 * Joins positional members `first`..max with `sep`, empty where absent; trailing empties dropped.
 * (`first` is 3 for MSH, whose first two fields the serialiser writes itself.)
 */
function positional(
  v: Positional,
  where: string,
  sep: string,
  item: (x: unknown, where: string) => string,
  first = 1,
): string {
  const parts: string[] = [];
  for (const [k, x] of Object.entries(v)) {
    if (!/^[1-9]\d*$/.test(k) || Number(k) < first) {
      throw new ScribeError('MAPPING_EVAL', `position ${JSON.stringify(k)} is not a number from ${first}`, {
        where,
      });
    }
    parts[Number(k) - first] = item(x, `${where}.${k}`);
  }
  let end = parts.length;
  while (end > 0 && !parts[end - 1]) end--;
  let out = '';
  for (let i = 0; i < end; i++) out += (i > 0 ? sep : '') + (parts[i] ?? '');
  return out;
}

function component(v: unknown, where: string, d: Delimiters): string {
  return isPositional(v) ? positional(v, where, d.subcomponent, (x, w) => text(x, w, d)) : text(v, where, d);
}

function repetition(v: unknown, where: string, d: Delimiters): string {
  return isPositional(v)
    ? positional(v, where, d.component, (x, w) => component(x, w, d))
    : text(v, where, d);
}

function field(v: unknown, where: string, d: Delimiters): string {
  if (isPositional(v) && 'repeat' in v) {
    const reps = v['repeat'];
    const list = Array.isArray(reps) ? reps : reps === undefined ? [] : [reps];
    return list.map((r, i) => repetition(r, `${where}.repeat[${i}]`, d)).join(d.repetition);
  }
  return repetition(v, where, d);
}

/** Serialises rendered segments to ER7: segments separated (and terminated) by CR. */
export function serializeHl7(value: unknown, d: Delimiters = DEFAULT_DELIMITERS): string {
  const segments = Array.isArray(value) ? value : [value];
  let out = '';
  segments.forEach((seg, i) => {
    const where = `segment ${i + 1}`;
    if (
      !isPositional(seg) ||
      typeof seg['segment'] !== 'string' ||
      !/^[A-Z][A-Z0-9]{2}$/.test(seg['segment'])
    ) {
      throw new ScribeError('MAPPING_EVAL', 'each HL7 segment needs `segment: <three-character name>`', {
        where,
      });
    }
    const name = seg['segment'];
    const { segment: _name, ...fields } = seg;
    if (name === 'MSH') {
      // MSH-1 is the field separator itself and MSH-2 the encoding characters: written here from the
      // delimiters, never escaped; the template gives MSH-3 onwards.
      const rest = positional(fields, `${where} (MSH)`, d.field, (x, w) => field(x, w, d), 3);
      out += `MSH${d.field}${d.component}${d.repetition}${d.escape}${d.subcomponent}${rest ? `${d.field}${rest}` : ''}\r`;
    } else {
      const body = positional(fields, `${where} (${name})`, d.field, (x, w) => field(x, w, d));
      out += `${name}${body ? `${d.field}${body}` : ''}\r`;
    }
  });
  return out;
}
