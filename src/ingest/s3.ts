/**
 * HealthScribe artifacts and claim-check envelopes from S3 (or an S3-compatible server), behind the
 * `ObjectStore` interface src/contract/artifacts.ts verifies through. A missing object is permanent
 * (ARTIFACT_MISSING); anything else the store does is transient (ARTIFACT_UNAVAILABLE: retried).
 */
import { GetObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { ObjectStore } from '../contract/artifacts.ts';
import { ScribeError } from '../errors.ts';
import { awsRequestHandler } from './aws-http.ts';

export interface S3Options {
  readonly region: string;
  /** For S3-compatible servers; omit for AWS. */
  readonly endpoint?: string;
  readonly forcePathStyle?: boolean;
  /** Refuse objects larger than this (bytes): a HealthScribe file of a 2-hour session is a few MB. */
  readonly maxBytes?: number;
  /** Only for tests against S3-compatible servers; in production the standard AWS chain provides them. */
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
  /**
   * How long a GetObject may go without a byte before it is abandoned (ARTIFACT_UNAVAILABLE, retried), ms; and
   * how long connecting may take. The SDK's defaults are no limit: a store that accepts the connection and never
   * answers would hold the note's intake (and an intake slot) for ever.
   */
  readonly requestTimeoutMs?: number;
  readonly connectionTimeoutMs?: number;
}

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const MISSING = new Set(['NoSuchKey', 'NoSuchBucket', 'NotFound']);

export class S3ObjectStore implements ObjectStore {
  readonly #options: S3Options;
  /** One client per region: an https URI may name another region than the configured one. */
  readonly #clients = new Map<string, S3Client>();

  constructor(options: S3Options) {
    this.#options = options;
  }

  #client(region: string): S3Client {
    let c = this.#clients.get(region);
    if (!c) {
      const o = this.#options;
      c = new S3Client({
        region,
        ...(o.endpoint ? { endpoint: o.endpoint } : {}),
        ...(o.forcePathStyle !== undefined ? { forcePathStyle: o.forcePathStyle } : {}),
        ...(o.credentials ? { credentials: o.credentials } : {}),
        // Every object's SHA-256 is checked against the signed one (stronger than S3's CRC): the SDK's own
        // CRC32 over each ~0.5 MB transcript would be paid twice for nothing.
        responseChecksumValidation: 'WHEN_REQUIRED',
        requestHandler: awsRequestHandler(o.requestTimeoutMs, o.connectionTimeoutMs),
      });
      this.#clients.set(region, c);
    }
    return c;
  }

  async getObject(loc: { bucket: string; key: string; region?: string }): Promise<Uint8Array> {
    // An explicit endpoint (an S3-compatible server) serves every region the URI may name.
    const region = this.#options.endpoint ? this.#options.region : (loc.region ?? this.#options.region);
    const where = `s3://${loc.bucket}/${loc.key}`;
    let body: Uint8Array;
    try {
      const out = await this.#client(region).send(new GetObjectCommand({ Bucket: loc.bucket, Key: loc.key }));
      const max = this.#options.maxBytes ?? DEFAULT_MAX_BYTES;
      if (out.ContentLength !== undefined && out.ContentLength > max) {
        throw new ScribeError('ARTIFACT_UNAVAILABLE', `the object is larger than ${max} bytes`, {
          where,
          disposition: 'reject',
          hint: 'Raise the artifact size limit if this is a genuine HealthScribe file.',
        });
      }
      if (!out.Body) throw new ScribeError('ARTIFACT_UNAVAILABLE', 'S3 returned no body', { where });
      body = await out.Body.transformToByteArray();
    } catch (e) {
      if (e instanceof ScribeError) throw e;
      const name = e instanceof S3ServiceException ? e.name : (e as Error).name;
      const status = e instanceof S3ServiceException ? e.$metadata.httpStatusCode : undefined;
      if (MISSING.has(name) || status === 404) {
        throw new ScribeError('ARTIFACT_MISSING', `no such S3 object (${name})`, { where });
      }
      throw new ScribeError(
        'ARTIFACT_UNAVAILABLE',
        `S3 GetObject failed (${name}${status ? ` ${status}` : ''})`,
        {
          where,
          cause: e,
        },
      );
    }
    return body;
  }

  destroy(): void {
    for (const c of this.#clients.values()) c.destroy();
    this.#clients.clear();
  }
}
