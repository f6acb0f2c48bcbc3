/**
 * The provenance trace end to end, on PGlite and on PostgreSQL: the valid fixtures go through a real service to
 * a real FHIR server (fhir-transaction) and a real MLLP receiver (mdm). For every delivered note, the trace
 * resolves from what each destination actually holds — the FHIR identifier, the id the EHR assigned, TXA-12.1,
 * MSH-10 — back to the envelope that was sent, and every evidence segment and audio time in it equals the
 * fixture's own transcript file. Errors are OperationOutcomes with stable codes, only the auditor role may read,
 * and every read is audited. `scribe-bridge trace --json` prints the endpoint's JSON.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.ts';
import { signedContent } from '../src/contract/signature.ts';
import type { StoredTraceData } from '../src/trace/record.ts';
import type { Trace } from '../src/trace/types.ts';
import { fieldText, parseEr7, segmentsNamed } from './support/hl7-parse.ts';
import { startTraceWorld, TRACE_TOKENS, type TraceWorld } from './support/trace-harness.ts';

/** Every lifecycle (final, amended, entered-in-error), both tenants, batch and streaming, the 72-minute visit. */
const FILES = {
  postgres: [
    'hp-typical.json',
    'hp-typical.r2-amended.json',
    'hp-typical.r3-entered-in-error.json',
    'girpp-anxiety.json',
    'stream-diabetes.json',
    'bhsoap-insomnia.json',
    'long-visit.json',
  ],
  // A shorter set on PGlite (same code paths, a slower store): the suite's time matters.
  pglite: [
    'hp-typical.json',
    'hp-typical.r2-amended.json',
    'hp-typical.r3-entered-in-error.json',
    'stream-diabetes.json',
  ],
};

const sha256 = (s: string | Uint8Array) => createHash('sha256').update(s).digest('hex');
const q = (p: Record<string, string>) => `/v1/trace?${new URLSearchParams(p)}`;

describe.each(['pglite', 'postgres'] as const)('trace on %s', (store) => {
  let w: TraceWorld;
  const traced = new Set<string>();

  beforeAll(async () => {
    w = await startTraceWorld(store, FILES[store]);
  }, 180_000);
  afterAll(async () => {
    await w?.close();
  });

  async function trace(p: Record<string, string>): Promise<Trace> {
    const r = await w.get(q(p), TRACE_TOKENS.auditor);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body as Trace;
  }

  /** The trace names the note and revision, and that revision is the envelope that was sent (by content hash). */
  function expectEnvelope(t: Trace, tenant: string, noteId: string, revision: number): void {
    expect({ tenant: t.tenant, noteId: t.noteId, revision: t.match.revision }).toEqual({
      tenant,
      noteId,
      revision,
    });
    const sent = w.notes.find((n) => n.tenant === tenant && n.noteId === noteId && n.revision === revision);
    expect(sent, `${noteId} r${revision} was sent`).toBeDefined();
    const rev = t.revisions.find((r) => r.revision === revision)!;
    expect(rev.contentSha256).toBe(sha256(signedContent(sent!.sent)));
    traced.add(`${tenant}/${noteId}/${revision}`);
  }

  it('resolves every FHIR identifier and every id the EHR assigned back to the envelope', async () => {
    const docs = (await w.fhir.search('DocumentReference', '_count=1000')) as {
      id: string;
      identifier: { system: string; value: string }[];
    }[];
    expect(docs.length).toBeGreaterThanOrEqual(FILES[store].length - 1);
    for (const doc of docs) {
      const id = doc.identifier.find((i) => i.system.startsWith('urn:scribe-bridge:'))!;
      const tenant = id.system.split(':')[2]!;
      const m = /^(.*)-r(\d+)$/.exec(id.value)!;
      const [noteId, revision] = [m[1]!, Number(m[2])];
      expectEnvelope(
        await trace({ destination: 'ehr-fhir', identifier: `${id.system}|${id.value}` }),
        tenant,
        noteId,
        revision,
      );
      expectEnvelope(
        await trace({ destination: 'ehr-fhir', resourceId: `DocumentReference/${doc.id}` }),
        tenant,
        noteId,
        revision,
      );
    }
    // Every resource of every transaction response (Provenance, Device, Composition …) leads back to its note.
    for (const n of w.notes) {
      const t = await trace({ tenant: n.tenant, noteId: n.noteId, revision: String(n.revision) });
      const d = t.revisions[0]!.deliveries.find((x) => x.destination === 'ehr-fhir')!;
      const receipt = d.receipt as { entries: { resourceType: string; id: string }[] };
      expect(receipt.entries.length).toBeGreaterThan(0);
      for (const e of [receipt.entries[0]!, receipt.entries.at(-1)!]) {
        const back = await trace({ destination: 'ehr-fhir', resourceId: `${e.resourceType}/${e.id}` });
        expect([back.tenant, back.noteId]).toEqual([n.tenant, n.noteId]);
        expect(back.match.revision).toBeLessThanOrEqual(n.revision);
      }
    }
    // The trace names exactly the bytes the FHIR server received.
    const sentHashes = new Set<string>();
    for (const n of w.notes) {
      const t = await trace({ tenant: n.tenant, noteId: n.noteId, revision: String(n.revision) });
      for (const a of t.revisions[0]!.deliveries.find((x) => x.destination === 'ehr-fhir')!.attempts)
        sentHashes.add(
          a.payloadSha256 ??
            t.revisions[0]!.deliveries.find((x) => x.destination === 'ehr-fhir')!.payloadSha256,
        );
    }
    const received = w.fhir.requests.filter((r) => r.method === 'POST' && r.path === '' && r.status === 200);
    expect(received.length).toBe(w.notes.length);
    for (const r of received) expect(sentHashes.has(r.bodySha256!)).toBe(true);
  });

  it('resolves every MSH-10 and TXA-12.1 the MLLP receiver got back to the envelope', async () => {
    expect(w.mllp.received.length).toBe(w.notes.length);
    for (const m of w.mllp.received) {
      const segs = parseEr7(m.raw);
      const controlId = fieldText(segmentsNamed(segs, 'MSH')[0]!, 10);
      const documentNumber = fieldText(segmentsNamed(segs, 'TXA')[0]!, 12);
      expect(controlId).toBe(m.controlId);
      const t = await trace({ destination: 'ehr-mdm', controlId });
      const rev = t.revisions.find((r) => r.revision === t.match.revision)!;
      const d = rev.deliveries.find((x) => x.destination === 'ehr-mdm')!;
      // The matched revision's delivery is exactly this message, acknowledged.
      expect(d.payloadSha256).toBe(sha256(m.raw));
      expect(d.receipt).toMatchObject({ controlId, msa2: controlId });
      expect(d.attempts.at(-1)).toMatchObject({ outcome: 'delivered', ackCode: 'AA' });
      expectEnvelope(t, t.tenant, t.noteId, t.match.revision);
      const byDoc = await trace({ destination: 'ehr-mdm', documentNumber });
      expect([byDoc.tenant, byDoc.noteId]).toEqual([t.tenant, t.noteId]);
    }
  });

  it('reached every delivered (note, revision) from an identifier a destination holds', () => {
    for (const n of w.notes) expect(traced.has(`${n.tenant}/${n.noteId}/${n.revision}`), n.file).toBe(true);
  });

  it("carries every sentence with its edit class and evidence exactly as the fixture's transcript has it", async () => {
    for (const n of w.notes) {
      const t = await trace({
        tenant: n.tenant,
        noteId: n.noteId,
        revision: String(n.revision),
        include: 'transcript',
      });
      expect(t.revisions).toHaveLength(1);
      const r = t.revisions[0]!;
      const segments = new Map(n.transcript.Conversation.TranscriptSegments.map((s) => [s.SegmentId, s]));
      const expected = (n.fixture.note as any).sections.flatMap((sec: any) =>
        sec.sentences.map((s: any) => ({
          id: s.id,
          section: sec.name,
          text: s.text,
          evidence: s.evidence.map((id: string) => {
            const seg = segments.get(id)!;
            return {
              segmentId: id,
              beginAudioTime: seg.BeginAudioTime,
              endAudioTime: seg.EndAudioTime,
              participantRole: seg.ParticipantDetails.ParticipantRole,
              content: seg.Content,
            };
          }),
        })),
      );
      expect(
        r.sentences.map((s) => ({
          id: s.id,
          section: s.section,
          text: s.text,
          evidence: s.evidence.map(
            ({ segmentId, beginAudioTime, endAudioTime, participantRole, content }) => ({
              segmentId,
              beginAudioTime,
              endAudioTime,
              participantRole,
              content,
            }),
          ),
        })),
      ).toEqual(expected);
      for (const s of r.sentences) expect(s.editClass === 'clinician-added').toBe(s.draft === undefined);
      expect(r.transcript?.map((s) => s.segmentId)).toEqual(
        n.transcript.Conversation.TranscriptSegments.map((s) => s.SegmentId),
      );
      // Signature, source and hashes, checked when read.
      const env = n.sent as any;
      expect(r.signature).toMatchObject({
        verified: true,
        signedAt: env.signature.signedAt, // exactly as signed, not re-formatted
      });
      expect(r.signature.signer.identifier).toEqual(env.author.identifier);
      expect(r.healthscribe.jobName ?? r.healthscribe.sessionId).toBe(
        env.healthscribe.jobName ?? env.healthscribe.sessionId,
      );
      expect(r.healthscribe.artifacts.map((a) => a.sha256)).toEqual([
        env.healthscribe.transcript.sha256,
        env.healthscribe.clinicalDocument.sha256,
      ]);
      expect(r.checks.contentSha256.ok).toBe(true);
      expect(r.checks.signature).toEqual({ ok: true });
      expect(r.checks.payloads).toEqual([
        { destination: 'ehr-fhir', ok: true },
        { destination: 'ehr-mdm', ok: true },
      ]);
      expect(r.events.map((e) => e.action)).toContain('delivery.delivered');
    }
    // The trace data is stored with the revision (the transcript is not kept elsewhere), in form 2: each
    // segment once, in the transcript, and the evidence citing it by SegmentId.
    const stored = await w.service.ledger.db.query<{ n: number }>(
      `select count(*)::int as n from note_revisions
       where trace->>'v' = '2' and json_array_length(trace->'transcript') > 0
         and not exists (select 1 from json_array_elements(trace->'sentences') s, json_array_elements(s->'evidence') e
                         where json_typeof(e) <> 'string')`,
    );
    expect(stored[0]!.n).toBe(w.notes.length);
  });

  it('reads a revision stored in form 1 (before migration 007: a copy of the segment in every citation) the same', async () => {
    const n = w.notes[0]!;
    const p = { tenant: n.tenant, noteId: n.noteId, revision: String(n.revision), include: 'transcript' };
    const before = await trace(p);
    const db = w.service.ledger.db;
    const [row] = await db.query<{ id: number; trace: StoredTraceData }>(
      'select id, trace from note_revisions where tenant = $1 and note_id = $2 and revision = $3',
      [n.tenant, n.noteId, n.revision],
    );
    const stored = row!.trace;
    const byId = new Map(stored.transcript.map((s) => [s.segmentId, s]));
    const form1 = {
      ...stored,
      v: 1,
      sentences: stored.sentences.map((s) => ({ ...s, evidence: s.evidence.map((id) => byId.get(id)!) })),
    };
    expect(form1.sentences.flatMap((s) => s.evidence).every((e) => typeof e === 'object')).toBe(true);
    await db.query('update note_revisions set trace = $2::json where id = $1', [row!.id, form1]);
    try {
      expect(await trace(p)).toEqual(before);
    } finally {
      await db.query('update note_revisions set trace = $2::json where id = $1', [row!.id, stored]);
    }
  });

  it('shows every revision of a note and its lifecycle', async () => {
    const t = await trace({ tenant: 'riverside-clinic', noteId: 'enc-4471-hp' });
    // Without include=transcript only each sentence's evidence is carried.
    for (const r of t.revisions) expect(r.transcript).toBeUndefined();
    expect(t.revisions.map((r) => [r.revision, r.status, r.replaces ?? null, r.replacedBy ?? null])).toEqual([
      [1, 'final', null, 2],
      [2, 'amended', 1, 3],
      [3, 'entered-in-error', 2, null],
    ]);
    for (const r of t.revisions)
      for (const d of r.deliveries) {
        expect(d.status).toBe('delivered');
        expect(d.mapping.id).toBe(d.destination === 'ehr-fhir' ? 'fhir-transaction' : 'mdm');
        expect(d.attempts.length).toBeGreaterThanOrEqual(1);
      }
    expect(t.revisions[0]!.removedDraftSentences.length + t.revisions[0]!.sentences.length).toBeGreaterThan(
      0,
    );
  });

  it('refuses what it must, with stable codes, and audits every read', async () => {
    const code = (b: any) => b.issue[0].details.coding[0].code;
    const hp = { tenant: 'riverside-clinic', noteId: 'enc-4471-hp' };
    let r = await w.get(q(hp), TRACE_TOKENS.operator);
    expect([r.status, code(r.body)]).toEqual([403, 'FORBIDDEN']);
    r = await w.get(q(hp));
    expect([r.status, code(r.body)]).toEqual([401, 'AUTH_REQUIRED']);
    for (const bad of [
      {},
      { tenant: 'x' },
      { destination: 'ehr-fhir' },
      { destination: 'ehr-fhir', identifier: 'novalue' },
      { tenant: 'a', noteId: 'b', include: 'everything' },
      { color: 'red' },
    ]) {
      r = await w.get(q(bad as Record<string, string>), TRACE_TOKENS.auditor);
      expect([r.status, code(r.body)]).toEqual([400, 'USAGE']);
    }
    r = await w.get(q({ destination: 'ehr-mdm', controlId: 'NO-SUCH-ID' }), TRACE_TOKENS.auditor);
    expect([r.status, code(r.body)]).toEqual([404, 'NOT_FOUND']);
    const unknownAnswer = r.body;
    // An auditor limited to another tenant learns nothing from an MSH-10 of riverside-clinic: the same 404 as an
    // unknown one (asking by tenant and note id, which names the tenant, stays 403).
    const riverside = w.mllp.received.find((m) => m.raw.includes('riverside-clinic'))!;
    r = await w.get(
      q({ destination: 'ehr-mdm', controlId: riverside.controlId }),
      TRACE_TOKENS.harborAuditor,
    );
    expect([r.status, r.body]).toEqual([404, unknownAnswer]);
    r = await w.get(q(hp), TRACE_TOKENS.harborAuditor);
    expect([r.status, code(r.body)]).toEqual([403, 'FORBIDDEN']);
    // A destination this service does not have is a mistake in the query, not an absent document.
    r = await w.get(q({ destination: 'no-such-destination', controlId: 'X' }), TRACE_TOKENS.auditor);
    expect([r.status, code(r.body)]).toEqual([400, 'USAGE']);
    expect(JSON.stringify(r.body)).toContain('no destination \\"no-such-destination\\" is configured here');
    // A revision the note does not have says which it has.
    r = await w.get(q({ tenant: hp.tenant, noteId: hp.noteId, revision: '9' }), TRACE_TOKENS.auditor);
    expect([r.status, code(r.body)]).toEqual([404, 'NOT_FOUND']);
    expect(JSON.stringify(r.body)).toContain('this note has no revision 9');

    const before = await w.service.ledger.db.query<{ n: number }>(
      `select count(*)::int as n from audit_log where action = 'read.phi'`,
    );
    await trace(hp);
    const rows = await w.service.ledger.db.query<{
      actor: string;
      tenant: string;
      note_id: string;
      details: any;
    }>(
      `select actor, tenant, note_id, details from audit_log where action = 'read.phi' order by seq desc limit 1`,
    );
    const after = await w.service.ledger.db.query<{ n: number }>(
      `select count(*)::int as n from audit_log where action = 'read.phi'`,
    );
    expect(after[0]!.n).toBe(before[0]!.n + 1);
    expect(rows[0]).toMatchObject({
      actor: `auditor:${sha256(TRACE_TOKENS.auditor).slice(0, 12)}`,
      tenant: hp.tenant,
      note_id: hp.noteId,
      details: { endpoint: 'GET /v1/trace' },
    });
    expect(JSON.stringify(rows[0])).not.toContain(TRACE_TOKENS.auditor);
    // The 404 above was audited too.
    const misses = await w.service.ledger.db.query<{ n: number }>(
      `select count(*)::int as n from audit_log where action = 'read.phi' and details->>'status' = '404'`,
    );
    expect(misses[0]!.n).toBeGreaterThanOrEqual(1);
  });

  // The CLI opens the store itself: beside the running service on PostgreSQL it prints the endpoint's JSON; a
  // PGlite directory is locked by the service, and the CLI says to trace through the service instead.
  it('scribe-bridge trace prints the same JSON (PostgreSQL) or points to the endpoint (PGlite in use)', async () => {
    if (store === 'pglite') await cliOnLockedPglite();
    else await cliBesideService();
  });

  async function cliOnLockedPglite(): Promise<void> {
    const out: string[] = [];
    const io = {
      out: (s: string) => out.push(s),
      err: (s: string) => out.push(s),
      interactive: false,
      progressStream: process.stderr,
    };
    const m = w.mllp.received[0]!;
    const args = ['trace', '--config', w.configPath, '--destination', 'ehr-mdm', '--control-id', m.controlId];
    expect(await main(args, io)).not.toBe(0);
    expect(out.join('')).toMatch(/in use by another process/);
    expect(out.join('')).toContain('/v1/trace');
  }

  async function cliBesideService(): Promise<void> {
    const m = w.mllp.received[0]!;
    const out: string[] = [];
    const io = {
      out: (s: string) => out.push(s),
      err: (s: string) => out.push(s),
      interactive: false,
      progressStream: process.stderr,
    };
    expect(
      await main(
        [
          'trace',
          '--config',
          w.configPath,
          '--destination',
          'ehr-mdm',
          '--control-id',
          m.controlId,
          '--json',
        ],
        io,
      ),
    ).toBe(0);
    const fromCli = JSON.parse(out.join('')) as Trace;
    const fromHttp = await trace({ destination: 'ehr-mdm', controlId: m.controlId });
    const strip = (t: Trace) => t.revisions.map(({ events: _e, ...r }) => r);
    expect(strip(fromCli)).toEqual(strip(fromHttp));
    expect(fromCli.query).toEqual(fromHttp.query);
    out.length = 0;
    expect(
      await main(['trace', '--config', w.configPath, `destination=ehr-mdm&controlId=${m.controlId}`], io),
    ).toBe(0);
    const text = out.join('');
    expect(text).toContain(`trace ${fromHttp.tenant}/${fromHttp.noteId}`);
    expect(text).toContain('re-verified now: ok');
    expect(text).toContain(fromHttp.revisions[0]!.sentences[0]!.text);
    out.length = 0;
    expect(await main(['trace', '--config', w.configPath, '--tenant', 'x'], io)).not.toBe(0);
    expect(out.join('')).toMatch(/USAGE|tenant and noteId/);
  }
});
