/**
 * Structural checks of a rendered HL7 v2.5.1 MDM message, per message (cheap): segment framing, the MSH header,
 * the v2.5.1 field lengths the spec calls out (MSH-10 ≤ 20, TXA-12.1 ≤ 30, TXA-2 and TXA-21 ≤ 30) and that of FT /
 * TX text in OBX-5 (65,536), the segments each MDM structure requires (MDM_T01: MSH EVN PID PV1 TXA; MDM_T02: the
 * same plus at least one OBX) and the structure each trigger event has, the required fields of MSH, EVN, TXA and
 * OBX with their table values (reference/standards.md §7), OBX-4 telling apart OBX with the same OBX-3, and —
 * given the lifecycle step — an event that means it (a retraction is a status change or a cancel, not new content).
 */

import { FORBIDDEN_CONTROL } from '../contract/json.ts';
import type { Delimiters } from '../map/hl7.ts';
import { DEFAULT_DELIMITERS, HL7_TEXT_MAX } from '../map/hl7.ts';
import type { LifecycleMode } from '../map/mapping-file.ts';

export interface Hl7Issue {
  readonly path: string;
  readonly message: string;
}

/** v2.5.1 TS / DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. */
const TS = /^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$/;
/** The structure each trigger event has (v2.5.1 Chapter 9). */
const STRUCTURE: Readonly<Record<string, string>> = {
  T01: 'MDM_T01',
  T03: 'MDM_T01',
  T05: 'MDM_T01',
  T07: 'MDM_T01',
  T09: 'MDM_T01',
  T11: 'MDM_T01',
  T02: 'MDM_T02',
  T04: 'MDM_T02',
  T06: 'MDM_T02',
  T08: 'MDM_T02',
  T10: 'MDM_T02',
};
/** The events that can carry each lifecycle step. */
const EVENTS_FOR: Readonly<Record<LifecycleMode, readonly string[]>> = {
  new: ['T01', 'T02'],
  amendment: ['T05', 'T06', 'T07', 'T08', 'T09', 'T10'],
  retraction: ['T03', 'T04', 'T11'],
};
/** HL7 tables the checked fields are bound to. */
const TABLE_0271 = new Set(['AU', 'DI', 'DO', 'IN', 'IP', 'LA', 'PA']); // TXA-17
const TABLE_0272 = new Set(['R', 'U', 'V']); // TXA-18
const TABLE_0273 = new Set(['AV', 'CA', 'OB', 'UN']); // TXA-19
const TABLE_0275 = new Set(['AA', 'AC', 'AR', 'PU']); // TXA-20
const TABLE_0085 = new Set(['C', 'D', 'F', 'I', 'N', 'O', 'P', 'R', 'S', 'U', 'W', 'X']); // OBX-11
// OBX-2 (table 0125, v2.5.1)
const TABLE_0125 = new Set(
  'AD CE CF CK CN CP CWE CX DT DTM ED FT ID MO NM PN RP SN ST TM TN TS TX XAD XCN XON XPN XTN'.split(' '),
);

export function checkMdm(body: string, d: Delimiters = DEFAULT_DELIMITERS, mode?: LifecycleMode): Hl7Issue[] {
  const issues: Hl7Issue[] = [];
  if (!body.endsWith('\r')) issues.push({ path: 'message', message: 'segments must end with CR' });
  const segments = body.split('\r').filter((s) => s !== '');
  if (segments.some((s) => s.includes('\n')))
    issues.push({ path: 'message', message: 'a raw LF inside a segment' });
  // TAB is allowed (the envelope lets note text carry it); any other control character breaks the framing or is
  // not HL7 text at all, and must have been refused or escaped before the message was built.
  const control = segments.findIndex((s) => FORBIDDEN_CONTROL.test(s));
  if (control >= 0)
    issues.push({
      path: `segment ${control + 1} (${segments[control]!.slice(0, 3)})`,
      message: 'a control character (other than TAB) inside a segment',
    });
  const names = segments.map((s) => s.slice(0, 3));
  const fields = (i: number) => segments[i]!.split(d.field);
  const msh = names.indexOf('MSH');
  if (msh !== 0) {
    issues.push({ path: 'MSH', message: 'the message must start with MSH' });
    return issues;
  }
  const m = fields(0);
  // m[1] is MSH-2 (encoding characters); MSH-n is m[n - 1].
  const type = (m[8] ?? '').split(d.component);
  const controlId = m[9] ?? '';
  if (!controlId || controlId.length > 20)
    issues.push({
      path: 'MSH-10',
      message: `message control id must be 1–20 characters (is ${controlId.length})`,
    });
  if (m[11] !== '2.5.1') issues.push({ path: 'MSH-12', message: 'version must be 2.5.1' });
  if (type[0] !== 'MDM' || !/^T(0[1-9]|1[01])$/.test(type[1] ?? ''))
    issues.push({ path: 'MSH-9', message: 'message type must be MDM^Tnn' });
  const structure = type[2];
  const event = type[1] ?? '';
  if (STRUCTURE[event] && structure !== STRUCTURE[event])
    issues.push({
      path: 'MSH-9.3',
      message: `${event} has the structure ${STRUCTURE[event]}, not ${structure || '(none)'}`,
    });
  if (mode && STRUCTURE[event] && !EVENTS_FOR[mode].includes(event))
    issues.push({
      path: 'MSH-9.2',
      message: `a${mode === 'amendment' ? 'n' : ''} ${mode} is sent as ${EVENTS_FOR[mode].join(', ')}, not ${event}`,
    });
  timestamp(m[6], 'MSH-7', true, issues);
  const required = ['MSH', 'EVN', 'PID', 'PV1', 'TXA', ...(structure === 'MDM_T02' ? ['OBX'] : [])];
  let at = 0;
  for (const r of required) {
    const i = names.indexOf(r, at);
    if (i < 0)
      issues.push({
        path: r,
        message: `${structure ?? 'MDM'} needs ${r}${at > 0 ? ` after ${names[at - 1]}` : ''}`,
      });
    else at = i + 1;
  }
  if (structure === 'MDM_T01' && names.includes('OBX'))
    issues.push({ path: 'OBX', message: 'MDM_T01 carries no OBX' });
  const evn = names.indexOf('EVN');
  if (evn >= 0) timestamp(fields(evn)[2], 'EVN-2', true, issues);
  // Text content: an FT or TX value is at most 65,536 characters in v2.5.1 (escaped, as it goes on the wire).
  const subIds = new Set<string>();
  names.forEach((name, i) => {
    if (name !== 'OBX') return;
    const o = fields(i);
    const where = `OBX ${o[1] || '?'}`;
    if (!TABLE_0125.has(o[2] ?? ''))
      issues.push({
        path: `OBX-2 (${where})`,
        message: 'value type must be one of HL7 table 0125 (FT, TX, ST, ED…)',
      });
    if (!o[3]) issues.push({ path: `OBX-3 (${where})`, message: 'observation identifier is required' });
    if (!TABLE_0085.has(o[11] ?? ''))
      issues.push({
        path: `OBX-11 (${where})`,
        message: 'result status is required, from HL7 table 0085 (F final…)',
      });
    const key = `${o[3] ?? ''}${d.field}${o[4] ?? ''}`;
    if (subIds.has(key))
      issues.push({
        path: `OBX-4 (${where})`,
        message: 'OBX with the same observation identifier (OBX-3) need distinct sub-IDs (OBX-4)',
      });
    subIds.add(key);
    const value = o[5] ?? '';
    if ((o[2] === 'FT' || o[2] === 'TX') && value.length > HL7_TEXT_MAX)
      issues.push({
        path: `OBX-5 (OBX ${o[1] ?? '?'})`,
        message: `a${o[2] === 'FT' ? 'n' : ''} ${o[2]} value holds at most ${HL7_TEXT_MAX} characters (is ${value.length}): give the text in several OBX`,
      });
  });
  const txa = names.indexOf('TXA');
  if (txa >= 0) {
    const t = fields(txa);
    const docNumber = (t[12] ?? '').split(d.component)[0] ?? '';
    if (!docNumber || docNumber.length > 30)
      issues.push({
        path: 'TXA-12.1',
        message: `unique document number must be 1–30 characters (is ${docNumber.length})`,
      });
    if (!t[1]) issues.push({ path: 'TXA-1', message: 'set ID is required' });
    const docType = t[2] ?? '';
    if (!docType || docType.length > 30)
      issues.push({ path: 'TXA-2', message: `document type must be 1–30 characters (is ${docType.length})` });
    if (structure === 'MDM_T02' && !t[3])
      issues.push({
        path: 'TXA-3',
        message: 'document content presentation is required when OBX carry content',
      });
    for (const [n, required] of [
      [4, false],
      [6, false],
      [7, false],
    ] as const)
      timestamp(t[n], `TXA-${n}`, required, issues);
    if (!t[17]) issues.push({ path: 'TXA-17', message: 'document completion status is required' });
    else if (!TABLE_0271.has(t[17]))
      issues.push({
        path: 'TXA-17',
        message: 'document completion status must be from HL7 table 0271 (LA, AU…)',
      });
    for (const [n, table, name] of [
      [18, TABLE_0272, '0272'],
      [19, TABLE_0273, '0273'],
      [20, TABLE_0275, '0275'],
    ] as const)
      if (t[n] && !table.has(t[n]))
        issues.push({ path: `TXA-${n}`, message: `must be a code of HL7 table ${name}` });
    const reason = t[21] ?? '';
    if (reason.length > 30)
      issues.push({
        path: 'TXA-21',
        message: `document change reason holds at most 30 characters (is ${reason.length})`,
      });
    if (['T10', 'T09', 'T05', 'T06'].includes(type[1] ?? '') && !(t[13] ?? '').split(d.component)[0]) {
      issues.push({ path: 'TXA-13', message: `parent document number is required on ${type[1]}` });
    }
  }
  return issues;
}

/** A TS/DTM field: present when required, and of the v2.5.1 form when present (the first component). */
function timestamp(value: string | undefined, path: string, required: boolean, issues: Hl7Issue[]): void {
  const v = value ?? '';
  if (v === '') {
    if (required) issues.push({ path, message: 'date/time is required' });
    return;
  }
  if (!TS.test(v.split('^')[0]!))
    issues.push({ path, message: 'not a v2.5.1 date/time (YYYYMMDDHHMMSS[.SSSS]±ZZZZ)' });
}
