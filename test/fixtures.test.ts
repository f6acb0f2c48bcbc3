/**
 * The checked-in fixtures against the verifier: every valid envelope verifies with exactly the counts its
 * manifest (computed independently by the generator) gives; every negative fixture fails with its own code.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { countEditClasses } from '../src/contract/edits.ts';
import { loadJwksFile } from '../src/contract/signature.ts';
import { verifyEnvelope } from '../src/contract/verify.ts';
import { ScribeError } from '../src/errors.ts';

const root = new URL('../fixtures/', import.meta.url).pathname;
const valid = JSON.parse(readFileSync(join(root, 'envelopes/valid.manifest.json'), 'utf8')) as {
  envelopes: Array<{
    file: string;
    tenant: string;
    noteId: string;
    revision: number;
    status: string;
    template: string;
    editClasses: Record<string, number>;
    removedDraftSentences: number;
  }>;
};
const invalid = JSON.parse(readFileSync(join(root, 'envelopes/invalid.manifest.json'), 'utf8')) as Record<
  string,
  { code: string; description: string }
>;

describe('valid fixtures', () => {
  it.each(valid.envelopes.map((e) => [e.file, e] as const))(
    '%s verifies as its manifest says',
    async (file, m) => {
      const dir = join(root, 'envelopes/valid');
      const keys = await loadJwksFile(join(root, `keys/${m.tenant}.jwks.json`));
      const v = await verifyEnvelope(readFileSync(join(dir, file)), { keys, envelopeDir: dir, source: file });
      expect(v.signature.verified).toBe(true);
      expect({
        tenant: v.envelope.tenant,
        noteId: v.envelope.noteId,
        revision: v.envelope.revision,
        status: v.envelope.status,
        template: v.envelope.template,
      }).toEqual({
        tenant: m.tenant,
        noteId: m.noteId,
        revision: m.revision,
        status: m.status,
        template: m.template,
      });
      expect(countEditClasses(v.sentences)).toEqual(m.editClasses);
      expect(v.removedDraftSentences.length).toBe(m.removedDraftSentences);
    },
  );
});

describe('negative fixtures', () => {
  it('cover every input error code of the verifier', () => {
    const codes = new Set(Object.values(invalid).map((c) => c.code));
    for (const code of [
      'ENVELOPE_JSON',
      'ENVELOPE_DUPLICATE_MEMBER',
      'ENVELOPE_SCHEMA',
      'ENVELOPE_CONTROL_CHAR',
      'SIGNATURE_INVALID',
      'KEY_UNKNOWN',
      'ALG_FORBIDDEN',
      'JWS_CRIT_UNSUPPORTED',
      'ARTIFACT_URI_INVALID',
      'ARTIFACT_MISSING',
      'ARTIFACT_UNAVAILABLE',
      'ARTIFACT_HASH_MISMATCH',
      'HEALTHSCRIBE_SCHEMA',
      'HEALTHSCRIBE_PREVIEW_FORMAT',
      'EVIDENCE_UNKNOWN_SEGMENT',
      'DRAFT_POINTER_INVALID',
      'LIFECYCLE_INVALID',
    ]) {
      expect(codes, code).toContain(code);
    }
  });

  it.each(Object.entries(invalid))('%s fails with its own code', async (file, { code }) => {
    const dir = join(root, 'envelopes/invalid');
    const keys = await loadJwksFile(join(root, 'keys/riverside-clinic.jwks.json'));
    const err = await verifyEnvelope(readFileSync(join(dir, file)), {
      keys,
      envelopeDir: dir,
      source: file,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScribeError);
    expect((err as ScribeError).code).toBe(code);
    expect((err as ScribeError).message).toMatch(/\. \S/); // what, where, then what to do
  });
});
