/**
 * The HTTP settings every AWS SDK client of the service uses. The SDK's defaults put no limit on a request: a
 * store or queue endpoint that accepts the connection and never answers would hold a note's intake, or the
 * queue consumer's receive loop, for ever. With these, such a request fails (a transient error, retried) once
 * no byte has come for `requestTimeoutMs`, or the connection took longer than CONNECT_TIMEOUT_MS.
 */
export const CONNECT_TIMEOUT_MS = 5_000;
/** For requests that answer at once (S3 GetObject's first bytes, Transcribe, SQS sends and deletes). */
export const REQUEST_TIMEOUT_MS = 30_000;

export function awsRequestHandler(
  requestTimeoutMs: number = REQUEST_TIMEOUT_MS,
  connectTimeoutMs = CONNECT_TIMEOUT_MS,
) {
  return {
    // Without throwOnRequestTimeout the SDK's handler only prints a warning and keeps waiting.
    throwOnRequestTimeout: true,
    requestTimeout: requestTimeoutMs,
    connectionTimeout: connectTimeoutMs,
  };
}
