import { sign as cryptoSign, generateKeyPairSync } from 'node:crypto';
import { base64url, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  bytesOf,
  clinicalDocJson,
  envelopeJson,
  jwksOf,
  SEG,
  signed,
  testKey,
  transcriptJson,
} from '../../test/support/notes.ts';
import { ScribeError } from '../errors.ts';
import { sha256Hex } from './artifacts.ts';
import type { JsonValue } from './json.ts';
import { canonicalJson, parseJwks, signEnvelope, signedContent } from './signature.ts';
import { verifyEnvelope } from './verify.ts';

type Obj = { [k: string]: JsonValue };
const clone = <T>(v: T): T => structuredClone(v);

async function expectCode(
  input: Uint8Array | string,
  code: string,
  keys?: Awaited<ReturnType<typeof jwksOf>>,
) {
  const k = keys ?? jwksOf(await testKey());
  const err = await verifyEnvelope(input, { keys: k }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(ScribeError);
  expect((err as ScribeError).code).toBe(code);
  return err as ScribeError;
}

describe('verifyEnvelope', () => {
  it('verifies a signed envelope with every allowed algorithm and records the key thumbprint', async () => {
    for (const alg of ['ES256', 'ES384', 'RS256', 'RS384', 'PS256', 'EdDSA'] as const) {
      const key = await testKey(alg);
      const env = await signed(envelopeJson(), key);
      const v = await verifyEnvelope(bytesOf(env), { keys: jwksOf(key) });
      expect(v.signature).toMatchObject({
        kid: key.kid,
        alg,
        verified: true,
        signedAt: '2026-11-20T16:45:12Z',
      });
      expect(v.signature.thumbprint).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(v.artifacts.transcript).toMatchObject({ source: 'inline', hashSigned: true });
    }
  });

  it('classifies sentences and lists removed draft items (empty items excepted)', async () => {
    const v = await verifyEnvelope(bytesOf(await signed(envelopeJson())), { keys: jwksOf(await testKey()) });
    expect(v.sentences.map((s) => [s.id, s.editClass])).toEqual([
      ['s1', 'ai-verbatim'],
      ['s2', 'clinician-edited'],
      ['s3', 'clinician-added'],
    ]);
    expect(v.removedDraftSentences).toEqual([{ section: 'PLAN', index: 2, text: 'Follow up in two weeks.' }]);
  });

  it('counts draft evidence links to segments the transcript lacks (Q12) without refusing the note', async () => {
    const k = jwksOf(await testKey());
    expect(
      (await verifyEnvelope(bytesOf(await signed(envelopeJson())), { keys: k })).unresolvedDraftEvidence,
    ).toBe(0);
    const env = envelopeJson();
    const hs = env['healthscribe'] as Obj;
    const doc = structuredClone((hs['clinicalDocument'] as Obj)['inline'] as Obj);
    const item = ((doc['ClinicalDocumentation'] as Obj)['Sections'] as Obj[])[0]!['Summary'] as Obj[];
    (item[0]!['EvidenceLinks'] as Obj[]).push(
      { SegmentId: 'uuid-missing-1' },
      { SegmentId: 'uuid-missing-2' },
    );
    hs['clinicalDocument'] = { inline: doc, sha256: sha256Hex(canonicalJson(doc)) };
    const v = await verifyEnvelope(bytesOf(await signed(env)), { keys: k });
    expect(v.unresolvedDraftEvidence).toBe(2);
  });

  it('rejects a changed sentence after signing', async () => {
    const env = (await signed(envelopeJson())) as Obj;
    const tampered = JSON.stringify(env).replace('Order an EKG today.', 'Order an EKG today!');
    await expectCode(tampered, 'SIGNATURE_INVALID');
  });

  it('rejects alg none and HMAC as ALG_FORBIDDEN, crit as JWS_CRIT_UNSUPPORTED', async () => {
    const env = (await signed(envelopeJson())) as Obj;
    const sig = (env['signature'] as Obj)['jws'] as string;
    const withHeader = (h: object) => {
      const e = clone(env);
      (e['signature'] as Obj)['jws'] =
        `${Buffer.from(JSON.stringify(h)).toString('base64url')}..${sig.split('.')[2]}`;
      return JSON.stringify(e);
    };
    await expectCode(withHeader({ alg: 'none', kid: 'test-es256' }), 'ALG_FORBIDDEN');
    await expectCode(withHeader({ alg: 'HS256', kid: 'test-es256' }), 'ALG_FORBIDDEN');
    await expectCode(
      withHeader({ alg: 'ES256', kid: 'test-es256', crit: ['exp'], exp: 1 }),
      'JWS_CRIT_UNSUPPORTED',
    );
  });

  it('rejects artifacts of another job or session as HEALTHSCRIBE_JOB_MISMATCH', async () => {
    const withArtifacts = async (hs: Obj, transcript: Obj, doc?: Obj) => {
      const base = envelopeJson();
      const own = base['healthscribe'] as Obj;
      const docJson = doc ?? ((own['clinicalDocument'] as Obj)['inline'] as Obj);
      return JSON.stringify(
        await signed({
          ...base,
          healthscribe: {
            ...hs,
            transcript: { inline: transcript, sha256: sha256Hex(canonicalJson(transcript)) },
            clinicalDocument: { inline: docJson, sha256: sha256Hex(canonicalJson(docJson)) },
          },
        }),
      );
    };
    const transcript = (conversation: Obj) => {
      const t = transcriptJson();
      const c = { ...(t['Conversation'] as Obj) };
      delete c['JobName'];
      return { ...t, Conversation: { ...c, ...conversation } };
    };
    const doc = (session?: string) => {
      const d = clinicalDocJson();
      return session
        ? { ...d, ClinicalDocumentation: { ...(d['ClinicalDocumentation'] as Obj), SessionId: session } }
        : d;
    };
    // Another batch job's transcript; a streaming transcript for a batch job; the reverse; another session's document.
    const e1 = await expectCode(
      await withArtifacts({ jobName: 'job-1' }, transcript({ JobName: 'job-2' })),
      'HEALTHSCRIBE_JOB_MISMATCH',
    );
    expect(e1.where).toBe('$.healthscribe.jobName');
    expect(e1.message).toContain(
      "the transcript's Conversation.JobName is not the batch job the envelope names",
    );
    await expectCode(
      await withArtifacts({ jobName: 'job-1' }, transcript({ SessionId: 's-1' })),
      'HEALTHSCRIBE_JOB_MISMATCH',
    );
    await expectCode(
      await withArtifacts({ sessionId: 's-1' }, transcript({ JobName: 'job-1' })),
      'HEALTHSCRIBE_JOB_MISMATCH',
    );
    const e4 = await expectCode(
      await withArtifacts({ sessionId: 's-1' }, transcript({ SessionId: 's-1' }), doc('s-2')),
      'HEALTHSCRIBE_JOB_MISMATCH',
    );
    expect(e4.message).toContain('clinical document');
    // The same session throughout, or files that name none: accepted.
    const k = jwksOf(await testKey());
    await verifyEnvelope(
      await withArtifacts({ sessionId: 's-1' }, transcript({ SessionId: 's-1' }), doc('s-1')),
      { keys: k },
    );
    await verifyEnvelope(await withArtifacts({ jobName: 'job-1' }, transcript({})), { keys: k });
  });

  it('rejects an unknown kid and a key of another tenant as KEY_UNKNOWN', async () => {
    const ours = await testKey('ES256', 'riverside-1');
    const theirs = await testKey('ES256', 'harbor-1');
    const env = await signed(envelopeJson(), theirs);
    await expectCode(bytesOf(env), 'KEY_UNKNOWN', jwksOf(ours));
  });

  it('uses a published key set as it is: keys without a kid left out, a public key whose key_ops also say "sign"', async () => {
    const key = await testKey('ES256', 'review-1');
    const env = bytesOf(await signed(envelopeJson(), key));
    const other = await testKey('ES256', 'other');
    const { kid: _kid, ...noKid } = other.publicJwk;
    const published = parseJwks({
      keys: [
        { ...noKid, use: 'enc' },
        { ...key.publicJwk, key_ops: ['sign', 'verify'] },
      ],
    });
    expect(published.keys).toHaveLength(1);
    const v = await verifyEnvelope(env, { keys: published });
    expect(v.signature).toMatchObject({ kid: 'review-1', verified: true });
    // A set with no kid at all is the deployment's to fix (retried, not a refusal of the note).
    expect(() => parseJwks({ keys: [noKid] })).toThrow(/no key of JWKS has a "kid"/);
    // key_ops without "verify" still refuses the key, saying why.
    const signOnly = parseJwks({ keys: [{ ...key.publicJwk, key_ops: ['sign'] }] });
    expect((await expectCode(env, 'SIGNATURE_INVALID', signOnly)).message).toContain('key_ops');
  });

  it('rejects a signature by another key under a known kid', async () => {
    const real = await testKey('ES256', 'shared-kid');
    const impostor = await testKey('ES384', 'impostor');
    const env = await signEnvelope(envelopeJson(), impostor.privateJwk, { kid: 'shared-kid', alg: 'ES384' });
    await expectCode(bytesOf(env), 'SIGNATURE_INVALID', jwksOf(real));
  });

  it('rejects duplicate members (I-JSON) with their path and line', async () => {
    const env = JSON.stringify(await signed(envelopeJson()), null, 2).replace(
      '"revision": 1,',
      '"revision": 1,\n  "revision": 1,',
    );
    const err = await expectCode(env, 'ENVELOPE_DUPLICATE_MEMBER');
    expect(err.where).toMatch(/^\$\.revision \(\d+:\d+\)$/);
  });

  it('lists every schema problem with a JSON path and a line', async () => {
    const e = envelopeJson({ surprise: true, tenant: 'Not A Tenant' });
    const err = await expectCode(JSON.stringify(await signed(e), null, 2), 'ENVELOPE_SCHEMA');
    expect(err.issues.length).toBeGreaterThanOrEqual(2);
    expect(err.issues.map((i) => i.where).join(' ')).toContain('$.tenant (');
    expect(err.toOperationOutcome().issue[0]!.details.coding[0]).toEqual({
      system: 'urn:scribe-bridge:error',
      code: 'ENVELOPE_SCHEMA',
    });
  });

  it('rejects null where the spec does not show it', async () => {
    const e = envelopeJson();
    (e['patient'] as Obj)['birthDate'] = null;
    await expectCode(JSON.stringify(await signed(e)), 'ENVELOPE_SCHEMA');
  });

  it('rejects control characters in note text, naming the sentence', async () => {
    const e = envelopeJson();
    const s = ((e['note'] as Obj)['sections'] as Obj[])[0]!['sentences'] as Obj[];
    s[0]!['text'] = 'bell \u0007 here';
    const err = await expectCode(JSON.stringify(await signed(e)), 'ENVELOPE_CONTROL_CHAR');
    expect(err.message).toContain('"s1"');
    expect(err.message).toContain('U+0007');
  });

  it('rejects control characters anywhere else in the envelope, but leaves an inline file to its parser', async () => {
    const e = envelopeJson();
    ((e['author'] as Obj)['name'] as Obj)['family'] = 'Lind\u001bqvist';
    let err = await expectCode(JSON.stringify(await signed(e)), 'ENVELOPE_CONTROL_CHAR');
    expect(err.where).toMatch(/^\$\.author\.name\.family/);
    // Inside HealthScribe's own inline file the transcript parser decides, at the file's path.
    const inline = envelopeJson();
    const t = ((inline['healthscribe'] as Obj)['transcript'] as Obj)['inline'] as Obj;
    ((t['Conversation'] as Obj)['TranscriptSegments'] as Obj[])[0]!['Content'] = 'x\u0007y';
    (((inline['healthscribe'] as Obj)['transcript'] as Obj)['sha256'] as unknown) = sha256Hex(
      canonicalJson(t),
    );
    err = await expectCode(JSON.stringify(await signed(inline)), 'HEALTHSCRIBE_SCHEMA');
    expect(err.where).toBe('$.healthscribe.transcript.inline.Conversation.TranscriptSegments[0].Content');
  });

  it('rejects a noncharacter in note text (I-JSON), even signed, with the sentence path', async () => {
    const e = envelopeJson();
    const s = ((e['note'] as Obj)['sections'] as Obj[])[0]!['sentences'] as Obj[];
    s[0]!['text'] = 'no \uffff here';
    const err = await expectCode(JSON.stringify(await signed(e), null, 2), 'ENVELOPE_JSON');
    expect(err.message).toContain('U+FFFF');
    expect(err.where).toMatch(/^\$\.note\.sections\[0\]\.sentences\[0\]\.text \(\d+:\d+\)$/);
    expect(err.status).toBe(400);
  });

  it('refuses impossible calendar dates and an encounter that ends before it starts, located', async () => {
    const withPatient = (birthDate: string) => {
      const e = envelopeJson();
      (e['patient'] as Obj)['birthDate'] = birthDate;
      return e;
    };
    for (const bad of ['1961-02-30', '2023-02-29', '1961-04-31', '1900-02-29']) {
      const err = await expectCode(JSON.stringify(await signed(withPatient(bad))), 'ENVELOPE_SCHEMA');
      expect(err.issues.map((i) => i.where.split(' ')[0])).toEqual(['$.patient.birthDate']);
      expect(err.issues[0]!.message).toContain('must be a day of the calendar');
    }
    // Not a date at all: the pattern says so (the calendar check must not throw on them: it used to, a 500).
    for (const bad of ['1961-13-45', '2026-11-20T14:02:00Z', '1961-1-1']) {
      const err = await expectCode(JSON.stringify(await signed(withPatient(bad))), 'ENVELOPE_SCHEMA');
      expect(err.issues[0]!.where.split(' ')[0]).toBe('$.patient.birthDate');
      expect(err.issues[0]!.message).toContain('must be a date');
    }
    const keys = jwksOf(await testKey());
    for (const good of ['2024-02-29', '2000-02-29', '1961-03', '1961', '1961-12-31'])
      await verifyEnvelope(bytesOf(await signed(withPatient(good))), { keys });

    const period = (start: string, end: string) => {
      const e = envelopeJson();
      (e['encounter'] as Obj)['period'] = { start, end };
      return e;
    };
    const err = await expectCode(
      JSON.stringify(await signed(period('2026-11-20T14:02:00-05:00', '2026-11-20T19:01:59Z'))),
      'ENVELOPE_SCHEMA',
    );
    expect(err.issues.map((i) => [i.where.split(' ')[0], i.message])).toEqual([
      ['$.encounter.period.end', 'must not be before start (FHIR Period, per-1)'],
    ]);
    // The same instant written in two zones, and an end after the start, are fine.
    await verifyEnvelope(bytesOf(await signed(period('2026-11-20T14:02:00-05:00', '2026-11-20T19:02:00Z'))), {
      keys,
    });
  });

  it('refuses values FHIR could not carry as signed: a zone offset past ±14:00, an identifier system with a space', async () => {
    const keys = jwksOf(await testKey());
    const signedAt = (t: string) => {
      const e = envelopeJson();
      (e['signature'] as Obj)['signedAt'] = t;
      return e;
    };
    for (const bad of ['2026-11-20T16:45:12+23:59', '2026-11-20T16:45:12-14:01']) {
      const err = await expectCode(JSON.stringify(await signed(signedAt(bad))), 'ENVELOPE_SCHEMA');
      expect(err.issues.map((i) => [i.where.split(' ')[0], i.message])).toEqual([
        [
          '$.signature.signedAt',
          'its time zone offset must lie within -14:00 and +14:00 (as every time zone does; FHIR takes no wider)',
        ],
      ]);
    }
    for (const good of [
      '2026-11-20T16:45:12+14:00',
      '2026-11-20T16:45:12-12:00',
      '2026-11-20T16:45:12+05:45',
    ])
      await verifyEnvelope(bytesOf(await signed(signedAt(good))), { keys });

    const e = envelopeJson();
    ((e['patient'] as Obj)['identifier'] as Obj[])[0]!['system'] = 'Local MRN system';
    const err = await expectCode(JSON.stringify(await signed(e)), 'ENVELOPE_SCHEMA');
    expect(err.issues.map((i) => i.where.split(' ')[0])).toEqual(['$.patient.identifier[0].system']);
    expect(err.issues[0]!.message).toBe('must be a URI (urn:oid:…, http://…), without whitespace');
  });

  it('refuses a sentence over 1 MB and a note over 10 MB of text, naming the sentence', async () => {
    const keys = jwksOf(await testKey());
    const withTexts = (texts: string[]) => {
      const e = envelopeJson();
      const sentences = ((e['note'] as Obj)['sections'] as Obj[])[0]!['sentences'] as Obj[];
      texts.forEach((t, i) => {
        sentences[i] = { id: `big${i}`, text: t, evidence: [] };
      });
      return e;
    };
    const mb = 1024 * 1024;
    // Exactly 1 MB (in UTF-8 bytes: 'é' is two) is fine; one byte more is not.
    await verifyEnvelope(bytesOf(await signed(withTexts(['é'.repeat(mb / 2)]))), { keys });
    const one = await expectCode(
      JSON.stringify(await signed(withTexts([`x${'é'.repeat(mb / 2)}`]))),
      'ENVELOPE_SCHEMA',
    );
    expect(one.issues.map((i) => [i.where.split(' ')[0], i.message])).toEqual([
      [
        '$.note.sections[0].sentences[0].text',
        `sentence "big0" has ${mb + 1} bytes of text; a FHIR string holds at most 1 MB (${mb} bytes)`,
      ],
    ]);
    const many = await expectCode(
      JSON.stringify(await signed(withTexts(Array.from({ length: 11 }, () => 'x'.repeat(mb - 1))))),
      'ENVELOPE_SCHEMA',
    );
    expect(many.issues.map((i) => i.where.split(' ')[0])).toEqual(['$.note']);
    expect(many.issues[0]!.message).toMatch(/^the note has \d+ bytes of text; at most 10485760 \(10 MB\)/);
  });

  it('verifies EdDSA over Ed448 (RFC 8037), and says why a key cannot verify a signature', async () => {
    // Signed by hand (node:crypto): jose's WebCrypto build has no Ed448.
    const signWith = (privateKey: Parameters<typeof cryptoSign>[2], header: object) => {
      const e = envelopeJson();
      const h = base64url.encode(JSON.stringify(header));
      const input = `${h}.${base64url.encode(signedContent(e))}`;
      const sig = base64url.encode(
        cryptoSign(
          header && 'alg' in header && header.alg === 'EdDSA' ? null : 'sha256',
          Buffer.from(input),
          privateKey,
        ),
      );
      (e['signature'] as Obj)['jws'] = `${h}..${sig}`;
      return JSON.stringify(e);
    };
    const ed448 = generateKeyPairSync('ed448');
    const edJwk = { ...(ed448.publicKey.export({ format: 'jwk' }) as JWK), kid: 'ed448', alg: 'EdDSA' };
    const ok = await verifyEnvelope(signWith(ed448.privateKey, { alg: 'EdDSA', kid: 'ed448' }), {
      keys: { keys: [edJwk] },
    });
    expect(ok.signature).toMatchObject({ kid: 'ed448', alg: 'EdDSA', verified: true });
    // Another Ed448 key under the same kid: a plain mismatch.
    const other = generateKeyPairSync('ed448');
    await expect(
      verifyEnvelope(signWith(other.privateKey, { alg: 'EdDSA', kid: 'ed448' }), { keys: { keys: [edJwk] } }),
    ).rejects.toThrow('the signature does not verify with key "ed448"');

    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const rsaJwk = rsa1024.publicKey.export({ format: 'jwk' }) as JWK;
    const reasons: Array<[JWK, string]> = [
      [{ ...rsaJwk, kid: 'k' }, 'RS256 requires key modulusLength to be 2048 bits or larger'],
      [{ ...rsaJwk, kid: 'k', use: 'enc' }, 'it is published for use "enc", not "sig"'],
      [{ ...rsaJwk, kid: 'k', alg: 'RS384' }, 'it is published for RS384'],
      [{ ...rsaJwk, kid: 'k', key_ops: ['encrypt'] }, 'its key_ops do not include "verify"'],
    ];
    for (const [jwk, why] of reasons) {
      const err = await expectCode(
        signWith(rsa1024.privateKey, { alg: 'RS256', kid: 'k' }),
        'SIGNATURE_INVALID',
        {
          keys: [jwk],
        },
      );
      expect(err.message).toContain(
        `key "k" of this tenant's review keys cannot verify this RS256 signature: ${why}`,
      );
    }
    const numeric = await expectCode(signWith(rsa1024.privateKey, { alg: 'RS256', kid: 7 }), 'KEY_UNKNOWN', {
      keys: [rsaJwk],
    });
    expect(numeric.message).toContain('the JWS header\'s "kid" must be a non-empty string');
  });

  it('accepts TAB, LF and CR inside sentences', async () => {
    const e = envelopeJson();
    const s = ((e['note'] as Obj)['sections'] as Obj[])[1]!['sentences'] as Obj[];
    s[1]!['text'] = 'line one\r\nline two\tTAB\rCR';
    await verifyEnvelope(bytesOf(await signed(e)), { keys: jwksOf(await testKey()) });
  });

  it('enforces lifecycle rules', async () => {
    await expectCode(
      bytesOf(await signed(envelopeJson({ revision: 2, status: 'final', replaces: 1 }))),
      'LIFECYCLE_INVALID',
    );
    await expectCode(bytesOf(await signed(envelopeJson({ revision: 1, replaces: 1 }))), 'LIFECYCLE_INVALID');
    await expectCode(
      bytesOf(await signed(envelopeJson({ revision: 3, status: 'amended', replaces: 1 }))),
      'LIFECYCLE_INVALID',
    );
    const retraction = envelopeJson({
      revision: 2,
      status: 'entered-in-error',
      replaces: 1,
      note: { sections: [] },
    });
    const v = await verifyEnvelope(bytesOf(await signed(retraction)), { keys: jwksOf(await testKey()) });
    expect(v.sentences).toEqual([]);
  });

  it('rejects evidence that is not in the transcript, naming the sentence', async () => {
    const e = envelopeJson();
    const s = ((e['note'] as Obj)['sections'] as Obj[])[0]!['sentences'] as Obj[];
    s[0]!['evidence'] = [SEG(1), SEG(99)];
    const err = await expectCode(bytesOf(await signed(e)), 'EVIDENCE_UNKNOWN_SEGMENT');
    expect(err.message).toContain('"s1"');
    expect(err.where).toBe('$.note.sections[0].sentences[0].evidence[1]');
  });

  it('rejects draft pointers outside the clinical document', async () => {
    for (const draft of [
      { section: 'ASSESSMENT', index: 0 },
      { section: 'PLAN', index: 3 },
    ]) {
      const e = envelopeJson();
      const s = ((e['note'] as Obj)['sections'] as Obj[])[1]!['sentences'] as Obj[];
      s[0]!['draft'] = draft;
      const err = await expectCode(bytesOf(await signed(e)), 'DRAFT_POINTER_INVALID');
      expect(err.message).toContain('"s2"');
    }
  });

  it('matches draft sections case-insensitively', async () => {
    const e = envelopeJson();
    const s = ((e['note'] as Obj)['sections'] as Obj[])[0]!['sentences'] as Obj[];
    s[0]!['draft'] = { section: 'chief_complaint', index: 0 };
    const v = await verifyEnvelope(bytesOf(await signed(e)), { keys: jwksOf(await testKey()) });
    expect(v.sentences[0]!.editClass).toBe('ai-verbatim');
  });

  it('rejects an inline artifact whose signed sha256 differs', async () => {
    const e = envelopeJson();
    const hs = e['healthscribe'] as Obj;
    (hs['transcript'] as Obj)['sha256'] = sha256Hex('something else');
    await expectCode(bytesOf(await signed(e)), 'ARTIFACT_HASH_MISMATCH');
  });

  it('records an inline artifact without sha256 as not hash-signed', async () => {
    const e = envelopeJson();
    const hs = e['healthscribe'] as Obj;
    delete (hs['clinicalDocument'] as Obj)['sha256'];
    const v = await verifyEnvelope(bytesOf(await signed(e)), { keys: jwksOf(await testKey()) });
    expect(v.artifacts.clinicalDocument.hashSigned).toBe(false);
    expect(v.artifacts.clinicalDocument.sha256).toBe(
      sha256Hex(canonicalJson((hs['clinicalDocument'] as Obj)['inline'])),
    );
  });

  it('fetches s3 artifacts through the object store and checks the exact bytes', async () => {
    const transcriptBytes = Buffer.from(
      JSON.stringify(
        envelopeJson()['healthscribe'] &&
          (envelopeJson()['healthscribe'] as Obj)['transcript'] &&
          ((envelopeJson()['healthscribe'] as Obj)['transcript'] as Obj)['inline'],
        null,
        1,
      ),
    );
    const docBytes = Buffer.from(
      JSON.stringify(((envelopeJson()['healthscribe'] as Obj)['clinicalDocument'] as Obj)['inline']),
    );
    const objects = new Map([
      ['hs-out/job-1/transcript.json', transcriptBytes],
      ['hs-out/job-1/summary.json', docBytes],
    ]);
    const e = envelopeJson({
      healthscribe: {
        jobName: 'job-1',
        transcript: { uri: 's3://hs-out/job-1/transcript.json', sha256: sha256Hex(transcriptBytes) },
        clinicalDocument: {
          uri: 'https://hs-out.s3.us-east-1.amazonaws.com/job-1/summary.json',
          sha256: sha256Hex(docBytes),
        },
      },
    });
    const seen: string[] = [];
    const objectStore = {
      async getObject(loc: { bucket: string; key: string }) {
        seen.push(`${loc.bucket}/${loc.key}`);
        const b = objects.get(`${loc.bucket}/${loc.key}`);
        if (!b) throw new ScribeError('ARTIFACT_MISSING', 'no such key');
        return b;
      },
    };
    const keys = jwksOf(await testKey());
    const v = await verifyEnvelope(bytesOf(await signed(e)), { keys, objectStore });
    expect(seen.sort()).toEqual(['hs-out/job-1/summary.json', 'hs-out/job-1/transcript.json']);
    expect(v.artifacts.transcript).toMatchObject({
      source: 'uri',
      hashSigned: true,
      sha256: sha256Hex(transcriptBytes),
    });
    objects.set('hs-out/job-1/transcript.json', Buffer.concat([transcriptBytes, Buffer.from(' ')]));
    const err = await verifyEnvelope(bytesOf(await signed(e)), { keys, objectStore }).catch(
      (x: ScribeError) => x,
    );
    expect((err as ScribeError).code).toBe('ARTIFACT_HASH_MISMATCH');
  });

  it('locates artifacts by job name when none are given, and records the hashes as unsigned', async () => {
    const t = Buffer.from(
      JSON.stringify(((envelopeJson()['healthscribe'] as Obj)['transcript'] as Obj)['inline']),
    );
    const d = Buffer.from(
      JSON.stringify(((envelopeJson()['healthscribe'] as Obj)['clinicalDocument'] as Obj)['inline']),
    );
    const e = envelopeJson({ healthscribe: { jobName: 'job-1' } });
    const v = await verifyEnvelope(bytesOf(await signed(e)), {
      keys: jwksOf(await testKey()),
      jobLocator: {
        locate: async (job) => ({
          transcriptUri: `s3://b/${job}/transcript.json`,
          clinicalDocumentUri: `s3://b/${job}/summary.json`,
        }),
      },
      objectStore: { getObject: async ({ key }) => (key.endsWith('transcript.json') ? t : d) },
    });
    expect(v.artifacts.transcript).toMatchObject({
      source: 'job',
      hashSigned: false,
      uri: 's3://b/job-1/transcript.json',
    });
  });

  it('refuses file: URIs outside the command line', async () => {
    const e = envelopeJson({
      healthscribe: {
        jobName: 'job-1',
        transcript: { uri: 'file:transcript.json', sha256: sha256Hex('x') },
        clinicalDocument: { uri: 'file:summary.json', sha256: sha256Hex('y') },
      },
    });
    await expectCode(bytesOf(await signed(e)), 'ARTIFACT_URI_INVALID');
  });

  it('wraps unexpected failures as INTERNAL, never leaking another error type', async () => {
    const err = await verifyEnvelope(bytesOf(await signed(envelopeJson())), {
      keys: async () => {
        throw new TypeError('boom');
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScribeError);
    expect((err as ScribeError).code).toBe('INTERNAL');
  });
});
