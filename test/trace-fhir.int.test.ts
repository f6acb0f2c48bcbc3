/**
 * The trace as FHIR (src/trace/fhir.ts): notes delivered by a real service (PostgreSQL ledger, a real FHIR
 * server and MLLP receiver) are exported by `GET /v1/trace?…&_format=fhir` (and `Accept: application/fhir+json`)
 * and by `scribe-bridge trace … --fhir`; the Bundle validates against R4 + the project's profiles + US Core 8
 * with no errors; its Provenance entities carry exactly the artifact hashes of the signed envelope, and its
 * evidence entities the transcript's segment ids and audio times; there is one AuditEvent per delivery attempt.
 */
import { PassThrough } from 'node:stream';
import type { AuditEvent, Bundle, Provenance } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.ts';
import { readAudit } from '../src/ledger/audit.ts';
import type { Trace } from '../src/trace/types.ts';
import { validateFhir } from '../src/validate/fhir.ts';
import { isError } from '../src/validate/issues.ts';
import { testRegistry } from './support/profiles.ts';
import { startTraceWorld, TRACE_TOKENS, type TraceWorld } from './support/trace-harness.ts';

const ARTIFACT_SHA = 'https://fhir.scribe-bridge.dev/StructureDefinition/artifact-sha256';
const AUDIO = 'https://fhir.scribe-bridge.dev/StructureDefinition/audio-offset';
const FILES = ['stream-diabetes.json', 'hp-typical.json', 'hp-typical.r2-amended.json'];

let world: TraceWorld;

beforeAll(async () => {
  world = await startTraceWorld('postgres', FILES);
}, 180_000);

afterAll(async () => {
  await world?.close();
});

async function exportOf(
  tenant: string,
  noteId: string,
  revision: number,
  how: 'format' | 'accept',
): Promise<Bundle> {
  const q = `tenant=${encodeURIComponent(tenant)}&noteId=${encodeURIComponent(noteId)}&revision=${revision}`;
  const res = await fetch(`${world.service.url}/v1/trace?${q}${how === 'format' ? '&_format=fhir' : ''}`, {
    headers: {
      authorization: `Bearer ${TRACE_TOKENS.auditor}`,
      ...(how === 'accept' ? { accept: 'application/fhir+json' } : {}),
    },
  });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
  return (await res.json()) as Bundle;
}

describe('FHIR export of the trace', () => {
  it('validates with no errors and carries the artifact hashes, evidence and every attempt', async () => {
    const registry = await testRegistry();
    for (const [i, note] of world.notes.entries()) {
      const bundle = await exportOf(note.tenant, note.noteId, note.revision, i === 0 ? 'format' : 'accept');
      const trace = (
        await world.get(
          `/v1/trace?tenant=${note.tenant}&noteId=${note.noteId}&revision=${note.revision}`,
          TRACE_TOKENS.auditor,
        )
      ).body as Trace;
      expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'collection' });

      const issues = validateFhir(bundle, registry);
      const errors = issues.filter(isError);
      expect(errors, JSON.stringify(errors.slice(0, 5), null, 1)).toEqual([]);
      if (i === 0) {
        // The validator does look at these resources: a Provenance without `recorded`, an AuditEvent with an
        // outcome outside its required value set and an artifact hash that is not 64 hex digits are each refused.
        const broken = structuredClone(bundle);
        const entries = broken.entry!.map((e) => e.resource as unknown as Record<string, unknown>);
        const prov = entries.find((r) => r['resourceType'] === 'Provenance')!;
        delete prov['recorded'];
        const audit = entries.find((r) => r['resourceType'] === 'AuditEvent')!;
        audit['outcome'] = '3';
        const withHash = entries.find(
          (r) => r['resourceType'] === 'Provenance' && JSON.stringify(r).includes(ARTIFACT_SHA),
        )!;
        const ext = (withHash['entity'] as { extension?: { url: string; valueString?: string }[] }[])
          .flatMap((e) => e.extension ?? [])
          .find((x) => x.url === ARTIFACT_SHA)!;
        ext.valueString = 'not-a-hash';
        const found = validateFhir(broken, registry).filter(isError);
        expect(found.some((e) => /recorded/.test(e.path))).toBe(true);
        expect(found.some((e) => /outcome/.test(e.path) || /outcome/.test(e.message))).toBe(true);
        expect(found.some((e) => /artifact-sha256/.test(e.message) || /extension/.test(e.path))).toBe(true);
      }

      const resources = (bundle.entry ?? []).map((e) => e.resource!);
      const provenances = resources.filter((r): r is Provenance => r.resourceType === 'Provenance');
      const audits = resources.filter((r): r is AuditEvent => r.resourceType === 'AuditEvent');
      const rev = trace.revisions[0]!;

      // Artifact hashes: exactly the signed envelope's, in every AI-derived sentence's Provenance.
      const hs = note.sent['healthscribe'] as Record<string, { sha256?: string }>;
      const signed = new Set(
        Object.values(hs)
          .map((a) => a?.sha256)
          .filter((s): s is string => typeof s === 'string'),
      );
      expect(signed.size).toBe(2);
      expect(new Set(rev.healthscribe.artifacts.map((a) => a.sha256))).toEqual(signed);
      const sentenceProvs = provenances.filter((p) =>
        p.target.some((t) => t.extension?.some((x) => x.valueUri?.startsWith('sentence-'))),
      );
      expect(sentenceProvs.length).toBe(rev.sentences.length);
      for (const p of sentenceProvs) {
        const hashes = (p.entity ?? [])
          .map((e) => e.extension?.find((x) => x.url === ARTIFACT_SHA)?.valueString)
          .filter((s): s is string => s !== undefined);
        const added = p.extension?.some((x) => x.valueCode === 'clinician-added');
        if (added) expect(hashes).toEqual([]);
        else expect(new Set(hashes)).toEqual(signed);
      }

      // Evidence: segment ids and audio times equal the transcript file's.
      const segments = new Map(
        note.transcript.Conversation.TranscriptSegments.map((s) => [s.SegmentId, s] as const),
      );
      let evidence = 0;
      for (const s of rev.sentences) {
        const p = sentenceProvs.find((x) => x.target[0]!.extension![0]!.valueUri === `sentence-${s.id}`)!;
        const cited = (p.entity ?? []).filter((e) => e.extension?.some((x) => x.url === AUDIO));
        expect(cited.map((e) => e.what.identifier!.value)).toEqual(s.evidence.map((e) => e.segmentId));
        for (const e of cited) {
          const seg = segments.get(e.what.identifier!.value!)!;
          const range = e.extension!.find((x) => x.url === AUDIO)!.valueRange!;
          expect([range.low!.value, range.high!.value]).toEqual([seg.BeginAudioTime, seg.EndAudioTime]);
          evidence++;
        }
      }
      expect(evidence).toBeGreaterThan(0);

      // Targets: what each destination received, by the EHR's id and version for the FHIR destination.
      const fhirDelivery = rev.deliveries.find((d) => d.destination === 'ehr-fhir')!;
      const receipt = fhirDelivery.receipt as { resourceType: string; id: string; versionId?: string };
      const expectedRef = `${receipt.resourceType}/${receipt.id}${receipt.versionId ? `/_history/${receipt.versionId}` : ''}`;
      expect(sentenceProvs[0]!.target.map((t) => t.reference ?? t.identifier?.value)).toContain(expectedRef);
      const deliveryProvs = provenances.filter((p) => !sentenceProvs.includes(p));
      expect(deliveryProvs.length).toBe(rev.deliveries.filter((d) => d.status === 'delivered').length);
      const payloads = deliveryProvs.flatMap((p) =>
        (p.entity ?? []).filter((e) => e.role === 'revision').map((e) => e.extension![0]!.valueString),
      );
      expect(new Set(payloads)).toEqual(new Set(rev.deliveries.map((d) => d.payloadSha256)));

      // One AuditEvent per attempt, its outcome from the attempt; the others from audit records.
      const attempts = rev.deliveries.flatMap((d) => d.attempts);
      const attemptEvents = audits.filter((a) => a.entity?.[0]?.detail?.some((d) => d.type === 'attempt'));
      expect(attemptEvents.length).toBe(attempts.length);
      expect(attemptEvents.filter((a) => a.outcome === '0').length).toBe(
        attempts.filter((a) => a.outcome === 'delivered').length,
      );
      const fhirAttempt = attemptEvents.find((a) => a.type.code === 'rest')!;
      expect(fhirAttempt.subtype?.[0]?.code).toBe(note.revision > 1 ? 'update' : 'create');
      expect(fhirAttempt.action).toBe(note.revision > 1 ? 'U' : 'C');
      expect(attemptEvents.some((a) => a.type.code === '110106')).toBe(true);
      expect(
        audits.some((a) =>
          a.entity?.[0]?.detail?.some((d) => d.type === 'action' && d.valueString === 'revision.accepted'),
        ),
      ).toBe(true);
      // no sentence or transcript text in the export
      const text = JSON.stringify(bundle);
      expect(text).not.toContain(rev.sentences[0]!.text);
      expect(text).not.toContain(rev.sentences[0]!.evidence[0]?.content ?? '\u0000');
    }
    // each export read was audited as such
    const reads = (await readAudit(world.service.ledger.db, 1, 1_000_000)).filter(
      (r) => r.action === 'read.phi' && r.details['format'] === 'fhir',
    );
    expect(reads.length).toBe(world.notes.length);
  }, 120_000);

  it('`scribe-bridge trace --fhir` prints the same Bundle; an unknown _format is refused', async () => {
    const note = world.notes[0]!;
    let out = '';
    let err = '';
    const code = await main(
      [
        'trace',
        '--config',
        world.configPath,
        '--tenant',
        note.tenant,
        '--note',
        note.noteId,
        '--revision',
        String(note.revision),
        '--fhir',
      ],
      {
        out: (s) => {
          out += s;
        },
        err: (s) => {
          err += s;
        },
        interactive: false,
        progressStream: new PassThrough(),
      },
    );
    expect(err).toBe('');
    expect(code).toBe(0);
    const fromCli = JSON.parse(out) as Bundle;
    const fromHttp = await exportOf(note.tenant, note.noteId, note.revision, 'format');
    // The audit records of the two reads differ; everything else is the same export.
    const withoutReads = (b: Bundle) =>
      (b.entry ?? []).filter(
        (e) =>
          !(e.resource as AuditEvent).entity?.[0]?.detail?.some(
            (d) => d.type === 'action' && d.valueString === 'read.phi',
          ),
      );
    expect(withoutReads(fromCli)).toEqual(withoutReads(fromHttp));

    const bad = await world.get(
      `/v1/trace?tenant=${note.tenant}&noteId=${note.noteId}&_format=xml`,
      TRACE_TOKENS.auditor,
    );
    expect(bad.status).toBe(400);
    expect(bad.body.issue[0].details.coding[0].code).toBe('USAGE');
  }, 60_000);
});
