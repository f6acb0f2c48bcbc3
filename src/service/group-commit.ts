/**
 * Group commit: callers that arrive while a commit is running (concurrent HTTP posts, the messages of an SQS
 * batch) are recorded together in the next ONE transaction, and each caller is resolved with its own result
 * only after that transaction committed. An idle service commits a lone caller at once (no added wait); a busy
 * one shares each commit, each audit-chain append and each round trip among up to `maxBatch` callers.
 *
 * A batch that fails as a whole (a database error aborts the transaction: nothing of it was recorded) is
 * retried item by item, so one bad item fails only its own caller.
 */

export interface GroupCommitOptions<I, R> {
  /** Records a batch in one transaction; results in input order. */
  readonly commitBatch: (items: readonly I[]) => Promise<R[]>;
  /** Records one item on its own (the fallback after a failed batch). */
  readonly commitOne: (item: I) => Promise<R>;
  /** Most items per transaction (default 32). */
  readonly maxBatch?: number;
  /** Transactions in flight at once (default 1; more lets PostgreSQL work on one while another commits). */
  readonly maxInFlight?: number;
}

interface Waiting<I, R> {
  readonly item: I;
  readonly resolve: (r: R) => void;
  readonly reject: (e: unknown) => void;
}

export class GroupCommit<I, R> {
  readonly #o: GroupCommitOptions<I, R>;
  readonly #queue: Waiting<I, R>[] = [];
  #inFlight = 0;
  #scheduled = false;

  constructor(options: GroupCommitOptions<I, R>) {
    this.#o = options;
  }

  /** Resolves with the item's own result once the transaction holding it committed. */
  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= (this.#o.maxInFlight ?? 1) || this.#queue.length === 0) return;
    this.#scheduled = true;
    // One macrotask turn lets callers whose work finished in the same turn join this batch.
    setImmediate(() => {
      this.#scheduled = false;
      this.#run();
    });
  }

  #run(): void {
    if (this.#inFlight >= (this.#o.maxInFlight ?? 1) || this.#queue.length === 0) return;
    const batch = this.#queue.splice(0, this.#o.maxBatch ?? 32);
    this.#inFlight++;
    void this.#commit(batch).finally(() => {
      this.#inFlight--;
      this.#schedule();
    });
    this.#schedule();
  }

  async #commit(batch: readonly Waiting<I, R>[]): Promise<void> {
    if (batch.length === 1) {
      const w = batch[0]!;
      await this.#o.commitOne(w.item).then(w.resolve, w.reject);
      return;
    }
    let results: R[];
    try {
      results = await this.#o.commitBatch(batch.map((w) => w.item));
    } catch {
      // Nothing of the batch was recorded: isolate the failing item(s), each caller gets its own answer.
      for (const w of batch) await this.#o.commitOne(w.item).then(w.resolve, w.reject);
      return;
    }
    batch.forEach((w, i) => {
      w.resolve(results[i]!);
    });
  }
}
