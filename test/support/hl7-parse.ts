/**
 * An HL7 v2 ER7 parser for tests that is independent of the code that builds our messages: the mapping
 * engine's output is checked by parsing it with this, never with its own builder.
 *
 * The parsing is done by `hl7parser` (Artifact Health, Apache-2.0): it splits segments, fields, repetitions,
 * components and sub-components by the delimiters the message declares in MSH-1/MSH-2, and decodes
 * `\F\ \S\ \T\ \R\ \E\` (and drops `\H\ \N\ \Z..\`) with a tokenising scan, so `\E\F\E\` correctly reads as
 * the text `\F\`. Two gaps of that library are closed here and nowhere else:
 *
 * - `\.br\` (a line break in FT/TX) is passed through by the library; here it decodes to `lineBreak`.
 * - `\Xhh..\` is decoded by the library one byte per character (Latin-1), which garbles UTF-8; here the
 *   bytes are decoded as UTF-8 (Latin-1 when MSH-18 declares 8859/1).
 *
 * Both are decoded in the same left-to-right scan of escape sequences the library uses; every other
 * sequence is handed to the library's own `unescape`.
 *
 * The library also trims each segment, which would eat trailing spaces of a segment's last field; a
 * sentinel empty field is appended before parsing and removed after, so no text is lost.
 */
import { create, type Node } from 'hl7parser';

/** One field: repetitions → components → sub-components, each a decoded string. */
export type Er7Field = string[][][];

/**
 * One segment. `fields[n]` is field n in HL7 numbering (`fields[0]` holds the segment name), so OBX-5 is
 * `fields[5]`. In MSH, `fields[1]` is the field separator and `fields[2]` the encoding characters, both
 * as written (not split, not decoded).
 */
export interface Er7Segment {
  readonly name: string;
  readonly fields: Er7Field[];
}

export interface ParseEr7Options {
  /** What `\.br\` decodes to. Default `\n`. */
  readonly lineBreak?: string;
}

interface Unescaper {
  unescape(text: string): string;
}

/**
 * Parses an ER7 message (segments separated by `\r`, one trailing `\r` allowed) into decoded text.
 * Throws on a raw line feed (a builder must escape it) and on an empty segment.
 */
export function parseEr7(message: string, options: ParseEr7Options = {}): Er7Segment[] {
  if (!message.startsWith('MSH') || message.length < 8) throw new Error('not an ER7 message: no MSH header');
  if (message.includes('\n')) throw new Error('raw line feed in the message: segments end with \\r only');
  const sep = message.charAt(3);
  const escapeChar = message.charAt(6);
  const body = message.endsWith('\r') ? message.slice(0, -1) : message;
  const lines = body.split('\r');
  if (lines.some((l) => l === '')) throw new Error('empty segment');
  const parsed = create(lines.map((l) => l + sep).join('\r'));
  const lib = parsed as unknown as Unescaper;
  const charset = latin1Declared(lines[0]!, sep) ? 'latin1' : 'utf8';
  const decode = decoder(escapeChar, lib, options.lineBreak ?? '\n', charset);

  return parsed.toArray().map((segment, i): Er7Segment => {
    const children = segment.toArray();
    const sentinel = children.pop();
    if (sentinel?.toRaw() !== '') throw new Error(`segment ${i + 1}: sentinel field lost`);
    const name = children[0]?.toRaw() ?? '';
    const fields: Er7Field[] = [[[[name]]]];
    if (name === 'MSH') {
      fields.push([[[sep]]], [[[children[1]?.toRaw() ?? '']]]);
      for (const f of children.slice(2)) fields.push(fieldOf(f, decode));
    } else {
      for (const f of children.slice(1)) fields.push(fieldOf(f, decode));
    }
    return { name, fields };
  });
}

function fieldOf(field: Node, decode: (raw: string) => string): Er7Field {
  return field
    .toArray()
    .map((rep) => rep.toArray().map((comp) => comp.toArray().map((sub) => decode(sub.toRaw()))));
}

/** Decodes one sub-component's raw text: `\.br\` and `\X..\` here, every other sequence by the library. */
function decoder(
  escapeChar: string,
  lib: Unescaper,
  lineBreak: string,
  charset: 'utf8' | 'latin1',
): (raw: string) => string {
  const e = escapeChar.replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&');
  // The same tokenisation as hl7parser: an escape character, anything but it, an escape character.
  const sequence = new RegExp(`${e}([^${e}]*)${e}`, 'g');
  return (raw) =>
    raw.includes(escapeChar)
      ? raw.replace(sequence, (whole, inner: string) => {
          if (inner === '.br') return lineBreak;
          if (/^X(?:[0-9A-Fa-f]{2})*$/.test(inner))
            return Buffer.from(inner.slice(1), 'hex').toString(charset);
          return lib.unescape(whole);
        })
      : raw;
}

/** MSH-18 names ISO 8859/1 (the only single-byte set we read `\X..\` as Latin-1 for). */
function latin1Declared(msh: string, sep: string): boolean {
  return (msh.split(sep)[17] ?? '').split(msh.charAt(5))[0] === '8859/1';
}

/** Every segment with this name, in order. */
export function segmentsNamed(segments: readonly Er7Segment[], name: string): Er7Segment[] {
  return segments.filter((s) => s.name === name);
}

/**
 * The decoded text at field.component.sub-component of one repetition (all 1-based, as in `OBX-5.1.1`);
 * '' when absent.
 */
export function fieldText(
  segment: Er7Segment,
  field: number,
  component = 1,
  subcomponent = 1,
  repetition = 1,
): string {
  return segment.fields[field]?.[repetition - 1]?.[component - 1]?.[subcomponent - 1] ?? '';
}

/** Component `component` (sub-component 1) of every repetition of a field. */
export function fieldRepetitions(segment: Er7Segment, field: number, component = 1): string[] {
  return (segment.fields[field] ?? []).map((rep) => rep[component - 1]?.[0] ?? '');
}

/**
 * The text lines of the note: OBX-5 of every OBX in order, one entry per repetition (so both "one OBX per
 * line" and "OBX-5 repetitions as lines" read the same). An FT value keeps its `\.br\` breaks as
 * `lineBreak` inside its entry. Only component 1 is read: TX and FT have no components, so text after an
 * unescaped `^` is missing here — which is what a receiver would see.
 */
export function obxLines(segments: readonly Er7Segment[]): string[] {
  return segmentsNamed(segments, 'OBX').flatMap((obx) => fieldRepetitions(obx, 5));
}
