/**
 * `%hl7`: the HL7 v2 forms of the note's times and identifiers, for `format: hl7v2` mappings. Pure string
 * transformations of envelope values (times keep the envelope's own offset; nothing comes from the clock).
 *
 * | member | what |
 * |---|---|
 * | `signedAt`, `encounterStart`, `encounterEnd` | DTM `YYYYMMDDHHMMSS[.SSSS]±ZZZZ` |
 * | `birthDate` | DT `YYYY[MM[DD]]` |
 * | `controlId` | MSH-10 (≤ 20): per note revision and destination (src/map/ids.ts) |
 * | `documentNumber` | TXA-12.1 (≤ 30) of this revision |
 * | `parentDocumentNumber` | TXA-12.1 of the revision this one replaces or retracts (TXA-13 of a T10; TXA-12 of a T03/T11) |
 */
import type { Vars } from './expr.ts';
import { controlId, documentNumber } from './ids.ts';

/** RFC 3339 date-time → HL7 DTM, keeping the local time and its offset. */
export function hl7DateTime(iso: string | undefined): string | undefined {
  if (!iso) return undefined;
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/i.exec(iso);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, zone] = m as unknown as string[];
  const fraction = frac ? `.${frac.slice(0, 4)}` : '';
  const offset = zone!.toUpperCase() === 'Z' ? '+0000' : zone!.replace(':', '');
  return `${y}${mo}${d}${h}${mi}${s}${fraction}${offset}`;
}

/** FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) → HL7 DT. */
export function hl7Date(date: string | undefined): string | undefined {
  return date ? date.replaceAll('-', '') : undefined;
}

interface NoteLike {
  tenant: string;
  noteId: string;
  revision: number;
  signedAt: string;
}

export function hl7Vars(vars: Vars): Record<string, unknown> {
  const note = vars['note'] as NoteLike;
  const retraction = vars['retraction'] as { revision: number; signedAt: string } | null;
  const encounter = vars['encounter'] as { period: { start: string; end?: string } };
  const patient = vars['patient'] as { birthDate?: string };
  const options = vars['options'] as { destination?: string };
  const key = { tenant: note.tenant, noteId: note.noteId, revision: note.revision };
  const out: Record<string, unknown> = {
    signedAt: hl7DateTime(retraction?.signedAt ?? note.signedAt),
    encounterStart: hl7DateTime(encounter.period.start),
    controlId: controlId(key, options.destination ?? ''),
    documentNumber: documentNumber(key),
  };
  const end = hl7DateTime(encounter.period.end);
  if (end) out['encounterEnd'] = end;
  const birth = hl7Date(patient.birthDate);
  if (birth) out['birthDate'] = birth;
  if (note.revision > 1)
    out['parentDocumentNumber'] = documentNumber({ ...key, revision: note.revision - 1 });
  return out;
}
