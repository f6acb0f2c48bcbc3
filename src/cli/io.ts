/** Where CLI output goes; tests pass a recorder. */
export interface Io {
  out(s: string): void;
  err(s: string): void;
  /** True when stderr is an interactive terminal (progress bars redraw in place). */
  readonly interactive: boolean;
  /** The stream progress bars draw on. */
  readonly progressStream: NodeJS.WritableStream;
}

let epipeHandled = false;

export function processIo(): Io {
  if (!epipeHandled) {
    epipeHandled = true;
    // `scribe-bridge map … | head`: a closed pipe is the reader's choice, not an error.
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  return {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    interactive: Boolean(process.stderr.isTTY),
    progressStream: process.stderr,
  };
}
