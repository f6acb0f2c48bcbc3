import { describe, expect, it } from 'vitest';
import { ScribeError } from '../errors.ts';
import { parseArtifactUri } from './artifacts.ts';

describe('parseArtifactUri', () => {
  it.each([
    [
      's3://hs-output/enc-1/transcript.json',
      { scheme: 's3', bucket: 'hs-output', key: 'enc-1/transcript.json' },
    ],
    [
      'https://s3.us-east-1.amazonaws.com/hs-output/enc-1/summary.json',
      { scheme: 's3', bucket: 'hs-output', key: 'enc-1/summary.json', region: 'us-east-1' },
    ],
    [
      'https://hs-output.s3.eu-west-2.amazonaws.com/a%20b/summary.json',
      { scheme: 's3', bucket: 'hs-output', key: 'a b/summary.json', region: 'eu-west-2' },
    ],
    [
      'https://s3-logs.s3.us-east-1.amazonaws.com/k',
      { scheme: 's3', bucket: 's3-logs', key: 'k', region: 'us-east-1' },
    ],
    ['file:../hs/transcript%20one.json', { scheme: 'file', path: '../hs/transcript one.json' }],
    ["file:a-b_c.d~/(x)!$&'+,;=:@.json", { scheme: 'file', path: "a-b_c.d~/(x)!$&'+,;=:@.json" }],
    ['s3://hs-output/enc%3F1/t.json', { scheme: 's3', bucket: 'hs-output', key: 'enc?1/t.json' }],
  ])('%s', (uri, expected) => {
    expect(parseArtifactUri(uri)).toEqual(expected);
  });

  it.each([
    'ftp://x/y',
    's3://bucket-only',
    'file:',
    'file://host/x',
    'https://example.com/x',
    's3://b/%E0%A4%A',
    // RFC 3986: a raw space, query or fragment is not part of a file path (percent-encode them).
    'file:../hs space/transcript.json',
    'file:transcript.json?x=1',
    'file:transcript.json#x',
    'file:résumé.json',
    // Userinfo is not a bucket; an https S3 URI carries no query.
    'https://evil.com@hs-output.s3.us-east-1.amazonaws.com/k',
    'https://s3.us-east-1.amazonaws.com/a:b/k',
    's3://.a/k',
    'https://hs-output.s3.us-east-1.amazonaws.com/k?versionId=1',
  ])('rejects %s', (uri) => {
    expect(() => parseArtifactUri(uri)).toThrow(ScribeError);
    try {
      parseArtifactUri(uri);
    } catch (e) {
      expect((e as ScribeError).code).toBe('ARTIFACT_URI_INVALID');
    }
  });
});
