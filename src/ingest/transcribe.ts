/**
 * Locating a batch job's output files with Transcribe `GetMedicalScribeJob`, for envelopes that name only a
 * job (the spec: "then no hash is signed: record it as such"). Always the URIs the API returns — file names are
 * observed, not documented (reference/healthscribe.md §0.7).
 */
import {
  GetMedicalScribeJobCommand,
  type MedicalScribeJob,
  TranscribeClient,
} from '@aws-sdk/client-transcribe';
import type { JobLocator } from '../contract/artifacts.ts';
import { ScribeError } from '../errors.ts';
import { awsRequestHandler } from './aws-http.ts';

export interface TranscribeOptions {
  readonly region: string;
  readonly endpoint?: string;
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
}

export class TranscribeJobLocator implements JobLocator {
  readonly #client: TranscribeClient;

  constructor(options: TranscribeOptions) {
    this.#client = new TranscribeClient({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      requestHandler: awsRequestHandler(),
    });
  }

  async locate(jobName: string): Promise<{ transcriptUri: string; clinicalDocumentUri: string }> {
    const where = `MedicalScribeJob ${jobName}`;
    let job: MedicalScribeJob | undefined;
    try {
      job = (await this.#client.send(new GetMedicalScribeJobCommand({ MedicalScribeJobName: jobName })))
        .MedicalScribeJob;
    } catch (e) {
      const name = (e as Error).name;
      if (name === 'NotFoundException') {
        throw new ScribeError('ARTIFACT_MISSING', 'Transcribe knows no HealthScribe job of that name', {
          where,
        });
      }
      if (name === 'BadRequestException') {
        throw new ScribeError('ARTIFACT_MISSING', `Transcribe refused the request (${name})`, { where });
      }
      throw new ScribeError('ARTIFACT_UNAVAILABLE', `GetMedicalScribeJob failed (${name})`, {
        where,
        cause: e,
      });
    }
    const status = job?.MedicalScribeJobStatus;
    if (status === 'FAILED') {
      throw new ScribeError('ARTIFACT_MISSING', 'the HealthScribe job failed and has no output', {
        where,
        hint: 'The note cannot be delivered from this job; have the review application resend it with artifacts.',
      });
    }
    if (status !== 'COMPLETED') {
      throw new ScribeError('HEALTHSCRIBE_JOB_NOT_READY', `the job is ${status ?? 'in an unknown state'}`, {
        where,
      });
    }
    const out = job?.MedicalScribeOutput;
    if (!out?.TranscriptFileUri || !out.ClinicalDocumentUri) {
      throw new ScribeError('ARTIFACT_MISSING', 'the completed job names no output files', { where });
    }
    return { transcriptUri: out.TranscriptFileUri, clinicalDocumentUri: out.ClinicalDocumentUri };
  }

  destroy(): void {
    this.#client.destroy();
  }
}
