/**
 * The trace as text for a terminal (`scribe-bridge trace` without --json). It prints what the JSON holds,
 * PHI included (sentence and transcript text): the command is for auditors and every run is audited.
 */
import { EDIT_CLASSES } from '../contract/edits.ts';
import type { JsonValue } from '../contract/json.ts';
import type { Trace, TraceDelivery, TraceRevision } from './types.ts';

export function formatTrace(t: Trace): string {
  const out: string[] = [];
  const where = t.match.destination ? ` at ${t.match.destination}` : '';
  out.push(
    `trace ${t.tenant}/${t.noteId} — ${t.revisions.length} revision(s); matched revision ${t.match.revision}${where}`,
  );
  for (const r of t.revisions) out.push('', ...revision(r));
  return `${out.join('\n')}\n`;
}

function revision(r: TraceRevision): string[] {
  const out: string[] = [];
  const life = [
    `state ${r.state}${r.stateReason ? ` (${r.stateReason})` : ''}`,
    r.replaces !== undefined ? `replaces ${r.replaces}` : undefined,
    r.replacedBy !== undefined ? `replaced by ${r.replacedBy}` : undefined,
    `received ${r.receivedAt} via ${r.source}`,
  ].filter(Boolean);
  out.push(`revision ${r.revision} — ${r.status}, ${r.template}; ${life.join('; ')}`);
  const s = r.signature;
  const signer = s.signer.identifier.map((i) => `${i.system}|${i.value}`).join(', ');
  out.push(
    `  signature: ${s.alg} kid ${s.kid}, signed ${s.signedAt} by ${signer}; verified at intake: ${s.verified ? 'yes' : 'no'}` +
      (r.checks.signature
        ? `; re-verified now: ${r.checks.signature.ok ? 'ok' : `FAILED (${r.checks.signature.code})`}`
        : ''),
  );
  out.push(
    `  content sha256 ${r.contentSha256} — ${r.checks.contentSha256.ok ? 'matches the stored envelope' : `MISMATCH (stored envelope hashes to ${r.checks.contentSha256.computed})`}`,
  );
  const hs = r.healthscribe;
  out.push(`  healthscribe: ${hs.jobName ? `job ${hs.jobName}` : `session ${hs.sessionId ?? '?'}`}`);
  for (const a of hs.artifacts) {
    const ok = r.checks.artifacts.find((c) => c.name === a.name)?.ok ?? true;
    out.push(
      `    ${a.name}: sha256 ${a.sha256} (${a.source}${a.uri ? ` ${a.uri}` : ''}; ${a.hashSigned ? 'hash signed' : 'hash computed at intake'})${ok ? '' : ' — DIFFERS FROM THE SIGNED HASH'}`,
    );
  }
  const counts = EDIT_CLASSES.map((k) => `${r.sentences.filter((x) => x.editClass === k).length} ${k}`);
  out.push(`  sentences: ${r.sentences.length} (${counts.join(', ')})`);
  for (const st of r.sentences) {
    out.push(`    [${st.section}] ${st.id} ${st.editClass}: ${st.text}`);
    if (st.draft && st.editClass === 'clinician-edited') out.push(`        draft: ${st.draft.text}`);
    for (const e of st.evidence)
      out.push(
        `        ${e.segmentId} ${e.participantRole} ${e.beginAudioTime}–${e.endAudioTime} s: ${e.content}`,
      );
  }
  if (r.removedDraftSentences.length) {
    out.push(`  removed draft sentences: ${r.removedDraftSentences.length}`);
    for (const d of r.removedDraftSentences) out.push(`    [${d.section} #${d.index}] ${d.text}`);
  }
  out.push(`  deliveries: ${r.deliveries.length}`);
  for (const d of r.deliveries) out.push(...delivery(d, r));
  return out;
}

function delivery(d: TraceDelivery, r: TraceRevision): string[] {
  const ok = r.checks.payloads.find((p) => p.destination === d.destination)?.ok ?? true;
  const out = [
    `    ${d.destination}: ${d.status}${d.lastErrorCode ? ` (${d.lastErrorCode})` : ''} — mapping ${d.mapping.id} ${d.mapping.version} digest ${d.mapping.digest}`,
    `      payload sha256 ${d.payloadSha256} (${d.contentType}) — ${ok ? 'matches the stored payload' : 'STORED PAYLOAD DIFFERS'}`,
  ];
  for (const a of d.attempts) {
    const bits = [
      a.httpStatus !== undefined ? `HTTP ${a.httpStatus}` : undefined,
      a.ackCode ? `ACK ${a.ackCode}` : undefined,
      a.errorCode ? `error ${a.errorCode}` : undefined,
      a.durationMs !== undefined ? `${a.durationMs} ms` : undefined,
    ].filter(Boolean);
    out.push(
      `      attempt ${a.attempt} ${a.at} ${a.outcome}${bits.length ? ` (${bits.join(', ')})` : ''}${a.receipt ? ` — ${receipt(a.receipt)}` : ''}`,
    );
  }
  if (d.receipt && !d.attempts.some((a) => a.receipt)) out.push(`      receipt: ${receipt(d.receipt)}`);
  return out;
}

/** A receipt in one line: the EHR's id and version, or the ACK's control id. */
export function receipt(r: JsonValue): string {
  if (!r || typeof r !== 'object' || Array.isArray(r)) return JSON.stringify(r);
  const o = r as { [k: string]: JsonValue };
  if (typeof o['resourceType'] === 'string' && typeof o['id'] === 'string') {
    const entries = Array.isArray(o['entries']) ? `, ${o['entries'].length} entries` : '';
    return `${o['resourceType']}/${o['id']}${o['versionId'] ? `/_history/${o['versionId']}` : ''}${entries}`;
  }
  if (typeof o['controlId'] === 'string')
    return `MSH-10 ${o['controlId']}${o['msa2'] ? `, MSA-2 ${o['msa2']}` : ''}`;
  return JSON.stringify(r);
}
