/** Where CLI output goes; tests pass a recorder. */
export interface Io {
  out(s: string): void;
  err(s: string): void;
  /** True when stderr is an interactive terminal (progress bars redraw in place). */
  readonly interactive: boolean;
  /** The stream progress bars draw on. */
  readonly progressStream: NodeJS.WritableStream;
}

export function processIo(): Io {
  return {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    interactive: Boolean(process.stderr.isTTY),
    progressStream: process.stderr,
  };
}
