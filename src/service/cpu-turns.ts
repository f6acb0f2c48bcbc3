/**
 * Turns for intake's CPU work, one per turn of the event loop.
 *
 * Verifying and rendering a note is a few milliseconds of CPU in several synchronous stages (strict JSON and the
 * envelope schema, the signature, the ~0.5 MB transcript's JSON, the HealthScribe checks, each rendering and its
 * check). With several notes in intake at once, their stages used to run back to back whenever their awaits
 * resolved together — 20–40 ms without a break under load (measured with monitorEventLoopDelay) — and every
 * ledger statement of a delivery or commit transaction waited that long for its answer to be read: a delivery's
 * record-and-claim transaction (about seven statements) took 60–90 ms, and deliveries fell behind intake.
 *
 * A stage that waits for its turn runs from `setImmediate`, one stage per loop turn, first come first served;
 * between two stages the loop polls I/O, so a database answer waits at most about one stage. No CPU is saved —
 * it is spent in an order that lets the latency-bound work (transactions, sends) move.
 */
export class CpuTurns {
  readonly #waiting: (() => void)[] = [];
  #scheduled = false;

  /** Resolves when it is this caller's turn; its continuation is the stage that runs in that turn. */
  readonly turn = (): Promise<void> =>
    new Promise<void>((resolve) => {
      this.#waiting.push(resolve);
      this.#schedule();
    });

  #schedule(): void {
    if (this.#scheduled || this.#waiting.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      // The stage runs in this callback's microtasks; the next one is scheduled for the next loop turn.
      this.#waiting.shift()!();
      this.#schedule();
    });
  }
}
