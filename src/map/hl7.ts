/**
 * HL7 v2 ER7 serialisation for `format: hl7v2` mappings.
 *
 * A template renders a list of segments. A segment is an object `{ segment: NAME, <n>: field, … }` with fields
 * keyed by their position (MSH counted as the standard does: MSH-1 is the field separator, MSH-2 the encoding
 * characters, both written by the serialiser). Keys make positions explicit, so an empty field is simply an
 * absent key — a template never counts pipes. A field is text, a number, an object of components keyed by
 * position (each component text or an object of sub-components), or `{ repeat: [field, …] }`.
 *
 * Every text value is escaped for the message's own delimiters (escape character first): `\F\ \S\ \T\ \R\ \E\`.
 * A raw CR would end the segment, so line breaks (CRLF, CR or LF) are escaped too: `\.br\` in formatted text (FT:
 * OBX-5 of an FT observation, NTE-3), where it is the line-break command; elsewhere `\.br\` means nothing, so
 * there they travel as hexadecimal data (`\X0D0A\`, `\X0D\`, `\X0A\`), which gives the exact characters back.
 * Numbers are written in HL7's NM form (plain decimal, never JavaScript's exponent form `1e-7`). @medplum/core and
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
  if (chars.includes('.')) {
    // The version (MSH-12 "2.5.1"), decimals and the \.br\ command are written with '.': as a delimiter it would
    // be escaped inside them, and the message no longer says what it means.
    throw new ScribeError(
      'MAPPING_INVALID',
      `settings.delimiters may not use "." (got ${JSON.stringify(s)}): HL7 writes the version 2.5.1, decimals and \\.br\\ with it`,
    );
  }
  const [field, component, repetition, esc, subcomponent] = chars as [string, string, string, string, string];
  return { field, component, repetition, escape: esc, subcomponent };
}

/** How line breaks are escaped: `br` in formatted text (FT), `hex` everywhere else. */
export type LineBreaks = 'br' | 'hex';

interface Escaper {
  readonly test: RegExp;
  readonly all: RegExp;
  readonly map: Map<string, string>;
}

const escapers = new WeakMap<Delimiters, Escaper>();
const hexEscapers = new WeakMap<Delimiters, Escaper>();

function escaperFor(d: Delimiters, lineBreaks: LineBreaks): Escaper {
  if (lineBreaks === 'hex') {
    let h = hexEscapers.get(d);
    if (!h) {
      const br = escaperFor(d, 'br');
      const map = new Map(br.map);
      map.set('\r\n', `${d.escape}X0D0A${d.escape}`);
      map.set('\r', `${d.escape}X0D${d.escape}`);
      map.set('\n', `${d.escape}X0A${d.escape}`);
      h = { test: br.test, all: br.all, map };
      hexEscapers.set(d, h);
    }
    return h;
  }
  let e = escapers.get(d);
  if (!e) {
    const chars = [d.escape, d.field, d.component, d.subcomponent, d.repetition].map((c) =>
      c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&'),
    );
    const cls = `\\r\\n|[\\r\\n${chars.join('')}]`;
    const map = new Map<string, string>([
      [d.escape, `${d.escape}E${d.escape}`],
      [d.field, `${d.escape}F${d.escape}`],
      [d.component, `${d.escape}S${d.escape}`],
      [d.subcomponent, `${d.escape}T${d.escape}`],
      [d.repetition, `${d.escape}R${d.escape}`],
      ['\r\n', `${d.escape}.br${d.escape}`],
      ['\r', `${d.escape}.br${d.escape}`],
      ['\n', `${d.escape}.br${d.escape}`],
    ]);
    e = { test: new RegExp(`[\\r\\n${chars.join('')}]`), all: new RegExp(cls, 'g'), map };
    escapers.set(d, e);
  }
  return e;
}

/**
 * Escapes one text value for a field, component or sub-component: each delimiter becomes its escape sequence
 * (the escape character itself included, so no sequence is ever formed twice), and a line break — CRLF, CR or
 * LF — becomes `\.br\` (formatted text) or hexadecimal data (any other type).
 */
export function escapeHl7(
  text: string,
  d: Delimiters = DEFAULT_DELIMITERS,
  lineBreaks: LineBreaks = 'br',
): string {
  const e = escaperFor(d, lineBreaks);
  if (!e.test.test(text)) return text;
  return text.replace(e.all, (m) => e.map.get(m)!);
}

/** HL7 v2.5.1's length of an FT or TX value (and so of OBX-5 holding one), in characters. */
export const HL7_TEXT_MAX = 65_536;

/** How far back (UTF-16 units) a cut looks for the start of a grapheme cluster; a longer cluster is cut inside. */
const GRAPHEME_LOOKBACK = 256;
const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * The last grapheme-cluster boundary at or before `i` and after `start` (so an accent never starts the next piece
 * without its letter, nor an emoji sequence split), or `i` itself when the cluster is longer than the lookback.
 */
function graphemeCut(text: string, start: number, i: number): number {
  const from = Math.max(start, i - GRAPHEME_LOOKBACK);
  let cut = from;
  for (const g of graphemes.segment(text.slice(from, Math.min(text.length, i + GRAPHEME_LOOKBACK)))) {
    const at = from + g.index;
    if (at > i) break;
    cut = at;
  }
  return cut > start ? cut : i;
}

/**
 * Cuts text into pieces whose escaped form (escapeHl7) is at most `max` characters each, so each fits one FT or
 * TX value: whole lines while they fit (a piece ends after a line break), a line longer than that cut where it
 * must — at a grapheme-cluster boundary, never inside a surrogate pair, a CRLF or a letter with its marks.
 * Joined, the pieces are the text. Text that fits is one piece.
 */
export function escapedPieces(
  text: string,
  d: Delimiters = DEFAULT_DELIMITERS,
  max = HL7_TEXT_MAX,
): string[] {
  const special = new Set([d.field, d.component, d.repetition, d.escape, d.subcomponent]);
  const breakCost = escapeHl7('\n', d).length;
  const pieces: string[] = [];
  let start = 0;
  let cost = 0;
  /** Where the current piece may end after its last line break, and the cost up to there. */
  let lineEnd = -1;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    let width = 1;
    let units = 1;
    if (c === 13 && text.charCodeAt(i + 1) === 10) {
      width = breakCost;
      units = 2;
    } else if (c === 13 || c === 10) width = breakCost;
    else if (c >= 0xd800 && c <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // Counted as two (UTF-16 code units): a receiver counting either way finds the piece within the limit.
      units = 2;
      width = 2;
    } else if (special.has(text[i]!)) width = 3;
    if (cost + width > max && i > start) {
      const cut = lineEnd > start ? lineEnd : graphemeCut(text, start, i);
      pieces.push(text.slice(start, cut));
      start = cut;
      lineEnd = -1;
      cost = 0;
      i = cut;
      continue;
    }
    cost += width;
    i += units;
    if (c === 13 || c === 10) lineEnd = i;
  }
  if (start < text.length || pieces.length === 0) pieces.push(text.slice(start));
  return pieces;
}

type Positional = Record<string, unknown>;

function isPositional(v: unknown): v is Positional {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Where a value sits (`PID-5.1`), built only when an error is reported. */
type At = Array<string | number>;

function atText(at: At): string {
  let out = String(at[0]);
  for (let i = 1; i < at.length; i++) out += typeof at[i] === 'number' ? `[${at[i]}]` : `.${at[i]}`;
  return out;
}

/**
 * A finite number in HL7's NM form: optional sign, digits, optional decimal point — the shortest digits that read
 * back as the same number (JavaScript's own), moved out of exponent form (`1e-7` → `0.0000001`, `1e21` → `1` and
 * 21 zeros).
 */
export function nmText(n: number): string {
  const s = String(n);
  const e = s.indexOf('e');
  if (e < 0) return s;
  const sign = s.startsWith('-') ? '-' : '';
  const mantissa = s.slice(sign.length, e);
  const exponent = Number(s.slice(e + 1));
  const dot = mantissa.indexOf('.');
  const digits = mantissa.replace('.', '');
  const point = (dot < 0 ? mantissa.length : dot) + exponent;
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

function text(v: unknown, at: At, d: Delimiters, lb: LineBreaks): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return escapeHl7(v, d, lb);
  if (typeof v === 'number') {
    if (!Number.isFinite(v))
      throw new ScribeError('MAPPING_EVAL', `an HL7 number must be finite, not ${v}`, { where: atText(at) });
    return nmText(v);
  }
  if (typeof v === 'boolean') return String(v);
  throw new ScribeError(
    'MAPPING_EVAL',
    `an HL7 value must be text or a number, not ${Array.isArray(v) ? 'a list' : 'an object'}`,
    { where: atText(at) },
  );
}

/**
 * Joins positional members `first`..max with `sep`, empty where absent; trailing empties dropped.
 * (`first` is 3 for MSH, whose first two fields the serialiser writes itself.)
 */
function positional(
  v: Positional,
  at: At,
  sep: string,
  item: (x: unknown, at: At) => string,
  first = 1,
  skip?: string,
): string {
  const parts: string[] = [];
  for (const k in v) {
    if (k === skip) continue;
    const n = Number(k);
    if (!Number.isInteger(n) || n < first || String(n) !== k) {
      throw new ScribeError('MAPPING_EVAL', `position ${JSON.stringify(k)} is not a number from ${first}`, {
        where: atText(at),
      });
    }
    at.push(k);
    parts[n - first] = item(v[k], at);
    at.pop();
  }
  let end = parts.length;
  while (end > 0 && !parts[end - 1]) end--;
  let out = '';
  for (let i = 0; i < end; i++) out += (i > 0 ? sep : '') + (parts[i] ?? '');
  return out;
}

function component(v: unknown, at: At, d: Delimiters, lb: LineBreaks): string {
  return isPositional(v)
    ? positional(v, at, d.subcomponent, (x, a) => text(x, a, d, lb))
    : text(v, at, d, lb);
}

function repetition(v: unknown, at: At, d: Delimiters, lb: LineBreaks): string {
  return isPositional(v)
    ? positional(v, at, d.component, (x, a) => component(x, a, d, lb))
    : text(v, at, d, lb);
}

function field(v: unknown, at: At, d: Delimiters, lb: LineBreaks): string {
  if (isPositional(v) && 'repeat' in v) {
    const reps = v['repeat'];
    const list = Array.isArray(reps) ? reps : reps === undefined ? [] : [reps];
    let out = '';
    for (let i = 0; i < list.length; i++) {
      at.push('repeat', i);
      out += (i > 0 ? d.repetition : '') + repetition(list[i], at, d, lb);
      at.pop();
      at.pop();
    }
    return out;
  }
  return repetition(v, at, d, lb);
}

/** The formatted-text (FT) field of a segment, where a line break is `\.br\`: OBX-5 of an FT observation, NTE-3. */
function formattedField(name: string, seg: Positional): string | undefined {
  if (name === 'NTE') return '3';
  if (name === 'OBX' && seg['2'] === 'FT') return '5';
  return undefined;
}

/** Serialises rendered segments to ER7: segments separated (and terminated) by CR. */
export function serializeHl7(value: unknown, d: Delimiters = DEFAULT_DELIMITERS): string {
  const segments = Array.isArray(value) ? value : [value];
  let out = '';
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    if (
      !isPositional(seg) ||
      typeof seg['segment'] !== 'string' ||
      !/^[A-Z][A-Z0-9]{2}$/.test(seg['segment'])
    ) {
      throw new ScribeError('MAPPING_EVAL', 'each HL7 segment needs `segment: <three-character name>`', {
        where: `segment ${i + 1}`,
      });
    }
    const name = seg['segment'];
    const at: At = [`segment ${i + 1} (${name})`];
    if (name === 'MSH') {
      // MSH-1 is the field separator itself and MSH-2 the encoding characters: written here from the
      // delimiters, never escaped; the template gives MSH-3 onwards.
      const rest = positional(seg, at, d.field, (x, a) => field(x, a, d, 'hex'), 3, 'segment');
      out += `MSH${d.field}${d.component}${d.repetition}${d.escape}${d.subcomponent}${rest ? `${d.field}${rest}` : ''}\r`;
    } else {
      const ft = formattedField(name, seg);
      const body = positional(
        seg,
        at,
        d.field,
        (x, a) => field(x, a, d, a[a.length - 1] === ft ? 'br' : 'hex'),
        1,
        'segment',
      );
      out += `${name}${body ? `${d.field}${body}` : ''}\r`;
    }
  }
  return out;
}
