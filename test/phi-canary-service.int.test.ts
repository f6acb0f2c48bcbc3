/**
 * PHI canary over the service paths (reliability S4, A4): signed notes whose patient and clinician names,
 * identifiers, organisation and sentence text carry unique canary strings go through a real `scribe-bridge serve`
 * process on every path it has — delivered (FHIR 201, MLLP AA), signature failure and schema failure → DLQ, a
 * conflicting re-send, HTTP intake refusals, FHIR 422 rejection, 503 retries, 429, a FHIR answer lost after the
 * write (ambiguous → read-back), MLLP AE (rejected), AR (retried), and no ACK (ambiguous → resend). Then no canary
 * may appear in: the process's stdout/stderr (pino logs), `/metrics`, the dead-letter messages' attributes, or
 * the ledger's non-payload columns (delivery_attempts, deliveries, audit_log, revision state, rendering ids).
 * The payloads themselves do carry them (checked: the canary is live).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JsonValue } from '../src/contract/json.ts';
import {
  INTAKE_TOKEN,
  noteKey,
  OPERATOR_TOKEN,
  type ServiceStack,
  smallNote,
  startServe,
  startServiceStack,
  tempDir,
  until,
} from './support/service-harness.ts';

const PREFIX = 'PHIQZ';
const canaries: string[] = [];
/** A fresh canary for one field of one note. */
const canary = (field: string, n: number): string => {
  const v = `${PREFIX}${field}${n}X`;
  canaries.push(v);
  return v;
};

function withCanaries(n: number): (e: { [k: string]: JsonValue }) => void {
  return (e) => {
    e['patient'] = {
      identifier: [{ system: 'urn:oid:2.16.840.1.113883.3.7418.2.1', value: canary('MRN', n) }],
      name: { family: canary('FAMILY', n), given: [canary('GIVEN', n)] },
      birthDate: '1961-03-09',
      gender: 'female',
    };
    (e['encounter'] as { [k: string]: JsonValue })['identifier'] = [
      { system: 'urn:oid:2.16.840.1.113883.3.7418.2.7', value: canary('ENC', n) },
    ];
    e['author'] = {
      identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1144221847' }],
      name: { family: canary('AUTHOR', n), given: ['Maren'] },
    };
    (e['organization'] as { [k: string]: JsonValue })['name'] = canary('ORG', n);
    const s = (e['note'] as { sections: Array<{ sentences: Array<{ [k: string]: JsonValue }> }> }).sections;
    s[1]!.sentences[1]!['text'] = `Patient prefers ${canary('TEXT', n)} appointments.`;
  };
}

/** What the MLLP receiver echoes back in its AE (as some EHRs do with the patient's name). */
const echoed = canary('ECHO', 0);

let stack: ServiceStack;
const tmp = tempDir('sb-canary-svc-');

beforeAll(async () => {
  stack = await startServiceStack('canary', {
    mllp: {
      // AE (rejected, echoing PHI), AR then AA (retried), silence (ambiguous, resent with the same MSH-10), AA for the rest.
      script: (_m, i) =>
        i === 1
          ? [
              {
                // A receiver that echoes PHI in its error text (MSA-3, ERR-8): scribe-bridge must not keep it.
                ack: 'AE',
                text: `Unknown patient ${echoed}`,
                err: `ERR|||207^Application internal error^HL70357|E|||${echoed}`,
              },
            ]
          : i === 2
            ? [{ ack: 'AR' }]
            : i === 3
              ? []
              : [{ ack: 'AA' }],
    },
  });
});

afterAll(async () => {
  await stack?.close();
  tmp.remove();
});

describe('PHI canary over the service', () => {
  it('leaves no canary in logs, metrics, dead-letter attributes or the ledger on any path', async () => {
    const { db, queue, fhir, mllp } = stack;
    const { key, keysFile } = await noteKey(tmp.dir);
    // FHIR faults, taken in order by the POSTs: 422 rejection, two 503s, an answer lost after the write, a 429.
    fhir.fault({ kind: 'status', status: 422, issueCode: 'business-rule', match: { method: 'POST' } });
    fhir.fault({ kind: 'status', status: 503, times: 2, match: { method: 'POST' } });
    // The answer lost: the write is held past the destination's 2 s timeout (a reset connection would not do
    // here — the client resends a conditional create reset on a reused keep-alive socket, fhir-http.ts).
    fhir.fault({ kind: 'delay', ms: 3_000, match: { method: 'POST' } });
    fhir.fault({ kind: 'status', status: 429, retryAfter: '1', match: { method: 'POST' } });

    const good = await Promise.all(
      [1, 2, 3, 4, 5, 6].map((n) => smallNote(key, `canary-${n}`, 1, withCanaries(n))),
    );
    const amendment = await smallNote(key, 'canary-1', 2, withCanaries(7));
    // Same key as canary-2 r1, other content: a conflict.
    const conflict = await smallNote(key, 'canary-2', 1, (e) => {
      withCanaries(8)(e);
    });
    // Signature failure: content changed after signing.
    const tampered = (await smallNote(key, 'canary-9', 1, withCanaries(9))).replace(
      `${PREFIX}TEXT9X`,
      `${PREFIX}TEXT9Y`,
    );
    canaries.push(`${PREFIX}TEXT9Y`);
    // Schema failure with the canary in the offending value (errors that quote values would leak it).
    const badSchema = await smallNote(key, 'canary-10', 1, (e) => {
      withCanaries(10)(e);
      (e['patient'] as { [k: string]: JsonValue })['gender'] = canary('GENDER', 10);
    });
    await queue.send([...good, amendment, conflict, tampered, badSchema]);

    const config = stack.writeConfig(tmp.dir, keysFile, {
      visibilityTimeoutSeconds: 10,
      retry: '{ maxAttempts: 10, initialDelayMs: 100, maxDelayMs: 500 }',
    });
    const serve = startServe(config);
    const url = await serve.url;

    // HTTP intake refusals with canaries: bad schema, bad signature, a conflict (once the original is recorded).
    await until(
      async () =>
        (
          await db
            .query(`select 1 from note_revisions where note_id = 'canary-2'`)
            .catch(() => ({ rowCount: 0 }))
        ).rowCount === 1,
      60_000,
      'canary-2 r1 recorded',
    );
    for (const body of [badSchema, tampered, conflict]) {
      const r = await fetch(`${url}/v1/notes`, {
        method: 'POST',
        body,
        headers: { authorization: `Bearer ${INTAKE_TOKEN}` },
      });
      expect(r.status).toBeGreaterThanOrEqual(400);
      await r.arrayBuffer();
    }

    // Settled: 7 revisions × 2 destinations settled, queue drained, both poison messages dead-lettered.
    await until(
      async () => {
        // (An amendment whose original was rejected at a destination stays blocked there for an operator.)
        const { rows } = await db.query<{ open: number; all: number }>(
          `select count(*) filter (where state in ('pending', 'sending', 'ambiguous'))::int as open,
             count(*)::int as all from deliveries`,
        );
        return (
          rows[0]!.all === 14 &&
          rows[0]!.open === 0 &&
          (await queue.depth()) === 0 &&
          (await queue.depth(queue.dlqUrl)) === 2
        );
      },
      120_000,
      'all deliveries terminal, the queue drained, two messages dead-lettered',
    );
    const metrics = await (
      await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } })
    ).text();
    expect((await serve.stop()).code).toBe(0);

    // Every path was taken.
    const outcomes = await db.query<{ destination: string; outcome: string; code: string | null }>(
      `select distinct d.destination, a.outcome, coalesce(a.ack_code, a.http_status::text) as code
       from delivery_attempts a join deliveries d on d.id = a.delivery_id`,
    );
    const seen = outcomes.rows.map((r) => `${r.destination} ${r.outcome} ${r.code}`);
    expect(seen).toEqual(
      expect.arrayContaining([
        'ehr-fhir delivered 201',
        'ehr-fhir rejected 422',
        'ehr-fhir retry 503',
        'ehr-fhir retry 429',
        'ehr-mdm delivered AA',
        'ehr-mdm rejected AE',
        'ehr-mdm retry AR',
      ]),
    );
    expect(seen.some((s) => s.startsWith('ehr-fhir ambiguous'))).toBe(true);
    expect(seen.some((s) => s.startsWith('ehr-mdm ambiguous'))).toBe(true);
    const audit = await db.query<{ action: string }>('select distinct action from audit_log');
    expect(audit.rows.map((r) => r.action)).toEqual(expect.arrayContaining(['revision.conflict']));
    const dlq = await queue.drainDlq();
    expect(dlq.map((m) => m.MessageAttributes?.['scribe-bridge-reason']?.StringValue).sort()).toEqual(
      expect.arrayContaining(['SIGNATURE_INVALID']),
    );

    // The canary is live: the payloads carry it.
    expect(mllp.received.some((m) => m.raw.includes(`${PREFIX}FAMILY1X`))).toBe(true);
    expect(JSON.stringify(await fhir.search('DocumentReference'))).toContain(`${PREFIX}`);

    // Nothing else does.
    const ledgerRows = [
      await db.query('select * from delivery_attempts'),
      await db.query(
        'select id, tenant, note_id, revision, destination, state, attempts, last_error_code, receipt from deliveries',
      ),
      await db.query('select * from audit_log'),
      await db.query(
        'select tenant, note_id, revision, status, content_sha256, sig_kid, artifacts, source, state, state_reason from note_revisions',
      ),
      await db.query(
        'select destination, mapping_id, mapping_version, mapping_digest, content_type, payload_sha256, write_request, identifiers from renderings',
      ),
    ].map((r) => JSON.stringify(r.rows));
    const dlqAttributes = dlq.map((m) => JSON.stringify(m.MessageAttributes ?? {}));
    const places: Record<string, string> = {
      logs: serve.stderr(),
      metrics,
      'dead-letter attributes': dlqAttributes.join('\n'),
      ledger: ledgerRows.join('\n'),
    };
    expect(places['logs']!.length).toBeGreaterThan(1_000);
    expect(places['ledger']!).toContain('canary-1');
    for (const [where, text] of Object.entries(places)) {
      const hits = canaries.filter((c) => text.includes(c));
      expect({ where, hits }).toEqual({ where, hits: [] });
      expect(text.includes(PREFIX), `${where} contains ${PREFIX}`).toBe(false);
    }
  }, 240_000);
});
