// The auditor's page: asks for the auditor token (kept in sessionStorage, this tab only), calls GET /v1/trace,
// and shows the note sentence by sentence by edit class, the transcript with each sentence's evidence
// highlighted, the deliveries as a timeline, and the signature and hash checks. This file carries no PHI; the
// trace it shows is fetched with the token and rendered with textContent only (never as HTML).

const TOKEN_KEY = 'scribe-bridge.auditor-token';
const $ = (id) => document.getElementById(id);

const FORMS = {
  identifier: { param: 'identifier', label: 'system|value' },
  resourceId: { param: 'resourceId', label: 'Type/id' },
  documentNumber: { param: 'documentNumber', label: 'TXA-12.1' },
  controlId: { param: 'controlId', label: 'MSH-10' },
};

/** Creates an element; `children` are nodes or strings (as text). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat())
    if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

function showTokenState() {
  const has = token() !== '';
  $('token-state').textContent = has ? 'token set for this tab' : 'no token';
  $('token-forget').hidden = !has;
  $('token').value = '';
  $('token').required = !has;
}

function message(text, isError = false) {
  $('message').textContent = text;
  $('message').className = isError ? 'error' : '';
}

function showKind() {
  const kind = $('kind').value;
  document.querySelector('[data-for="note"]').hidden = kind !== 'note';
  document.querySelector('[data-for="destination"]').hidden = kind === 'note';
  if (FORMS[kind]) $('value-label').textContent = FORMS[kind].label;
}

function queryParams() {
  const kind = $('kind').value;
  const p = new URLSearchParams();
  if (kind === 'note') {
    p.set('tenant', $('tenant').value.trim());
    p.set('noteId', $('noteId').value.trim());
    if ($('revision').value.trim()) p.set('revision', $('revision').value.trim());
  } else {
    p.set('destination', $('destination').value.trim());
    p.set(FORMS[kind].param, $('value').value.trim());
  }
  p.set('include', 'transcript');
  return p;
}

async function search(ev) {
  ev?.preventDefault();
  if (!token()) return message('Enter the auditor token first.', true);
  message('Tracing…');
  $('result').hidden = true;
  let res;
  try {
    res = await fetch(`/v1/trace?${queryParams()}`, {
      headers: {
        authorization: `Bearer ${token()}`,
        accept: 'application/json',
        'x-scribe-bridge-view': 'audit-page',
      },
      cache: 'no-store',
    });
  } catch {
    return message('The service did not answer.', true);
  }
  const body = await res.json().catch(() => undefined);
  if (!res.ok) {
    const issue = body?.issue?.[0];
    const code = issue?.details?.coding?.[0]?.code ?? `HTTP ${res.status}`;
    return message(
      `${res.status} ${code}: ${issue?.diagnostics ?? issue?.details?.text ?? 'the trace failed'}`,
      true,
    );
  }
  render(body);
}

const fmtTime = (s) => {
  const m = Math.floor(s / 60);
  const sec = s - m * 60;
  return `${String(m).padStart(2, '0')}:${sec.toFixed(2).padStart(5, '0')}`;
};

function mark(ok, label, detail) {
  return el(
    'div',
    { class: 'check', dataset: { ok: String(ok) } },
    el(
      'span',
      { class: `mark ${ok ? 'ok' : 'bad'}`, 'aria-label': ok ? 'passed' : 'failed' },
      ok ? '✓' : '✗',
    ),
    el('span', {}, label),
    el('span', {}, detail),
  );
}

let current;
/** The revision on screen. */
let shown;

function render(trace) {
  current = trace;
  $('result').hidden = false;
  const q = trace.query;
  const via = q.kind === 'note' ? 'note key' : `${q.kind} at ${q.destination}`;
  $('summary').replaceChildren(
    el('h2', {}, `${trace.tenant} / ${trace.noteId}`),
    el(
      'p',
      { class: 'muted' },
      `${trace.revisions.length} revision(s); found by ${via}, matched revision ${trace.match.revision}`,
    ),
  );
  $('revisions').replaceChildren(
    ...trace.revisions.map((r) =>
      el(
        'button',
        {
          type: 'button',
          'aria-pressed': 'false',
          dataset: { revision: r.revision },
          onclick: () => showRevision(r.revision),
        },
        `r${r.revision} ${r.status}`,
      ),
    ),
  );
  showRevision(trace.match.revision);
  message(`Trace loaded (${trace.revisions.length} revision(s)).`);
}

function showRevision(n) {
  const r = current.revisions.find((x) => x.revision === n) ?? current.revisions.at(-1);
  shown = r;
  for (const b of $('revisions').children)
    b.setAttribute('aria-pressed', String(Number(b.dataset.revision) === r.revision));
  renderChecks(r);
  renderLifecycle(r);
  renderNote(r);
  renderTranscript(r);
  renderDeliveries(r);
}

function renderChecks(r) {
  const s = r.signature;
  const signer = s.signer.identifier.map((i) => `${i.system}|${i.value}`).join(', ');
  const rows = [
    mark(s.verified, 'signature at intake', `${s.alg} · kid ${s.kid} · signed ${s.signedAt} by ${signer}`),
  ];
  if (r.checks.signature)
    rows.push(
      mark(
        r.checks.signature.ok,
        'signature now',
        r.checks.signature.ok
          ? 'verified again with the tenant’s current keys'
          : `failed: ${r.checks.signature.code}`,
      ),
    );
  rows.push(
    mark(r.checks.contentSha256.ok, 'content hash', el('code', { class: 'hash' }, r.contentSha256)),
    ...r.healthscribe.artifacts.map((a) =>
      mark(
        r.checks.artifacts.find((c) => c.name === a.name)?.ok ?? true,
        `${a.name} hash`,
        el(
          'span',
          {},
          el('code', { class: 'hash' }, a.sha256),
          ` (${a.hashSigned ? 'signed' : 'computed at intake'}; ${a.source}${a.uri ? ` ${a.uri}` : ''})`,
        ),
      ),
    ),
    ...r.checks.payloads.map((p) =>
      mark(
        p.ok,
        `payload hash · ${p.destination}`,
        p.ok
          ? 'the stored payload matches its recorded sha256'
          : 'the stored payload differs from its recorded sha256',
      ),
    ),
  );
  const hs = r.healthscribe;
  $('checks').replaceChildren(
    el('h2', {}, 'Signature and hashes'),
    el(
      'p',
      {},
      hs.jobName ? `HealthScribe job ${hs.jobName}` : `HealthScribe streaming session ${hs.sessionId ?? '—'}`,
    ),
    ...rows,
  );
}

function renderLifecycle(r) {
  const facts = [
    `revision ${r.revision} (${r.status}, ${r.template})`,
    `state ${r.state}${r.stateReason ? ` — ${r.stateReason}` : ''}`,
    r.replaces !== undefined ? `replaces r${r.replaces}` : null,
    r.replacedBy !== undefined ? `replaced by r${r.replacedBy}` : null,
    `received ${r.receivedAt} via ${r.source}`,
  ].filter(Boolean);
  $('lifecycle').replaceChildren(
    el('h2', {}, 'Lifecycle'),
    el('p', {}, facts.join(' · ')),
    el(
      'details',
      { class: 'events' },
      el('summary', {}, `${r.events.length} audit record(s)`),
      el(
        'ol',
        {},
        ...r.events.map((e) =>
          el(
            'li',
            {},
            `#${e.seq} ${e.at} ${e.action}${e.destination ? ` → ${e.destination}` : ''} (${e.actor})`,
          ),
        ),
      ),
    ),
  );
}

function renderNote(r) {
  const sections = [];
  let last;
  for (const s of r.sentences) {
    if (s.section !== last) {
      sections.push({ name: s.section, sentences: [] });
      last = s.section;
    }
    sections.at(-1).sentences.push(s);
  }
  $('note').replaceChildren(
    ...sections.map((sec) =>
      el(
        'div',
        { class: 'section' },
        el('h3', {}, sec.name),
        el(
          'ol',
          {},
          ...sec.sentences.map((s) =>
            el(
              'li',
              {},
              el(
                'button',
                {
                  type: 'button',
                  class: `sentence edit-${s.editClass}`,
                  'aria-pressed': 'false',
                  dataset: { sentenceId: s.id, editClass: s.editClass },
                  title:
                    s.draft && s.editClass === 'clinician-edited' ? `AI draft: ${s.draft.text}` : undefined,
                  onclick: () => choose(s.id),
                },
                s.text,
                el(
                  'span',
                  { class: 'meta' },
                  `${s.id} · ${s.editClass} · ${s.evidence.length} evidence segment(s)`,
                ),
              ),
            ),
          ),
        ),
      ),
    ),
  );
  $('removed').replaceChildren(
    ...(r.removedDraftSentences.length
      ? [
          el('h3', {}, `Draft sentences the clinician removed (${r.removedDraftSentences.length})`),
          el(
            'ol',
            {},
            ...r.removedDraftSentences.map((d) =>
              el(
                'li',
                { class: 'sentence removed' },
                d.text,
                el('span', { class: 'meta' }, `${d.section} #${d.index}`),
              ),
            ),
          ),
        ]
      : []),
  );
}

function renderTranscript(r) {
  // The whole transcript when the service sent it; otherwise the evidence segments only, in time order.
  let segments = r.transcript;
  if (!segments) {
    const seen = new Map();
    for (const s of r.sentences) for (const e of s.evidence) seen.set(e.segmentId, e);
    segments = [...seen.values()].sort((a, b) => a.beginAudioTime - b.beginAudioTime);
  }
  $('transcript').replaceChildren(
    ...segments.map((seg) =>
      el(
        'li',
        { class: 'segment', dataset: { segmentId: seg.segmentId } },
        el('span', { class: 'role' }, seg.participantRole),
        el('span', { class: 'time' }, `${fmtTime(seg.beginAudioTime)}–${fmtTime(seg.endAudioTime)}`),
        el('span', { class: 'content' }, seg.content),
      ),
    ),
  );
  $('evidence-summary').textContent = `${segments.length} segment(s); choose a sentence to see its evidence`;
}

function choose(sentenceId) {
  const s = shown?.sentences.find((x) => x.id === sentenceId);
  if (!s) return;
  for (const b of document.querySelectorAll('.sentence[aria-pressed]'))
    b.setAttribute('aria-pressed', String(b.dataset.sentenceId === sentenceId));
  const ids = new Set(s.evidence.map((e) => e.segmentId));
  let first;
  for (const li of $('transcript').children) {
    const on = ids.has(li.dataset.segmentId);
    li.classList.toggle('highlight', on);
    if (on && !first) first = li;
  }
  // Scroll the transcript pane only (not the page) so the first evidence segment is in view.
  const pane = $('transcript-pane');
  if (first) pane.scrollTop = Math.max(0, first.offsetTop - pane.offsetTop - pane.clientHeight / 3);
  const span = s.evidence.length
    ? `, ${fmtTime(Math.min(...s.evidence.map((e) => e.beginAudioTime)))}–${fmtTime(Math.max(...s.evidence.map((e) => e.endAudioTime)))}`
    : '';
  $('evidence-summary').textContent =
    `${s.id} · ${s.editClass} · ${s.evidence.length} evidence segment(s)${span}`;
}

function receiptText(rc) {
  if (!rc || typeof rc !== 'object') return '';
  if (rc.resourceType && rc.id)
    return `${rc.resourceType}/${rc.id}${rc.versionId ? `/_history/${rc.versionId}` : ''}${rc.entries ? ` (+${rc.entries.length} entries)` : ''}`;
  if (rc.controlId) return `MSH-10 ${rc.controlId}${rc.msa2 ? ` · MSA-2 ${rc.msa2}` : ''}`;
  return JSON.stringify(rc);
}

function renderDeliveries(r) {
  $('deliveries').replaceChildren(
    el('h2', {}, 'Deliveries'),
    ...r.deliveries.map((d) =>
      el(
        'div',
        { class: 'delivery', dataset: { destination: d.destination, status: d.status } },
        el('strong', {}, d.destination),
        ` — ${d.status}${d.lastErrorCode ? ` (${d.lastErrorCode})` : ''} · mapping ${d.mapping.id} ${d.mapping.version} `,
        el('code', { class: 'hash' }, d.mapping.digest),
        el(
          'div',
          {},
          'payload sha256 ',
          el('code', { class: 'hash' }, d.payloadSha256),
          ` (${d.contentType})`,
        ),
        el(
          'ol',
          { class: 'timeline' },
          ...d.attempts.map((a) =>
            el(
              'li',
              { class: `attempt outcome-${a.outcome}` },
              `${a.at} · attempt ${a.attempt} · ${a.outcome}`,
              a.httpStatus !== undefined ? ` · HTTP ${a.httpStatus}` : '',
              a.ackCode ? ` · ACK ${a.ackCode}` : '',
              a.errorCode ? ` · ${a.errorCode}` : '',
              a.durationMs !== undefined ? ` · ${a.durationMs} ms` : '',
              a.receipt ? el('div', { class: 'muted' }, `receipt ${receiptText(a.receipt)}`) : '',
            ),
          ),
        ),
      ),
    ),
  );
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  showTokenState();
});
$('token-forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
  $('result').hidden = true;
  current = undefined;
});
$('kind').addEventListener('change', showKind);
$('search').addEventListener('submit', search);
showKind();
showTokenState();
