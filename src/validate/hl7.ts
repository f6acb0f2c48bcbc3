/**
 * Structural checks of a rendered HL7 v2.5.1 MDM message, per message (cheap): segment framing, the MSH header,
 * the v2.5.1 field lengths the spec calls out (MSH-10 ≤ 20, TXA-12.1 ≤ 30) and that of FT / TX text in OBX-5
 * (65,536), and the segments each MDM structure
 * requires (MDM_T01: MSH EVN PID PV1 TXA; MDM_T02: the same plus at least one OBX).
 */
import type { Delimiters } from '../map/hl7.ts';
import { DEFAULT_DELIMITERS, HL7_TEXT_MAX } from '../map/hl7.ts';

export interface Hl7Issue {
  readonly path: string;
  readonly message: string;
}

export function checkMdm(body: string, d: Delimiters = DEFAULT_DELIMITERS): Hl7Issue[] {
  const issues: Hl7Issue[] = [];
  if (!body.endsWith('\r')) issues.push({ path: 'message', message: 'segments must end with CR' });
  const segments = body.split('\r').filter((s) => s !== '');
  if (segments.some((s) => s.includes('\n')))
    issues.push({ path: 'message', message: 'a raw LF inside a segment' });
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
  // Text content: an FT or TX value is at most 65,536 characters in v2.5.1 (escaped, as it goes on the wire).
  names.forEach((name, i) => {
    if (name !== 'OBX') return;
    const o = fields(i);
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
    if (!t[17]) issues.push({ path: 'TXA-17', message: 'document completion status is required' });
    if (['T10', 'T09', 'T05', 'T06'].includes(type[1] ?? '') && !(t[13] ?? '').split(d.component)[0]) {
      issues.push({ path: 'TXA-13', message: `parent document number is required on ${type[1]}` });
    }
  }
  return issues;
}
