/**
 * The scripted MLLP receiver now lives in src/demo (the demo runs it); re-exported here for the tests, with a
 * test-only helper for TLS certificates.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export * from '../../src/demo/mllp-receiver.ts';

/**
 * A throwaway self-signed certificate for 127.0.0.1 / localhost (openssl CLI: Node's crypto makes keys but
 * not X.509 certificates). Returns undefined when openssl is not on the machine.
 */
export function selfSignedCert(): { key: string; cert: string } | undefined {
  const dir = mkdtempSync(path.join(tmpdir(), 'mllp-tls-'));
  try {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
  } catch {
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
